import type { Client } from "pg";
import { sleep, withClient } from "../db/client";
import { parseDatabaseUrl, quoteIdent, withDatabase } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import { readLedger } from "../ledger/ledger";
import type { Logger } from "../logger";
import type { SnapshotEngine } from "./engine";
import { timestamp } from "./naming";
import { findSnapshot, type StoreOptions } from "./store";
import { compareCounts, countRows, countRowsOn, describeMismatch, type TableChange } from "./tables";
import { deployerOn, endSessions, OBJECT_IN_USE, quoteLiteral, type SnapshotInfo } from "./template";

/**
 * Restore in place, never losing the current database before its replacement
 * is proven good:
 *
 *   1. copy the snapshot into `<db>_restoring` (template copy or pg_restore);
 *   2. verify it: rows per table equal the snapshot's;
 *   3. swap names in one transaction (`<db>` -> `<db>_before_restore_<time>`,
 *      `<db>_restoring` -> `<db>`), after closing `<db>` to new sessions and
 *      ending the application's (never a deployer holding the migration lock:
 *      then nothing happens and the sentence names it);
 *   4. verify `<db>` again, then drop the old one (or keep it when asked).
 *
 * Any failure before the swap drops only `<db>_restoring`: the database is as
 * it was. The restored database's comment records the snapshot it came from,
 * which retention never deletes.
 */
export interface RestorePlan {
  database: string;
  snapshot: SnapshotInfo;
  engine: SnapshotEngine;
  /** Every table, rows now vs at the snapshot. */
  tables: TableChange[];
  /** Migrations applied now that the snapshot does not contain, newest last. */
  discardedMigrations: string[];
}

export interface RestoreOptions {
  log: Logger;
  /** Keep the replaced database as `<db>_before_restore_<time>`. Default false (dropped once the restore is verified). */
  keepOld?: boolean;
  now?: () => Date;
  /** How long to keep trying while sessions linger, ms. Default 15000. */
  drainTimeoutMs?: number;
}

export interface RestoreResult {
  database: string;
  snapshotId: string;
  /** Name of the kept old database, when keepOld. */
  keptAs?: string;
  tables: TableChange[];
}

const RESTORED_MARK = "pgstack-restored-from";
const BEFORE_MARK = "pgstack-before-restore";
const NAME_MAX = 63;

/** `<db><suffix>`, the db part cut so the whole fits PostgreSQL's 63 bytes. */
export function derivedName(db: string, suffix: string): string {
  return db.slice(0, NAME_MAX - suffix.length) + suffix;
}

function refuseSystem(db: string): void {
  if (db === "postgres" || db === "template0" || db === "template1") {
    throw new PgstackError("E_SNAPSHOT", `Refusing to restore over the system database '${db}': point the URL at the application database.`);
  }
}

/** What a restore of `id` would do, changing nothing: an unknown id is one sentence. */
export async function planRestore(url: string, id: string, options: StoreOptions = {}): Promise<RestorePlan> {
  const database = parseDatabaseUrl(url).database;
  refuseSystem(database);
  const { engine, snapshot } = await findSnapshot(url, id, options);
  const atSnapshot = await engine.tableCounts(url, snapshot);
  const { now, applied } = await withClient(
    url,
    async (client) => {
      const ledger = await readLedger(client).catch(() => []);
      return {
        now: await countRowsOn(client),
        applied: ledger.filter((r) => r.finishedAt !== null && r.rolledBackAt === null).map((r) => r.migrationName).sort(),
      };
    },
    { applicationName: "pgstack restore" },
  );
  const last = snapshot.lastMigration;
  return {
    database,
    snapshot,
    engine,
    tables: compareCounts(now, atSnapshot),
    discardedMigrations: applied.filter((m) => last === null || m > last),
  };
}

