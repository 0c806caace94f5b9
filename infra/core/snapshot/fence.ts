import type { Client } from "pg";
import { sleep, withClient } from "../db/client";
import { abandonedThrowaways } from "../db/copy";
import { parseDatabaseUrl, quoteIdent, quoteLiteral, withDatabase } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import type { Logger } from "../logger";

/**
 * Crash safety for everything that closes a database to new connections
 * (`ALLOW_CONNECTIONS false`: a template snapshot, the restore's swap) or
 * makes a side copy of it (the snapshot database, `<db>_restoring`).
 *
 * Before it starts, such an operation writes a marker into the database's
 * comment, in the same transaction that closes it: which session (backend pid
 * and start time) owns it, what it does, and which copy it makes; the
 * database's own comment is kept inside the marker and put back when the
 * database is reopened, in the same transaction. A `finally` is not enough:
 * a SIGKILL, an OOM kill or a lost machine runs none.
 *
 * `recoverInterrupted` runs at the start of every pgstack command that has a
 * database URL (and so at the next `pulumi up` that runs a pgstack command):
 * a marker whose session is gone is an operation that died. It reopens the
 * database, drops the copy it was making (never a finished snapshot, never the
 * live database), puts the comment back, and says so in one log line.
 *
 * It also drops the throwaway copies (core/db/copy.ts: a rehearsal's) whose
 * process is gone.
 *
 * Why the comment and not a custom setting (`ALTER DATABASE ... SET
 * pgstack.x`): PostgreSQL lets only superusers store unknown settings, and
 * the database's owner must be able to take snapshots.
 */
export type OperationKind = "snapshot" | "restore" | "replaced" | "plan";

export interface OperationMarker {
  op: OperationKind;
  /** The owning session: backend pid and its start time (a pid is reused). */
  pid: number;
  backendStart: string;
  /** The database the operation is about, by its name when it started. */
  database: string;
  /** The side copy being made: the snapshot's or `<db>_restoring`. */
  copy?: string;
  /**
   * A throwaway clone the operation reads instead of its copy (a clone snapshot's schema
   * digest, fingerprint.ts), named before it is made: a repair drops it.
   */
  probe?: string;
  /** Whether the operation closed the database (one already closed stays closed). */
  closed: boolean;
  /** restore: the replaced database is to be kept. */
  keepOld?: boolean;
}

const MARK = "pgstack-operation";
/** First key of the advisory lock a repair of one database holds (the second is the name's hash). */
const REPAIR_LOCK = 0x70677374;

interface StoredComment {
  [MARK]: OperationMarker;
  /** The database's own comment, put back when the operation ends. */
  comment: string | null;
}

function parseMarker(text: string | null): StoredComment | undefined {
  if (!text) return undefined;
  try {
    const data = JSON.parse(text) as StoredComment;
    return data && typeof data === "object" && data[MARK] && typeof data[MARK].pid === "number" ? data : undefined;
  } catch {
    return undefined;
  }
}

async function commentOn(client: Client, db: string): Promise<string | null> {
  const { rows } = await client.query<{ c: string | null }>("SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1", [db]);
  return rows[0]?.c ?? null;
}

async function setComment(client: Client, db: string, comment: string | null): Promise<void> {
  await client.query(`COMMENT ON DATABASE ${quoteIdent(db)} IS ${comment === null ? "NULL" : quoteLiteral(comment)}`);
}

/** This session's identity, as a marker records it. */
async function self(client: Client): Promise<{ pid: number; backendStart: string }> {
  const { rows } = await client.query<{ pid: number; start: string }>(
    "SELECT pid, backend_start::text AS start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
  );
  return { pid: rows[0].pid, backendStart: rows[0].start };
}

