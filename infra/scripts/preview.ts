/**
 * `npm run preview -- --stack <name> [--markdown] [--rehearse] [--accept-drift] [more pulumi preview flags]`:
 * first pgstack's plan for the stack (the migrations that would run, the
 * snapshot that would be taken, lint findings, drift on the database; strict
 * stacks fail on a blocking finding or on drift not accepted), then `pulumi preview --diff` (default stack: dev). Exits
 * non-zero when either fails.
 */
import { run as pgstack } from "../cli/main";
import { pulumiForScript, runMain, takeStack } from "./run-pulumi";

const PLAN_FLAGS = new Set(["--markdown", "--rehearse", "--strict", "--accept-drift", "--no-drift"]);

async function main(): Promise<number> {
  const { stack, rest } = takeStack(process.argv.slice(2), "dev");
  const planFlags = rest.filter((a) => PLAN_FLAGS.has(a));
  const pulumiFlags = rest.filter((a) => !PLAN_FLAGS.has(a));
  const planned = await pgstack(["plan", "--stack", stack, ...planFlags]);
  const pulumi = await pulumiForScript(stack);
  const previewed = await pulumi.run(["preview", "--diff", "--stack", stack, ...pulumiFlags]);
  return planned !== 0 ? planned : previewed;
}

runMain(main);