/** Restores `plan.snapshot` over its database (see the module comment). */
export async function restoreSnapshot(url: string, plan: RestorePlan, options: RestoreOptions): Promise<RestoreResult> {
  const { database: db, snapshot, engine } = plan;
  const log = options.log;
  const admin = withDatabase(url, "postgres");
  const restoring = derivedName(db, "_restoring");
  const stamp = timestamp((options.now ?? (() => new Date()))());

  const before = await withClient(
    admin,
    async (client) => {
      const exists = async (name: string) => ((await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount ?? 0) > 0;
      if (!(await exists(db))) throw new PgstackError("E_DB_MISSING", `Database '${db}' does not exist, so there is nothing to restore over: nothing was changed.`);
      // Fail early, before any copy, when a deploy is running.
      const deployer = await deployerOn(client, db);
      if (deployer) {
        throw new PgstackError(
          "E_SNAPSHOT",
          `Cannot restore '${db}' while a deployer holds its migration lock (pid ${deployer.pid}, application_name '${deployer.application_name || "(none)"}'): let it finish and run again.`,
        );
      }
      // Left by an interrupted restore: never the live database (the swap is atomic), safe to drop.
      if (await exists(restoring)) {
        log.warn(`dropping ${restoring}, left by an interrupted restore`);
        await client.query(`DROP DATABASE ${quoteIdent(restoring)} WITH (FORCE)`);
      }
      let name = derivedName(db, `_before_restore_${stamp}`);
      for (let n = 2; await exists(name); n++) name = derivedName(db, `_before_restore_${stamp}_${n}`);
      return name;
    },
    { applicationName: "pgstack restore" },
  );

  const expected = await engine.tableCounts(url, snapshot);
  let swapped = false;
  try {
    await engine.materialize(url, snapshot, restoring, log);
    const copy = compareCounts(await countRows(withDatabase(url, restoring)), expected, true);
    if (copy.length > 0) {
      throw new PgstackError("E_SNAPSHOT", `The copy of snapshot '${snapshot.snapshotId}' does not match it (${describeMismatch(copy)}): nothing was changed.`);
    }
    log.info(`${restoring} verified: ${Object.keys(expected).length} table(s) match the snapshot`);
    await withClient(admin, (client) => swap(client, db, restoring, before, log, options.drainTimeoutMs ?? 15_000), { applicationName: "pgstack restore" });
    swapped = true;
  } finally {
    if (!swapped) {
      await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(restoring)} WITH (FORCE)`), { applicationName: "pgstack restore" }).catch(() => undefined);
    }
  }

  const after = compareCounts(await countRows(url), expected, true);
  if (after.length > 0) {
    throw new PgstackError(
      "E_SNAPSHOT",
      `The restored '${db}' does not match snapshot '${snapshot.snapshotId}' (${describeMismatch(after)}): the previous database is kept as '${before}'.`,
    );
  }

  await withClient(
    admin,
    async (client) => {
      const at = new Date().toISOString();
      await client.query(`COMMENT ON DATABASE ${quoteIdent(db)} IS ${quoteLiteral(JSON.stringify({ [RESTORED_MARK]: snapshot.snapshotId, restoredAt: at }))}`);
      // The copy belongs to whoever restored it; give it back to the old database's owner.
      const { rows } = await client.query<{ owner: string; current: string }>(
        `SELECT pg_get_userbyid(o.datdba) AS owner, pg_get_userbyid(n.datdba) AS current FROM pg_database o, pg_database n WHERE o.datname = $1 AND n.datname = $2`,
        [before, db],
      );
      if (rows[0] && rows[0].owner !== rows[0].current) {
        await client.query(`ALTER DATABASE ${quoteIdent(db)} OWNER TO ${quoteIdent(rows[0].owner)}`).catch((err) => log.warn(`could not give ${db} back to its owner ${rows[0].owner}: ${messageOf(err)}`));
      }
      if (options.keepOld) {
        await client.query(`COMMENT ON DATABASE ${quoteIdent(before)} IS ${quoteLiteral(JSON.stringify({ [BEFORE_MARK]: db, replacedAt: at, by: snapshot.snapshotId }))}`);
      } else {
        await client.query(`DROP DATABASE ${quoteIdent(before)} WITH (FORCE)`);
      }
    },
    { applicationName: "pgstack restore" },
  );
  log.info(`restored ${db} from snapshot ${snapshot.snapshotId}${options.keepOld ? `; the previous database is kept as ${before}` : ""}`);
  return { database: db, snapshotId: snapshot.snapshotId, keptAs: options.keepOld ? before : undefined, tables: plan.tables };
}

/** Both renames in one transaction: `<db>` always names a complete database. */
async function swap(client: Client, db: string, restoring: string, before: string, log: Logger, drainMs: number): Promise<void> {
  const deadline = Date.now() + drainMs;
  await client.query(`ALTER DATABASE ${quoteIdent(db)} ALLOW_CONNECTIONS false`);
  let swapped = false;
  try {
    for (let attempt = 1; ; attempt++) {
      await endSessions(client, db, log, attempt, "restore");
      try {
        await client.query("BEGIN");
        await client.query(`ALTER DATABASE ${quoteIdent(db)} RENAME TO ${quoteIdent(before)}`);
        await client.query(`ALTER DATABASE ${quoteIdent(restoring)} RENAME TO ${quoteIdent(db)}`);
        await client.query("COMMIT");
        swapped = true;
        return;
      } catch (err) {
        await client.query("ROLLBACK").catch(() => undefined);
        if ((err as { code?: string }).code !== OBJECT_IN_USE || Date.now() > deadline) {
          throw new PgstackError("E_SNAPSHOT", `Could not swap the restored copy in for '${db}': ${messageOf(err).split("\n")[0]}; nothing was changed.`);
        }
      }
      await sleep(Math.min(200 * attempt, 1000));
    }
  } finally {
    // The old database, under whichever name it has now, takes sessions again.
    await client.query(`ALTER DATABASE ${quoteIdent(swapped ? before : db)} ALLOW_CONNECTIONS true`).catch(() => undefined);
  }
}

/** The snapshot the database of `url` was last restored from, if it was. */
export async function restoredFrom(url: string): Promise<string | undefined> {
  const db = parseDatabaseUrl(url).database;
  return withClient(
    url,
    async (client) => {
      const { rows } = await client.query<{ c: string | null }>("SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1", [db]);
      try {
        const data = JSON.parse(rows[0]?.c ?? "null") as Record<string, unknown> | null;
        return typeof data?.[RESTORED_MARK] === "string" ? (data[RESTORED_MARK] as string) : undefined;
      } catch {
        return undefined;
      }
    },
    { applicationName: "pgstack snapshot" },
  );
}
