/**
 * `npm run pulumi -- <args>`: pulumi on this project with no setup by hand. Uses the
 * user's own CLI when it is on PATH, else builds one once (see infra/toolchain/pulumi.ts),
 * with a local file:// backend and a dev passphrase unless the user set their own.
 */
import { spawn } from "node:child_process";
import { preparePulumi, PROJECT_ROOT, ToolchainError } from "../toolchain/pulumi";

async function main(): Promise<number> {
  const { pulumi, env } = await preparePulumi(PROJECT_ROOT, {
    log: (line) => process.stderr.write(`[pgstack] ${line}\n`),
  });
  const child = spawn(pulumi, process.argv.slice(2), {
    cwd: PROJECT_ROOT,
    env: env as NodeJS.ProcessEnv,
    stdio: "inherit",
  });
  // pulumi handles Ctrl-C itself (it cancels the update cleanly); don't die before it does.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
  return new Promise((resolve) => {
    child.on("error", (err) => {
      process.stderr.write(`pgstack: could not run ${pulumi} (${err.message}): check that it is an executable pulumi CLI.\n`);
      resolve(1);
    });
    child.on("close", (code, signal) => resolve(code ?? (signal ? 128 + 2 : 1)));
  });
}

main().then(
  (code) => process.exit(code),
  (err) => {
    const message = err instanceof ToolchainError ? err.message : `could not prepare the Pulumi toolchain: ${String(err?.message ?? err)}`;
    process.stderr.write(`pgstack: ${message}\n`);
    process.exit(1);
  },
);
