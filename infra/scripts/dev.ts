/**
 * `npm run dev`: `pulumi up --yes` on the dev stack (created on first run):
 * an embedded PostgreSQL running, every migration applied through the chain,
 * seeded. A second run changes nothing.
 *
 *   npm run dev [-- <extra pulumi up flags>]
 *
 * Before the update it restarts the dev server if it was stopped (after a
 * reboot, say): the stack already has it, so Pulumi would see nothing to do.
 */
import * as path from "node:path";
import { readStackConfig } from "../config/stack";
import { clusterResume } from "../core/cluster/lifecycle";
import { PROJECT_ROOT, pulumiForScript, runMain, say } from "./run-pulumi";

export const DEV_STACK = "dev";

async function main(): Promise<number> {
  const pulumi = await pulumiForScript(DEV_STACK);
  const select = await pulumi.capture(["stack", "select", DEV_STACK, "--create", "--non-interactive"]);
  if (select.code !== 0) {
    process.stderr.write(select.stderr || select.stdout);
    say("could not select or create the dev stack (see above).");
    return select.code;
  }
  // The stack's own data dir (its config, defaults included); other engines have no local server to restart.
  // A config it cannot read fails through runMain: one sentence, exit 1.
  const config = await readStackConfig(DEV_STACK, pulumi);
  if (config.embedded) {
    // A data dir of another major (made before the default became 18, say) stops here: nothing started or changed.
    const { started } = await clusterResume({ dataDir: path.join(PROJECT_ROOT, config.embedded.dataDir), major: config.postgresVersion });
    if (started) say("restarted the stopped dev PostgreSQL");
  }

  const code = await pulumi.run(["up", "--yes", "--stack", DEV_STACK, ...process.argv.slice(2)]);
  if (code === 0) {
    say("dev database ready. Its URL: npm run pulumi -- stack output --stack dev --show-secrets databaseUrl");
  }
  return code;
}

runMain(main);
