import { MIGRATION_LOCK_KEY, sleep, withClient } from "./client";
import { parseDatabaseUrl } from "./url";
import { PgstackError, messageOf } from "../errors";
import type { Logger } from "../logger";

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

export interface Deployer {
  pid: number;
  applicationName: string;
}

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
            AND (a.application_name = $2
                 OR a.pid IN (SELECT l.pid FROM pg_locks l
                               WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1
                                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())))
          ORDER BY a.backend_start`,
        [MIGRATION_LOCK_KEY, DEPLOYER_APPLICATION_NAME],
      );
      return rows.map((r) => ({ pid: r.pid, applicationName: r.application_name }));
    },
    { applicationName: "pgstack snapshot" },
  );
}

/** True for the errors a snapshot meets when it raced a deployer, which waiting resolves. */
export function isBusyError(err: unknown): boolean {
  const message = messageOf(err);
  return /while a deployer holds its migration lock/.test(message) || /not currently accepting connections/.test(message);
}

export function deployerTimeout(database: string, waitSeconds: number, who?: Deployer): PgstackError {
  const holder = who ? `pid ${who.pid}, application_name '${who.applicationName || "(none)"}'` : "a session that has since ended";
  return new PgstackError(
    "E_LOCK_TIMEOUT",
    `Another deployer holds the migration lock on database '${database}' (${holder}); waited ${waitSeconds}s: let it finish, or raise --lock-wait.`,
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
