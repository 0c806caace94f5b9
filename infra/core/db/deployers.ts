import type { Client } from "pg";
import { CLOSED_FOR_CONNECTIONS, openSession, sleep, socketOf, transactionStatus, withClient } from "./client";
import { parseDatabaseUrl, type ConnectionTarget } from "./url";
import { PgstackError, isPgstackError } from "../errors";
import type { Logger } from "../logger";

/**
 * The deployer lock: Prisma Migrate's own advisory lock key, so pgstack and
 * `prisma migrate deploy` never run against one database at once. This module
 * is its one home: who holds it (one query), taking it (withAdvisoryLock),
 * holding it across a deploy session's steps (deployerSession), waiting for
 * other deployers (whenNoDeployer) and its typed errors.
 */
export const MIGRATION_LOCK_KEY = 72707369;

export interface LockHolder {
  pid: number;
  applicationName: string;
}

/** Sessions holding the migration lock in the database named by $2 ($1: the key). Advisory locks with a bigint key below 2^32 have classid 0 and objid = key. */
const LOCK_HOLDER_PIDS = `SELECT l.pid FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = $2)`;

/** The session holding the migration lock in database `database` (default: the client's), if any. */
export async function migrationLockHolder(client: Client, database?: string): Promise<LockHolder | undefined> {
  const { rows } = await client.query<{ pid: number; application_name: string }>(
    `SELECT a.pid, coalesce(a.application_name, '') AS application_name FROM pg_stat_activity a
      WHERE a.pid IN (${LOCK_HOLDER_PIDS}) ORDER BY a.backend_start LIMIT 1`,
    [MIGRATION_LOCK_KEY, database ?? (await client.query<{ db: string }>("SELECT current_database() AS db")).rows[0].db],
  );
  return rows[0] ? { pid: rows[0].pid, applicationName: rows[0].application_name } : undefined;
}

function describeHolder(who: LockHolder | undefined): string {
  return who ? `pid ${who.pid}, application_name '${who.applicationName || "(none)"}'` : "a session that has since ended";
}

/** `what` (a snapshot, a restore) refused because a deployer holds the lock: typed, so a waiting caller knows it without reading the text. */
export function deployerBusy(what: "snapshot" | "restore", database: string, who: LockHolder): PgstackError {
  return new PgstackError(
    "E_SNAPSHOT",
    `Cannot ${what} '${database}' while a deployer holds its migration lock (${describeHolder(who)}): let it finish and run again.`,
    { reason: "deployer-busy", holder: who },
  );
}

export interface LockOptions {
  /** How long to wait for another deployer, in seconds. */
  waitSeconds: number;
  pollMs?: number;
  onWait?: (holder: LockHolder | undefined) => void;
}

/**
 * Holds the session advisory lock while `fn` runs. Waits at most
 * `waitSeconds`, then fails naming who holds it. Released in `finally`; if the
 * process dies, PostgreSQL releases it with the session.
 */
export async function withAdvisoryLock<T>(client: Client, target: ConnectionTarget, options: LockOptions, fn: () => Promise<T>): Promise<T> {
  await acquireLock(client, target, options);
  try {
    return await fn();
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => undefined);
  }
}

/** Takes the lock on `client`'s session, waiting at most `options.waitSeconds` for another deployer. */
async function acquireLock(client: Client, target: ConnectionTarget, options: LockOptions): Promise<void> {
  const deadline = Date.now() + options.waitSeconds * 1000;
  const pollMs = options.pollMs ?? 200;
  let announced = false;
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [MIGRATION_LOCK_KEY]);
    if (rows[0].locked) return;
    const holder = await migrationLockHolder(client, target.database);
    if (!announced) {
      options.onWait?.(holder);
      announced = true;
    }
    if (Date.now() >= deadline) throw deployerTimeout(target.database, options.waitSeconds, holder);
    await sleep(Math.min(pollMs, Math.max(0, deadline - Date.now())));
  }
}

/**
 * One deployer across several commands: the connection of a `pulumi up`'s
 * deploy session, which takes the migration lock at its first command and
 * keeps both between commands, as one `apply --all` keeps them between
 * migrations (each migration still starts from a clean session, the lock
 * aside, and pgstack's settings). It lets go of them (closes the connection, so the server frees
 * the lock and rolls back anything open) when a command fails, when a command
 * leaves a transaction open, when the server ends the connection (the next
 * command connects and waits for the lock again), and at `close`.
 */
export interface DeployerSession {
  /** Runs `fn` on the session's connection, holding the lock; connects and takes it first when needed. */
  run<T>(url: string, options: LockOptions, fn: (client: Client, target: ConnectionTarget) => Promise<T>): Promise<T>;
  /** Closes the connection: the lock is free once this resolves. */
  close(): Promise<void>;
  /**
   * Drops the connection at once, also in the middle of a query: the server
   * rolls back what was not committed and frees the lock, as when the process
   * is killed (the runner's client_connection_check_interval makes it notice
   * within a second even mid-statement).
   */
  abort(): void;
}

