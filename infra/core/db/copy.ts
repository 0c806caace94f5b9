import * as os from "node:os";
import type { Client } from "pg";
import { sleep } from "./client";
import { cloneSupport, type CloneDecision } from "./clone";
import { deployerBusy, migrationLockHolder } from "./deployers";
import { quoteIdent, quoteLiteral } from "./url";
import { failpoint, failpointDuring } from "../failpoint";
import { processAlive } from "../process";
import type { Logger } from "../logger";

/**
 * The one database copy: `CREATE DATABASE <target> TEMPLATE <source>`, used by
 * the snapshot (template.ts), the restore's materialize and the rehearsal.
 * PostgreSQL refuses it (55006) while any other session is in the source; what
 * to do then is the caller's choice (`whenBusy`):
 *   end-sessions  end them (never a deployer holding the migration lock: that
 *                 one fails the copy, naming it) and retry until `until`;
 *   refuse        report "busy" and leave everyone connected (the rehearsal,
 *                 which must never disturb the application).
 */
export const OBJECT_IN_USE = "55006";

/** Databases at least this large are copied with STRATEGY = FILE_COPY (PGSTACK_FILE_COPY_MIN_MB overrides; 0 = always). */
export const FILE_COPY_MIN_BYTES = 64 * 1024 * 1024;

/**
 * The copy strategy clause for `CREATE DATABASE ... TEMPLATE <source>`.
 * PostgreSQL 15+ defaults to WAL_LOG, which writes every page twice (data and
 * WAL) through shared buffers: right for small databases, but for a 1 GiB one
 * FILE_COPY (a checkpoint, then a file-level copy) took 0.26x the time to
 * snapshot and 0.24x to restore (BENCHMARKS.md, snapshot). Before 15 every
 * copy is a file copy and there is no clause.
 */
export async function copyStrategy(client: Client, source: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const { rows } = await client.query<{ v: number; size: string }>(
    "SELECT current_setting('server_version_num')::int AS v, pg_database_size($1)::text AS size",
    [source],
  );
  if (rows[0].v < 150000) return "";
  const fromEnv = env.PGSTACK_FILE_COPY_MIN_MB;
  const min = fromEnv !== undefined && /^\d+$/.test(fromEnv) ? Number(fromEnv) * 1024 * 1024 : FILE_COPY_MIN_BYTES;
  return Number(rows[0].size) >= min ? " STRATEGY = FILE_COPY" : "";
}

export type WhenSourceBusy =
  | {
      mode: "end-sessions";
      log: Logger;
      /** Retry until this time (ms since epoch); a copy still refused then fails with PostgreSQL's error. */
      until: number;
      /** What the copy is for, in the log line and the deployer-busy error. */
      purpose: "snapshot" | "restore";
    }
  | { mode: "refuse" };

/** Forces a copy method (tests, benches): "clone" (file_copy_method = clone, FILE_COPY) or "copy" (never clone). */
export type CopyMethod = "clone" | "copy";

/** How a copy on the server of `client` is made: detected (cloneSupport) unless `forced`. */
export async function decideCopy(client: Client, forced?: CopyMethod): Promise<CloneDecision> {
  if (forced === "clone") return { clone: true, reason: "cloning was forced (copyMethod: clone)" };
  if (forced === "copy") return { clone: false, reason: "a full copy was forced (copyMethod: copy)" };
  return cloneSupport(client);
}

export interface CopyOptions {
  /** Clone or copy, as decided by decideCopy (default: decided here). */
  how?: CloneDecision;
  /** Forces the method when `how` is not given. */
  copyMethod?: CopyMethod;
  whenBusy: WhenSourceBusy;
  /** Prefix of the fail-points inside the copy (`<prefix>:sessions-ended`, `<prefix>:copying`). */
  failpoints?: string;
  /** Create the copy closed to connections (a snapshot: nobody may change it, not even between the copy and closing it). */
  closed?: boolean;
}

