/**
 * `npm run pulumi -- <args>`: pulumi on this project with no setup by hand. Uses the
 * user's own CLI when it is on PATH, else builds one once (see infra/toolchain/pulumi.ts),
 * with a local file:// backend unless the user set their own; the dev passphrase only
 * for a command that names the dev stack.
 */
import { pulumiFor, stackOfArgs } from "../toolchain/pulumi";
import { runMain, say } from "./run-pulumi";

runMain(async () => {
  const args = process.argv.slice(2);
  const pulumi = await pulumiFor(stackOfArgs(args), { log: say });
  return pulumi.run(args);
});
