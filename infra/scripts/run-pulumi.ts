/**
 * Shared by the npm-script entry points (dev, preview, destroy): runs the
 * pulumi CLI from infra/toolchain (the user's own, or one built once) on this
 * project, with the local file:// backend and dev passphrase unless the user
 * set PULUMI_BACKEND_URL / PULUMI_CONFIG_PASSPHRASE(_FILE) themselves.
 */
import { spawn } from "node:child_process";
import { ensureToolchain, PROJECT_ROOT, pulumiEnv, ToolchainError, type Env } from "../toolchain/pulumi";

export { PROJECT_ROOT };

export function say(line: string): void {
  process.stderr.write(`[pgstack] ${line}\n`);
}

export interface Pulumi {
  /** Runs pulumi with stdio inherited; resolves to its exit code. */
  run(args: string[], extraEnv?: Env): Promise<number>;
  /** Runs pulumi and captures its output (nothing shown). */
  capture(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

export async function preparePulumi(): Promise<Pulumi> {
  const plan = await ensureToolchain({ log: say });
  const env = pulumiEnv(PROJECT_ROOT, { pathDirs: plan.pathDirs });
  const run = (args: string[], extraEnv: Env = {}) =>
    new Promise<number>((resolve) => {
      const child = spawn(plan.pulumi, args, { cwd: PROJECT_ROOT, env: { ...env, ...extraEnv } as NodeJS.ProcessEnv, stdio: "inherit" });
      const forward = (signal: NodeJS.Signals) => child.kill(signal);
      process.on("SIGINT", forward);
      process.on("SIGTERM", forward);
      child.on("error", (err) => {
        say(`could not run ${plan.pulumi}: ${err.message}`);
        resolve(1);
      });
      child.on("close", (code) => {
        process.off("SIGINT", forward);
        process.off("SIGTERM", forward);
        resolve(code ?? 1);
      });
    });
  const capture = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(plan.pulumi, args, { cwd: PROJECT_ROOT, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", (err) => resolve({ code: 1, stdout, stderr: stderr + err.message }));
      child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  return { run, capture };
}

/** `--stack <name>` / `--stack=<name>` / `-s <name>` from argv, and the other arguments. */
export function takeStack(argv: string[], fallback: string): { stack: string; rest: string[] } {
  const rest: string[] = [];
  let stack = fallback;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--stack" || a === "-s") stack = argv[++i] ?? fallback;
    else if (a.startsWith("--stack=")) stack = a.slice("--stack=".length);
    else rest.push(a);
  }
  return { stack, rest };
}

/** Runs an async main and exits with its code; a ToolchainError is one sentence. */
export function runMain(main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (err) => {
      const message = err instanceof ToolchainError ? err.message : `unexpected error: ${String(err?.message ?? err).split("\n")[0]}`;
      process.stderr.write(`pgstack: ${message}\n`);
      process.exit(1);
    },
  );
}