export function deployerSession(): DeployerSession {
  let held: { url: string; client: Client; target: ConnectionTarget; ended: boolean } | undefined;
  const letGo = async () => {
    const current = held;
    held = undefined;
    await current?.client.end().catch(() => undefined);
  };
  return {
    async run(url, options, fn) {
      if (held && (held.ended || held.url !== url)) await letGo();
      if (!held) {
        const { client, target } = await openSession(url);
        const session = { url, client, target, ended: false };
        client.once("end", () => (session.ended = true));
        try {
          await acquireLock(client, target, options);
        } catch (err) {
          await client.end().catch(() => undefined);
          throw err;
        }
        held = session;
      }
      const { client, target } = held;
      const idle = transactionStatus(client);
      socketOf(client)?.ref();
      try {
        const result = await fn(client, target);
        if (idle() !== "I") await letGo();
        return result;
      } catch (err) {
        await letGo();
        throw err;
      } finally {
        // Between commands the held connection must not keep the process alive (a Pulumi program ends once its loop is empty).
        if (held?.client === client) socketOf(client)?.unref();
      }
    },
    close: letGo,
    abort() {
      const current = held;
      held = undefined;
      if (current) socketOf(current.client)?.destroy();
    },
  };
}

/**
 * Snapshots and deployers of one database, taking turns. A template-copy
 * snapshot must have the source to itself for a moment, so it neither copies
 * while a deployer works (a concurrent `pulumi up` of another stack sharing
 * the database, a `prisma migrate deploy`) nor cuts one off: it waits, at
 * most `waitSeconds`, until no session holds the migration lock and no
 * `pgstack` deployer is connected, then runs; past the bound it fails with
 * the same sentence as `pgstack apply`'s lock timeout.
 */
export interface DeployerWaitOptions {
  /** How long to wait for other deployers, in seconds. */
  waitSeconds: number;
  log: Logger;
  pollMs?: number;
  now?: () => number;
}

export type Deployer = LockHolder;

/** application_name of a pgstack migration session (withClient's default). */
export const DEPLOYER_APPLICATION_NAME = "pgstack";

/** Other sessions in the database of `url` that are deploying: lock holders and pgstack migration sessions. */
export async function activeDeployers(url: string): Promise<Deployer[]> {
  return withClient(
    url,
    async (client) => {
      const { rows } = await client.query<{ pid: number; application_name: string }>(
        `SELECT a.pid, coalesce(a.application_name, '') AS application_name
           FROM pg_stat_activity a
          WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
            AND (a.application_name = $3 OR a.pid IN (${LOCK_HOLDER_PIDS}))
          ORDER BY a.backend_start`,
        [MIGRATION_LOCK_KEY, parseDatabaseUrl(url).database, DEPLOYER_APPLICATION_NAME],
      );
      return rows.map((r) => ({ pid: r.pid, applicationName: r.application_name }));
    },
    { applicationName: "pgstack snapshot" },
  );
}

/** True for the errors a snapshot meets when it raced a deployer (or another snapshot closing the database), which waiting resolves. By code, never by text. */
export function isBusyError(err: unknown): boolean {
  return isPgstackError(err) && (err.details.reason === "deployer-busy" || err.details.sqlstate === CLOSED_FOR_CONNECTIONS);
}

/** The lock wait ran out: one sentence naming the holder. */
export function deployerTimeout(database: string, waitSeconds: number, who?: LockHolder): PgstackError {
  return new PgstackError(
    "E_LOCK_TIMEOUT",
    `Another deployer holds the migration lock on database '${database}' (${describeHolder(who)}); waited ${waitSeconds}s: let it finish, or raise --lock-wait.`,
    { holder: who },
  );
}

/**
 * Runs `fn` (a snapshot) once no other deployer works on the database of
 * `url`, waiting at most `options.waitSeconds`; retries `fn` when it lost a
 * race with a deployer that started meanwhile.
 */
export async function whenNoDeployer<T>(url: string, options: DeployerWaitOptions, fn: () => Promise<T>): Promise<T> {
  const now = options.now ?? Date.now;
  const deadline = now() + options.waitSeconds * 1000;
  const pollMs = options.pollMs ?? 250;
  const database = parseDatabaseUrl(url).database;
  let announced = false;
  let last: Deployer | undefined;
  for (;;) {
    let busy: Deployer[] = [];
    try {
      busy = await activeDeployers(url);
    } catch (err) {
      // Another snapshot has the database closed for a moment.
      if (!isBusyError(err)) throw err;
      busy = [{ pid: 0, applicationName: "pgstack snapshot" }];
    }
    if (busy.length === 0) {
      try {
        return await fn();
      } catch (err) {
        if (!isBusyError(err) || now() >= deadline) {
          if (isBusyError(err)) throw deployerTimeout(database, options.waitSeconds, last);
          throw err;
        }
      }
    } else {
      last = busy[0];
      if (!announced) {
        options.log.warn(
          `waiting up to ${options.waitSeconds}s for another deployer of '${database}' (pid ${last.pid}, ${last.applicationName || "no application_name"}) before the snapshot`,
        );
        announced = true;
      }
    }
    if (now() >= deadline) throw deployerTimeout(database, options.waitSeconds, last);
    await sleep(Math.min(pollMs, Math.max(0, deadline - now())));
  }
}