async function inTransaction(client: Client, fn: () => Promise<void>): Promise<void> {
  await client.query("BEGIN");
  try {
    await fn();
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/**
 * Records that this session starts `op` on `db` (closing it to new sessions
 * when `close`), in one transaction. A marker already there from a live
 * session is another pgstack at work: refused with one sentence.
 */
export async function beginOperation(
  client: Client,
  db: string,
  marker: Omit<OperationMarker, "pid" | "backendStart" | "database" | "closed">,
  options: { close: boolean; waitMs?: number },
): Promise<void> {
  const me = await self(client);
  // Another live pgstack at work on this database (a second stack's deploy): wait for it, as for the deployer lock.
  const deadline = Date.now() + (options.waitMs ?? 60_000);
  for (;;) {
    const other = parseMarker(await commentOn(client, db));
    if (!other || other[MARK].pid === me.pid || Date.now() >= deadline || !(await alive(client, other[MARK]))) break;
    await sleep(250);
  }
  await inTransaction(client, async () => {
    const current = await commentOn(client, db);
    const existing = parseMarker(current);
    if (existing && existing[MARK].pid !== me.pid) {
      throw new PgstackError(
        "E_SNAPSHOT",
        `Database '${db}' is in the middle of another pgstack ${existing[MARK].op} (pid ${existing[MARK].pid}): let it finish, or run any pgstack command once it has died to repair it, and run again.`,
      );
    }
    const stored: StoredComment = { [MARK]: { ...marker, ...me, database: db, closed: options.close }, comment: existing ? existing.comment : current };
    await setComment(client, db, JSON.stringify(stored));
    if (options.close) await client.query(`ALTER DATABASE ${quoteIdent(db)} ALLOW_CONNECTIONS false`);
  });
}

/** Rewrites the marker on `db` (e.g. moved to the replaced database by the swap). Call inside the caller's transaction. */
export async function rewriteOperation(client: Client, db: string, change: Partial<OperationMarker>): Promise<void> {
  const stored = parseMarker(await commentOn(client, db));
  if (!stored) return;
  await setComment(client, db, JSON.stringify({ ...stored, [MARK]: { ...stored[MARK], ...change } }));
}

/** Opens `db` to connections again while its marker stays (the operation is not over). */
export async function reopenKeepingMarker(client: Client, db: string): Promise<void> {
  await inTransaction(client, async () => {
    await client.query(`ALTER DATABASE ${quoteIdent(db)} ALLOW_CONNECTIONS true`);
    await rewriteOperation(client, db, { closed: false });
  });
}

/**
 * Ends the operation on `db`: open again (when the operation closed it), its
 * own comment back, in one transaction. A missing database is no error.
 */
export async function endOperation(client: Client, db: string): Promise<void> {
  await inTransaction(client, async () => {
    const stored = parseMarker(await commentOn(client, db));
    if (!stored) return;
    if (stored[MARK].closed) await client.query(`ALTER DATABASE ${quoteIdent(db)} ALLOW_CONNECTIONS true`);
    await setComment(client, db, stored.comment);
  });
}

/** The marker on `db`, if an operation is recorded there. */
export async function operationOn(client: Client, db: string): Promise<OperationMarker | undefined> {
  return parseMarker(await commentOn(client, db))?.[MARK];
}

/** Markers of operations about `database` (by its name when they started), wherever they are now (a restore's moves to the replaced database). */
export async function operationsAbout(client: Client, database: string): Promise<OperationMarker[]> {
  const { rows } = await client.query<{ comment: string }>(
    "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE $1",
    [`%"${MARK}"%`],
  );
  return rows.map((r) => parseMarker(r.comment)?.[MARK]).filter((m): m is OperationMarker => m !== undefined && m.database === database);
}

/** The comment `db` has outside any operation (the one kept in the marker while one runs). */
export async function ownComment(client: Client, db: string): Promise<string | null> {
  const current = await commentOn(client, db);
  const stored = parseMarker(current);
  return stored ? stored.comment : current;
}

/** Markers about `database` whose session is gone: an operation that died and is not repaired yet (a live one is another pgstack at work). */
export async function unrepaired(client: Client, database: string): Promise<OperationMarker[]> {
  const left: OperationMarker[] = [];
  for (const m of await operationsAbout(client, database)) if (!(await alive(client, m))) left.push(m);
  return left;
}

/** The comment an operation's marker in `text` keeps inside, or undefined when `text` is no marker. Pure. */
export function commentInsideMarker(text: string | null): string | null | undefined {
  const stored = parseMarker(text);
  return stored ? (stored.comment ?? null) : undefined;
}

async function alive(client: Client, marker: OperationMarker): Promise<boolean> {
  const { rowCount } = await client.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2", [marker.pid, marker.backendStart]);
  return (rowCount ?? 0) > 0;
}

export interface Recovery {
  database: string;
  op: OperationKind | "throwaway";
  /** What was done, one phrase each. */
  actions: string[];
  /** The database the operation was about (a restore's "replaced" marker sits on the old database, under its new name). */
  about?: string;
  /** Whether the repair reopened the database to connections (the operation had closed it). */
  reopened?: boolean;
  /** The unfinished copy the repair dropped, if any. */
  droppedCopy?: string;
}

export interface RecoverOptions {
  log: Logger;
  /**
   * How long to wait for a dead client's session to end, ms (its backend may
   * still be finishing a CREATE DATABASE the client sent before it died).
   * Default 30000.
   */
  waitMs?: number;
}

/**
 * Repairs what interrupted operations left on the server of `url` (see the
 * module comment). Quiet when there is nothing to do, and when the role may
 * not reach the `postgres` database (a managed service): then no operation of
 * its can have closed anything either.
 */
export async function recoverInterrupted(url: string, options: RecoverOptions): Promise<Recovery[]> {
  try {
    const mine = parseDatabaseUrl(url).database;
    return await withClient(withDatabase(url, "postgres"), (client) => recoverOn(client, mine, options), { applicationName: "pgstack recover", connectTimeoutMs: 5000 });
  } catch (err) {
    if (err instanceof PgstackError && (err.code === "E_DB_MISSING" || err.code === "E_DB_AUTH")) return [];
    throw err;
  }
}

async function recoverOn(client: Client, mine: string, options: RecoverOptions): Promise<Recovery[]> {
  const { rows } = await client.query<{ datname: string; comment: string }>(
    `SELECT datname, shobj_description(oid, 'pg_database') AS comment FROM pg_database
      WHERE shobj_description(oid, 'pg_database') LIKE $1`,
    [`%"${MARK}"%`],
  );
  const done: Recovery[] = [];
  for (const row of rows) {
    const stored = parseMarker(row.comment);
    if (!stored) continue;
    const marker = stored[MARK];
    // Waiting is only worth it for this command's own database (it could not
    // use it before the operation ends anyway); another database's live
    // operation is left alone at once.
    const deadline = Date.now() + (marker.database === mine ? (options.waitMs ?? 30_000) : 0);
    while ((await alive(client, marker)) && Date.now() < deadline) await sleep(200);
    if (await alive(client, marker)) continue; // a live operation: not ours to touch
    // A guardian (guardian.ts) and the next command may repair at the same
    // time: one at a time per database, and only what is still there then.
    await client.query("SELECT pg_advisory_lock($1, hashtext($2))", [REPAIR_LOCK, row.datname]);
    try {
      const still = await operationOn(client, row.datname);
      if (still && still.pid === marker.pid && still.backendStart === marker.backendStart) done.push(await repair(client, row.datname, still, options.log));
    } catch (err) {
      options.log.warn(`could not repair database '${row.datname}' after an interrupted pgstack ${marker.op}: ${messageOf(err).split("\n")[0]}`);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1, hashtext($2))", [REPAIR_LOCK, row.datname]).catch(() => undefined);
    }
  }
  // Throwaway copies (a rehearsal's) whose process died before dropping them: a full copy of the data each.
  for (const { database, record } of await abandonedThrowaways(client)) {
    try {
      await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
      options.log.warn(`dropped ${database}, the throwaway ${record.purpose} copy left by pgstack process ${record.pid} on ${record.host}, which died before dropping it`);
      done.push({ database, op: "throwaway", actions: ["dropped it"] });
    } catch (err) {
      options.log.warn(`could not drop ${database}, the throwaway ${record.purpose} copy left by a dead pgstack process: ${messageOf(err).split("\n")[0]}`);
    }
  }
  return done;
}

async function exists(client: Client, db: string): Promise<boolean> {
  return ((await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [db])).rowCount ?? 0) > 0;
}

