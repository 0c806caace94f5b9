import { readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/**
 * Where an update's migration steps find the program that serves them, and
 * which processes make up that update. Keep in step with
 * infra/bin/step/pgstack-step.c and infra/bin/step-client.js, the clients
 * that compute the same paths.
 */

/** A process by pid and start time (clock ticks since boot), so a reused pid is never taken for it. */
export interface ProcessRef {
  pid: number;
  start: string;
}

/** The start time and parent of `pid` from /proc, or undefined when it no longer exists (or there is no /proc). */
export function processStat(pid: number): { start: string; ppid: number; comm: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { start: fields[19], ppid: Number(fields[1]), comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")) };
  } catch {
    return undefined;
  }
}

/** The start time of `pid`, or undefined when it no longer exists. */
export function processStart(pid: number): string | undefined {
  return processStat(pid)?.start;
}

/** True while every process of the anchor still runs (same pid, same start time). */
export function anchorAlive(anchor: ProcessRef[]): boolean {
  return anchor.every((p) => processStart(p.pid) === p.start);
}

/**
 * The update this program runs in: the Pulumi language host above it and the
 * engine above that. Undefined without /proc (the watch is then off) or when
 * the program does not run under a language host (a test).
 */
export function updateAnchor(from: number = process.ppid): ProcessRef[] | undefined {
  const host = processStat(from);
  if (!host || !host.comm.startsWith("pulumi-language")) return undefined;
  const engine = processStat(host.ppid);
  if (!engine || host.ppid <= 1) return undefined;
  return [
    { pid: from, start: host.start },
    { pid: host.ppid, start: engine.start },
  ];
}

/** The per-user directory of the sessions' sockets: `$XDG_RUNTIME_DIR` or the temp dir, `pgstack-<uid>`. */
export function sessionDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_RUNTIME_DIR || os.tmpdir(), `pgstack-${process.getuid?.() ?? 0}`);
}

/**
 * The socket and token file of the session serving the steps of `stack` run
 * from `projectDir` (its physical path): another stack or another checkout
 * gets another one. Pulumi's stack lock allows one update per stack at a time.
 */
export function sessionPaths(projectDir: string, stack: string, env: NodeJS.ProcessEnv = process.env): { socket: string; tokenFile: string } {
  const name = sessionName(projectDir, stack);
  const dir = sessionDir(env);
  return { socket: path.join(dir, `${name}.sock`), tokenFile: path.join(dir, `${name}.token`) };
}

/** FNV-1a (64 bits, hex) of the folder and the stack: what the C client computes in a few instructions. Pure. */
export function sessionName(projectDir: string, stack: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(["pgstack-deploy-v3", projectDir, stack].join("\n"), "utf8")) {
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, "0");
}
