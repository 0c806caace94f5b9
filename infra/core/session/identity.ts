import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";

/**
 * Which update a deploy session belongs to, and how its steps prove they are
 * steps of that update. Keep in step with infra/bin/step/main.go, the client
 * that computes the same values.
 */

/** A process by pid and start time (clock ticks since boot), so a reused pid is never taken for it. */
export interface ProcessRef {
  pid: number;
  start: string;
}

/** `<pid>:<start>` */
export const formatProcessRef = (p: ProcessRef): string => `${p.pid}:${p.start}`;

/** Parses `<pid>:<start>,<pid>:<start>` (engine, then command provider), as the client passes it. */
export function parseAnchor(text: string | undefined): ProcessRef[] | undefined {
  if (!text) return undefined;
  const refs = text.split(",").map((part) => {
    const match = /^(\d+):(\d+)$/.exec(part);
    return match ? { pid: Number(match[1]), start: match[2] } : undefined;
  });
  return refs.length === 2 && refs.every(Boolean) ? (refs as ProcessRef[]) : undefined;
}

/** The start time of `pid` from /proc, or undefined when it no longer exists. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

/** True while every process of the anchor still runs (same pid, same start time). */
export function anchorAlive(anchor: ProcessRef[]): boolean {
  return anchor.every((p) => processStart(p.pid) === p.start);
}

const digest = (parts: string[]) => createHash("sha256").update(parts.join("\n")).digest("hex");

/**
 * The session's socket file name and its token, from the update's engine and
 * command provider, the steps' working directory (physical path) and the
 * database URL: another update, another stack folder or another database gets
 * another session, and only a process that knows the URL can compute the token.
 */
export function sessionIdentity(anchor: ProcessRef[], cwd: string, url: string): { socketName: string; token: string } {
  const material = ["pgstack-session-v1", ...anchor.map(formatProcessRef), cwd, url];
  return { socketName: `${digest(["socket", ...material]).slice(0, 32)}.sock`, token: digest(["token", ...material]) };
}

/** True when `socketPath` is the socket this session must listen on. */
export function isSessionSocket(socketPath: string, socketName: string): boolean {
  return path.basename(socketPath) === socketName;
}