/**
 * Copies `source` into the new database `target` on the server of `client`
 * (a maintenance connection), with FILE_COPY when the source is big. Returns
 * "busy" only in refuse mode, when other sessions kept the source in use.
 * Other errors are PostgreSQL's (or deployerBusy's), for the caller to word.
 */
export async function copyDatabase(client: Client, source: string, target: string, options: CopyOptions): Promise<"copied" | "busy"> {
  const how = options.how ?? (await decideCopy(client, options.copyMethod));
  // A clone shares blocks: FILE_COPY whatever the size (WAL_LOG would write every page).
  const strategy = how.clone ? " STRATEGY = FILE_COPY" : await copyStrategy(client, source);
  if (!how.clone) return copyAttempts(client, source, target, options, strategy);
  const { rows } = await client.query<{ m: string }>("SELECT current_setting('file_copy_method') AS m");
  await client.query("SET file_copy_method = clone");
  try {
    return await copyAttempts(client, source, target, options, strategy);
  } finally {
    // The session's own setting back: a maintenance connection may be reused.
    await client.query(`SET file_copy_method = ${quoteLiteral(rows[0].m)}`).catch(() => undefined);
  }
}

async function copyAttempts(client: Client, source: string, target: string, options: CopyOptions, strategy: string): Promise<"copied" | "busy"> {
  const busy = options.whenBusy;
  for (let attempt = 1; ; attempt++) {
    if (busy.mode === "end-sessions") {
      // PostgreSQL would otherwise wait 5 s for them and give up.
      await endSessions(client, source, busy.log, attempt, busy.purpose, "copied");
      if (options.failpoints) failpoint(`${options.failpoints}:sessions-ended`);
    }
    try {
      const create = () => client.query(`CREATE DATABASE ${quoteIdent(target)} TEMPLATE ${quoteIdent(source)}${strategy}${options.closed ? " ALLOW_CONNECTIONS false" : ""}`);
      await (options.failpoints ? failpointDuring(`${options.failpoints}:copying`, create) : create());
      return "copied";
    } catch (err) {
      if ((err as { code?: string }).code !== OBJECT_IN_USE) throw err;
      if (busy.mode === "refuse") return "busy";
      if (Date.now() > busy.until) throw err;
    }
    await sleep(Math.min(200 * attempt, 1000));
  }
}

/**
 * Ends the sessions left in `source` (an application or psql left open), but
 * never a deployer that holds the migration lock: that one fails the copy
 * instead, naming it.
 */
