import { spawn } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import * as path from "node:path";
import { messageOf } from "./errors";

/** Like `which`: the first executable file named `name` in pathEnv (dirs in `exclude` skipped). */
export function findOnPath(name: string, pathEnv: string | undefined, exclude: string[] = []): string | undefined {
  for (const dir of (pathEnv ?? "").split(path.delimiter)) {
    if (!dir || exclude.includes(path.resolve(dir))) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface ProcessResult {
  /** Exit code; 127 when the program could not be started, 1 when killed by a signal. */
  code: number;
  stdout: string;
  stderr: string;
  /** The signal that ended it, if one did. */
  signal?: NodeJS.Signals;
  /** Why it could not be started (ENOENT, EACCES, ...), if it could not. */
  startError?: NodeJS.ErrnoException;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Let the child write to this process's stdout and stderr instead of collecting them. */
  inherit?: boolean;
  /** Written to its stdin, which is then closed. */
  input?: string;
  /** The OS user and group to run as (root only). */
  uid?: number;
  gid?: number;
  /** Killed after this many ms. */
  timeoutMs?: number;
}

/**
 * Runs a program to the end and collects its output; never rejects (a program
 * that cannot start is code 127 with the reason on stderr), so each caller
 * turns a failure into its own sentence.
 */
export function runProcess(file: string, args: string[], options: RunOptions = {}): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const stdin = options.input === undefined ? "ignore" : "pipe";
    const child = spawn(file, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      uid: options.uid,
      gid: options.gid,
      timeout: options.timeoutMs,
      stdio: options.inherit ? [stdin, "inherit", "inherit"] : [stdin, "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (err: NodeJS.ErrnoException) => resolve({ code: 127, stdout, stderr: stderr + messageOf(err), startError: err }));
    child.on("close", (code, signal) => resolve({ code: code ?? 1, stdout, stderr, ...(signal ? { signal } : {}) }));
    if (child.stdin) {
      child.stdin.on("error", () => undefined); // it exited without reading: its exit says why
      child.stdin.end(options.input, "utf8");
    }
  });
}

/** Whether process `pid` exists on this machine (EPERM: it does, owned by another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
