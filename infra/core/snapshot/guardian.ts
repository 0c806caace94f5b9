import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { withClient } from "../db/client";
import { parseDatabaseUrl, withDatabase } from "../db/url";
import { isPgstackError, messageOf } from "../errors";
import { failpointArmed } from "../failpoint";
import type { Logger } from "../logger";
import { recoverInterrupted, unrepaired, type Recovery } from "./fence";

/**
 * A guardian for an operation that closes a database to connections (a
 * template snapshot, a restore): a small process started before the database
 * is closed, which reopens it when the operation's process dies without
 * reopening it (SIGKILL, an OOM kill, a CI runner's whole process tree
 * killed). Without it the database stayed closed until the next pgstack
 * command, which in an unattended deploy may never come.
 *
 * guardian-process.js double-forks into its own session, so killing the
 * owner's process group or walking its children does not reach it. It gets
 * the URL over a pipe (never argv or environment, which other processes may
 * read); the owner keeps the pipe open for as long as the operation runs, so
 * the guardian learns of the owner's death at once, from the end of the pipe,
 * without polling. It repairs only through fence.ts's recoverInterrupted, the
 * same repair as the next command's (which stays the second line of
 * defence): an operation whose session is alive is never touched. If the
 * guardian dies first, nothing happens: the owner's "done" goes nowhere.
 */
export interface Guardian {
  /** The guardian's pid (stage 2), for tests. */
  pid: number;
  /** Milliseconds from spawning to the guardian's "ready". */
  startupMs: number;
}

const SCRIPT = path.join(__dirname, "guardian-process.js");
const READY_TIMEOUT_MS = 5_000;

/** PG* variables the connection may depend on (node-postgres reads them as defaults); sent over the pipe with the URL. */
function connectionEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => /^PG[A-Z]+$/.test(e[0]) && e[1] !== undefined));
}

