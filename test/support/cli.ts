import { spawn } from "node:child_process";
import * as path from "node:path";
import { REPO_ROOT } from "./fixtures";

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `pgstack` bin as a user would, with DATABASE_URL in the environment. */
export function pgstack(args: string[], env: Record<string, string | undefined> = {}, options: { onSpawn?: (pid: number) => void } = {}): Promise<CliResult> {
  return spawnCollect(process.execPath, [path.join(REPO_ROOT, "infra", "bin", "pgstack.js"), ...args], REPO_ROOT, env, options.onSpawn);
}

/** Spawns a process with `env` added to this one's (entries set to undefined removed) and collects its output. */
export function spawnCollect(
  command: string,
  args: string[],
  cwd: string,
  env: Record<string, string | undefined>,
  onSpawn?: (pid: number) => void,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
    const child = spawn(command, args, { cwd, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
    if (child.pid) onSpawn?.(child.pid);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