export async function endSessions(
  client: Client,
  source: string,
  log: Logger,
  attempt: number,
  purpose: "snapshot" | "restore" = "snapshot",
  so: "copied" | "replaced" = purpose === "snapshot" ? "copied" : "replaced",
): Promise<void> {
  const holder = await migrationLockHolder(client, source);
  if (holder) throw deployerBusy(purpose, source, holder);
  const { rows } = await client.query<{ pid: number }>(
    `SELECT pg_terminate_backend(pid) AS ended, pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
    [source],
  );
  if (rows.length > 0 && attempt === 1) log.warn(`ended ${rows.length} session(s) still connected to ${source} so it could be ${so}`);
}

/**
 * Throwaway copies (the rehearsal's, the revert's rehearsal): each carries a
 * JSON comment naming the process that made it (host and pid), written right
 * after the copy, so the repair every pgstack command runs
 * (recoverInterrupted in snapshot/fence.ts) drops a copy whose process died
 * without its finally. A copy made on another host is left alone: its
 * process cannot be checked from here.
 */
const THROWAWAY_MARK = "pgstack-throwaway";

export interface ThrowawayRecord {
  purpose: string;
  host: string;
  pid: number;
  createdAt: string;
}

/** Labels `db` as this process's throwaway copy. */
export async function recordThrowaway(client: Client, db: string, purpose: string): Promise<void> {
  const record: ThrowawayRecord = { purpose, host: os.hostname(), pid: process.pid, createdAt: new Date().toISOString() };
  await client.query(`COMMENT ON DATABASE ${quoteIdent(db)} IS ${quoteLiteral(JSON.stringify({ [THROWAWAY_MARK]: record }))}`);
}

export function parseThrowaway(comment: string | null): ThrowawayRecord | undefined {
  if (!comment) return undefined;
  try {
    const record = (JSON.parse(comment) as Record<string, ThrowawayRecord | undefined>)[THROWAWAY_MARK];
    return record && typeof record.pid === "number" && typeof record.host === "string" ? record : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the process that made a throwaway copy is gone: only knowable on its own host. */
export function throwawayOwnerGone(record: ThrowawayRecord): boolean {
  return record.host === os.hostname() && !processAlive(record.pid);
}

/**
 * Throwaway copies on the server whose process is gone, by name. Nobody may
 * be connected to one either: a live rehearsal works on its copy through its
 * own sessions, so a pid reused on another machine of the same name never
 * gets a working copy dropped under it.
 */
export async function abandonedThrowaways(client: Client): Promise<{ database: string; record: ThrowawayRecord }[]> {
  const { rows } = await client.query<{ datname: string; comment: string }>(
    `SELECT datname, shobj_description(oid, 'pg_database') AS comment FROM pg_database d
      WHERE shobj_description(oid, 'pg_database') LIKE $1
        AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)`,
    [`%"${THROWAWAY_MARK}"%`],
  );
  const out: { database: string; record: ThrowawayRecord }[] = [];
  for (const row of rows) {
    const record = parseThrowaway(row.comment);
    if (record && throwawayOwnerGone(record)) out.push({ database: row.datname, record });
  }
  return out;
}

/**
 * The bounded pause: with `db` closed to new sessions since `closedAt` (the
 * server's clock), ends each session as soon as it has no transaction that
 * was open at the close (idle, or in a transaction begun after it: that one
 * was never acknowledged, and ending it rolls it back), and waits up to
 * `graceMs` for the others to finish theirs. A deployer holding the migration
 * lock is never ended (deployerBusy). Returns how many sessions are still in
 * a transaction begun before the close (0: nobody is left but `keep`).
 */
export async function drainSessions(
  client: Client,
  db: string,
  options: { closedAt: string; graceMs: number; log: Logger; purpose: "snapshot" | "restore"; keep?: number },
): Promise<{ ended: number; busy: number }> {
  const deadline = Date.now() + options.graceMs;
  const ended = new Set<number>();
  for (;;) {
    const holder = await migrationLockHolder(client, db);
    if (holder) throw deployerBusy(options.purpose, db, holder);
    const { rows } = await client.query<{ pid: number; done: boolean; ended: boolean | null }>(
      `SELECT pid, done, CASE WHEN done THEN pg_terminate_backend(pid) END AS ended FROM (
         SELECT pid, (state = 'idle' OR xact_start IS NULL OR xact_start >= $2::timestamptz) AS done
           FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid() AND pid <> $3 AND backend_type = 'client backend') s`,
      [db, options.closedAt, options.keep ?? 0],
    );
    for (const r of rows) if (r.done) ended.add(r.pid);
    const busy = rows.filter((r) => !r.done).length;
    if (busy === 0 || Date.now() >= deadline) {
      if (ended.size > 0) options.log.warn(`ended ${ended.size} session(s) still connected to ${db} so it could be ${options.purpose === "snapshot" ? "copied" : "replaced"}`);
      return { ended: ended.size, busy };
    }
    await sleep(10);
  }
}

/** The server's clock now, for drainSessions' `closedAt`. */
export async function serverNow(client: Client): Promise<string> {
  return (await client.query<{ t: string }>("SELECT clock_timestamp()::text AS t")).rows[0].t;
}