async function repair(client: Client, db: string, marker: OperationMarker, log: Logger): Promise<Recovery> {
  const actions: string[] = [];
  let droppedCopy: string | undefined;
  // The copy an interrupted snapshot or restore was making is incomplete or
  // unverified; it never is the live database (that one carries the marker).
  if (marker.copy && marker.copy !== db && (await exists(client, marker.copy))) {
    const copyMarker = await operationOn(client, marker.copy);
    const finishedSnapshot = marker.op === "snapshot" && (await commentOn(client, marker.copy))?.includes('"pgstack-snapshot"') && !copyMarker;
    if (!finishedSnapshot) {
      await client.query(`DROP DATABASE ${quoteIdent(marker.copy)} WITH (FORCE)`);
      actions.push(`dropped the unfinished copy ${marker.copy}`);
      droppedCopy = marker.copy;
    }
  }
  if (marker.probe && marker.probe !== db && marker.probe !== marker.copy && (await exists(client, marker.probe))) {
    await client.query(`DROP DATABASE ${quoteIdent(marker.probe)} WITH (FORCE)`);
    actions.push(`dropped the throwaway clone ${marker.probe}`);
  }
  const { rows } = await client.query<{ allowed: boolean }>("SELECT datallowconn AS allowed FROM pg_database WHERE datname = $1", [db]);
  await endOperation(client, db);
  const reopened = Boolean(marker.closed && rows[0] && !rows[0].allowed);
  if (reopened) actions.push("reopened it to connections");
  if (marker.op === "replaced" && !marker.keepOld) {
    // The swap committed, so the restore was verified and its discarded rows counted: drop it as the restore would have.
    await client.query(`DROP DATABASE ${quoteIdent(db)} WITH (FORCE)`);
    actions.push(`dropped it: it is the database as it was before a restore of '${marker.database}' that was interrupted after its verified swap, and that restore was to drop it`);
  } else if (marker.op === "replaced") {
    actions.push(`kept it (the restore was run with --keep-old): it is the database as it was before a restore of '${marker.database}'; remove it with DROP DATABASE ${quoteIdent(db)} once the restored database is checked`);
  }
  log.warn(`repaired database '${db}' after an interrupted pgstack ${marker.op} (pid ${marker.pid}): ${actions.join("; ") || "cleared its marker"}`);
  return { database: db, about: marker.database, op: marker.op, actions, reopened, droppedCopy };
}