/** Starts a guardian for the database of `url`; undefined (with a warning) when it cannot start: the next command's repair still holds. */
export async function startGuardian(url: string, log: Logger): Promise<{ guardian: Guardian; release: () => void; handOver: () => void } | undefined> {
  const started = Date.now();
  const database = parseDatabaseUrl(url).database;
  let child: ChildProcess;
  try {
    // The crash tests' stand-in for a guardian lost with its machine: the next command's repair must hold alone.
    if (failpointArmed("guardian:unavailable")) throw new Error("fail-point guardian:unavailable");
    // Only the temp dir (where the repair's compiler caches): no secret.
    const env: NodeJS.ProcessEnv = process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {};
    child = spawn(process.execPath, [SCRIPT], { detached: true, stdio: ["ignore", "pipe", "inherit", "pipe"], env });
  } catch (err) {
    log.warn(`no guardian for database '${database}' (${messageOf(err)}): if this process dies while the database is closed, the next pgstack command reopens it`);
    return undefined;
  }
  // fd 3, not stdin: Node closes a child's stdin as soon as the child exits, and stage 1 exits at once.
  const control = child.stdio[3] as import("node:net").Socket;
  const stdout = child.stdout!;
  control.on("error", () => undefined); // a guardian that died first: harmless
  child.on("error", () => undefined);
  let pid = 0;
  const ready = await new Promise<number | undefined>((resolve) => {
    let text = "";
    const timer = setTimeout(() => resolve(undefined), READY_TIMEOUT_MS);
    stdout.setEncoding("utf8");
    stdout.on("data", (d: string) => {
      text += d;
      const m = /ready (\d+)\n/.exec(text);
      if (m) {
        pid = Number(m[1]);
        clearTimeout(timer);
        resolve(Date.now() - started);
      }
    });
    stdout.on("close", () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    control.write(JSON.stringify({ url, database, env: connectionEnv(process.env) }) + "\n");
  });
  stdout.destroy();
  child.unref();
  if (ready === undefined) {
    control.destroy();
    log.warn(`no guardian for database '${database}' (it did not start within ${READY_TIMEOUT_MS / 1000} s): if this process dies while the database is closed, the next pgstack command reopens it`);
    return undefined;
  }
  // The pipe must not keep this process alive; it ends with it (which is the guardian's signal).
  (control as unknown as { unref?: () => void }).unref?.();
  log.debug(`guardian for database '${database}' ready in ${ready} ms`);
  let released = false;
  return {
    guardian: { pid, startupMs: ready },
    release: () => {
      if (released) return;
      released = true;
      control.end("done\n");
    },
    // The end of the pipe without "done": the guardian repairs now, while this process may live on a moment.
    handOver: () => {
      if (released) return;
      released = true;
      control.end();
    },
  };
}

/** SQLSTATEs (and socket errors) of a session ended under the operation: class 08 (connection exception), 57P01-57P03 (terminated by an administrator, a crash or shutdown, the server not accepting connections). */
const CONNECTION_ENDED = new Set(["57P01", "57P02", "57P03", "ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH"]);

/** Whether `err` is the operation's own session ended under it (by its SQLSTATE or socket error code, never its text). */
export function connectionEnded(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (CONNECTION_ENDED.has(code) || /^08[0-9A-Z]{3}$/.test(code));
}

/** What the owner found after its operation failed (withGuardian's `explain` words the error from it). */
export interface GuardedFailure {
  /** What the owner's own repair did (fence.ts), in a fresh session; empty when there was nothing to repair. */
  recoveries: Recovery[];
  /** The owner could not repair (server unreachable, ...): the guardian was left to do it. */
  handedOver: boolean;
}

const OWNER_REPAIR_WAIT_MS = 3_000;

/**
 * The owner's repair after a failed operation, in a fresh session: what
 * recoverInterrupted does for a dead operation (the failed one's sessions are
 * ended or ending), then whether any marker about `database` is left whose
 * session is gone. undefined when it could not be done (or not completely).
 */
async function repairNow(url: string, database: string, log: Logger): Promise<Recovery[] | undefined> {
  try {
    const recoveries = await recoverInterrupted(url, { log, waitMs: OWNER_REPAIR_WAIT_MS });
    // A role that may not reach `postgres` (a managed service) cannot have closed anything there: nothing left.
    const left = await withClient(withDatabase(url, "postgres"), (c) => unrepaired(c, database), { applicationName: "pgstack recover", connectTimeoutMs: 5000 }).catch((err) => {
      if (isPgstackError(err) && (err.code === "E_DB_MISSING" || err.code === "E_DB_AUTH")) return [];
      throw err;
    });
    return left.length === 0 ? recoveries.filter((r) => r.about === database) : undefined;
  } catch (err) {
    log.debug(`could not repair database '${database}' at once (${messageOf(err).split("\n")[0]}): left to the guardian`);
    return undefined;
  }
}

/**
 * Runs `fn` with a guardian watching (see the module comment). The guardian
 * is told "done" only when the database is known open again: `fn` succeeded
 * (it reopens what it closed), or it failed and this process repaired it in a
 * fresh session. Otherwise the pipe is closed without "done": the guardian
 * repairs at once (the failed operation's sessions are gone or going).
 * `explain` turns a failure into the error thrown (typically: the session
 * ended under it, by SQLSTATE); by default the original error.
 */
export async function withGuardian<T>(url: string, log: Logger, fn: () => Promise<T>, explain?: (err: unknown, failure: GuardedFailure) => unknown): Promise<T> {
  const database = parseDatabaseUrl(url).database;
  const g = await startGuardian(url, log);
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    const recoveries = await repairNow(url, database, log);
    if (recoveries) g?.release();
    else g?.handOver();
    throw explain ? explain(err, { recoveries: recoveries ?? [], handedOver: recoveries === undefined }) : err;
  }
  g?.release();
  return result;
}
