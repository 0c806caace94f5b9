/**
 * `npm run preview -- --stack <name> [more pulumi preview flags]`: `pulumi
 * preview --diff` on that stack (default dev): which migration commands would
 * run, the snapshot that would be taken, what the database would change.
 */
import { preparePulumi, runMain, takeStack } from "./run-pulumi";

async function main(): Promise<number> {
  const { stack, rest } = takeStack(process.argv.slice(2), "dev");
  const pulumi = await preparePulumi();
  return pulumi.run(["preview", "--diff", "--stack", stack, ...rest]);
}

runMain(main);
