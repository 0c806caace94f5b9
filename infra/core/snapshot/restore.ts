import { randomBytes } from "node:crypto";
import type { Client } from "pg";
import { sleep, withClient } from "../db/client";
import { parseDatabaseUrl, quoteIdent, withDatabase } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import { failpoint, failpointDuring } from "../failpoint";
import { readLedger } from "../ledger/ledger";
import type { Logger } from "../logger";
import { DEFAULT_MAX_PAUSE_MS, type SnapshotEngine } from "./engine";
import { beginOperation, endOperation, reopenKeepingMarker, rewriteOperation } from "./fence";
import { recordRollbackIntent, type RollbackIntent } from "./intent";
import { timestamp } from "./naming";
import { applyProperties, readProperties } from "./properties";
import { checkSeal, schemaDigestOn, type SealCheck } from "./seal";
import { findSnapshot, listAllSnapshots, sealKeyFileOf, type StoreOptions } from "./store";
import { describeStateMismatch, diffTablesOn, differingTables, tableStatesOn, type TableDiff, type TableStates } from "./tables";
import { copyDatabase, decideCopy, drainSessions, endSessions, OBJECT_IN_USE, recordThrowaway, serverNow, type CopyMethod } from "../db/copy";
import { diffTablesByBlocks, type BlockDiffResult } from "./block-diff";
import { describeFiles, filesFingerprint, sameFiles, type FilesFingerprint } from "./fingerprint";
import { deployerBusy, migrationLockHolder } from "../db/deployers";
import { connectionEnded, withGuardian, type GuardedFailure } from "./guardian";
import { withSnapshotSession, type SnapshotInfo } from "./template";

/**
 * Restore in place, never losing the current database before its replacement
 * is proven good, and never losing a write it does not report:
 *
 *   1. copy the snapshot into `<db>_restoring` (clone, template copy or
 *      pg_restore) and verify it: every table's content digest equals the
 *      snapshot's (a clone: the snapshot's files equal their sealed
 *      fingerprint, fingerprint.ts, and its rows are not read);
 *   2. give it what a copy does not carry: ACL, connection limit, settings,
 *      comment, owner (properties.ts);
 *   3. close `<db>` to new sessions and end the application's (never a
 *      deployer holding the migration lock: then nothing happens and the
 *      sentence names it); from here on `<db>` takes no write;
 *   4. count what the swap discards (inserted, updated, deleted per table
 *      since the snapshot: row by row, or for a clone only on the pages the
 *      two no longer share, block-diff.ts), and log it;
 *   5. swap names in one transaction (`<db>` -> `<db>_before_restore_<time>`,
 *      `<db>_restoring` -> `<db>`), opening the copy only then, and drop
 *      the old one (or keep it when asked, named in the output).
 *
 * Each step is recorded in a marker (fence.ts), so a process killed anywhere
 * leaves either the old or the restored database under `<db>`, open after the
 * next pgstack command, and no unfinished copy. The snapshot records that the
 * database was restored from it, which retention honours.
 */
export interface TableChange {
  table: string;
  /** Rows now and at the snapshot; null where the table does not exist; absent for a clone snapshot, whose rows are not read. */
  now?: number | null;
  atSnapshot?: number | null;
  /** Whether its contents differ (content digests), even with equal counts. */
  changed: boolean;
  /** Exact changes since the snapshot, where the snapshot can be read in place (template engine). */
  inserted?: number;
  updated?: number;
  deleted?: number;
}

export interface RestorePlan {
  database: string;
  snapshot: SnapshotInfo;
  engine: SnapshotEngine;
  /** Every table, now vs at the snapshot. */
  tables: TableChange[];
  /** Migrations applied now that the snapshot does not contain, newest last. */
  discardedMigrations: string[];
  /** The project's seal key file (seal.ts) the snapshot's recorded digests are checked with. */
  sealKeyFile: string;
  /**
   * A clone snapshot (sealed by its files, fingerprint.ts): the preview was counted by
   * changed blocks against a throwaway clone of it while the application could still write.
   */
  byFiles?: boolean;
}

export interface RestoreOptions {
  log: Logger;
  /** Keep the replaced database as `<db>_before_restore_<time>`. Default false (dropped once the restore is verified). */
  keepOld?: boolean;
  now?: () => Date;
  /** How long to keep trying while sessions linger, ms. Default 15000. */
  drainTimeoutMs?: number;
  /** How long the swap waits, with the database closed, for the application's transactions before ending its sessions, ms. Default 1000. */
  maxPauseMs?: number;
  /**
   * Record, in the swap's transaction, the rollback this restore is part of
   * (intent.ts): the chain is to be pinned at `pin` (`npm run rollback`).
   */
  intent?: { pin: string };
  /** Forces the template engine's copy method (tests, benches); default: detected (db/clone.ts). */
  copyMethod?: CopyMethod;
}

export interface RestoreResult {
  database: string;
  snapshotId: string;
  /** Name of the kept old database, when keepOld. */
  keptAs?: string;
  /** Exactly what the restore discarded, counted with the old database closed to writes. */
  discarded: TableDiff[];
  tables: TableChange[];
  /** How long the database was closed to the application by the swap, ms, and how much of it counting the discarded rows took. */
  pauseMs: number;
  countMs: number;
  /** A clone snapshot's count (block-diff.ts): the tables compared by changed blocks and the blocks read, both sides. */
  countedByBlocks?: { tables: string[]; blocksRead: number };
  /** How the snapshot was copied into place ("clone", "template" or, for a dump, pg_restore). */
  method?: string;
}

const RESTORED_MARK = "pgstack-restored-from";
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

/** Every table of either side, sorted. */
function compareStates(now: TableStates, atSnapshot: TableStates, exact: TableDiff[] | undefined): TableChange[] {
  const changed = new Set(differingTables(now, atSnapshot));
  const names = [...new Set([...Object.keys(now), ...Object.keys(atSnapshot)])].sort();
  return names.map((table) => {
    const d = exact?.find((x) => x.table === table);
    return {
      table,
      now: now[table]?.rows ?? null,
      atSnapshot: atSnapshot[table]?.rows ?? null,
      changed: changed.has(table),
      ...(exact ? { inserted: d?.inserted ?? 0, updated: d?.updated ?? 0, deleted: d?.deleted ?? 0 } : {}),
    };
  });
}

/** The migrations applied in the database now (finished, not rolled back), sorted. */
async function appliedMigrations(client: Client): Promise<string[]> {
  const ledger = await readLedger(client).catch(() => []);
  return ledger.filter((r) => r.finishedAt !== null && r.rolledBackAt === null).map((r) => r.migrationName).sort();
}

/** Those of `applied` the snapshot does not contain (its last migration `last`). */
function newerThan(applied: string[], last: string | null): string[] {
  return applied.filter((m) => last === null || m > last);
}

/** What a restore of `id` would do, changing nothing: an unknown id is one sentence. */
export async function planRestore(url: string, id: string, options: StoreOptions = {}): Promise<RestorePlan> {
  const database = parseDatabaseUrl(url).database;
  refuseSystem(database);
  const { engine, snapshot } = await findSnapshot(url, id, options);
  if (snapshot.files) return planByFiles(url, database, engine, snapshot, options);
  const atSnapshot = await engine.tableStates(url, snapshot);
  const { now, applied, exact } = await withClient(
    url,
    async (client) => {
      return {
        now: await tableStatesOn(client),
        applied: await appliedMigrations(client),
        // A template snapshot can be read in place: the exact changes now. (A dump's
        // are counted when its copy exists, during the restore.)
        exact:
          engine.kind === "template"
            ? await withClient(withDatabase(url, "postgres"), (admin) => withSnapshotSession(admin, url, snapshot.snapshotId, (then) => diffTablesOn(client, then)), { applicationName: "pgstack restore" })
            : undefined,
      };
    },
    { applicationName: "pgstack restore" },
  );
  return {
    database,
    snapshot,
    engine,
    tables: compareStates(now, atSnapshot, exact),
    discardedMigrations: newerThan(applied, snapshot.lastMigration),
    sealKeyFile: sealKeyFileOf(options),
  };
}

/**
 * The plan of a clone snapshot, reading neither all rows nor the snapshot
 * itself (a session in it would change its files, fingerprint.ts): a
 * throwaway clone of it, compared with the database by changed blocks.
 */
async function planByFiles(url: string, database: string, engine: SnapshotEngine, snapshot: SnapshotInfo, options: StoreOptions): Promise<RestorePlan> {
  const admin = withDatabase(url, "postgres");
  const preview = derivedName(database, `_plan_${randomBytes(4).toString("hex")}`);
  try {
    await withClient(
      admin,
      async (client) => {
        const how = await decideCopy(client);
        // Named on the database before it exists: a process killed between the clone and its
        // throwaway label leaves a marker whose session is gone, and the next command drops it (fence.ts).
        await beginOperation(client, database, { op: "plan", copy: preview }, { close: false });
        try {
          if ((await copyDatabase(client, snapshot.snapshotId, preview, { how, whenBusy: { mode: "refuse" } })) === "busy") {
            throw new PgstackError("E_SNAPSHOT", `Snapshot '${snapshot.snapshotId}' has a session in it, so the restore could not be previewed; nothing was changed.`, { snapshotId: snapshot.snapshotId, reason: "snapshot-in-use" });
          }
          failpoint("restore:plan-copied");
          await recordThrowaway(client, preview, "restore plan");
        } finally {
          await endOperation(client, database);
        }
      },
      { applicationName: "pgstack restore" },
    );
    const { applied, diffs } = await withClient(
      url,
      async (client) => {
        const compared = await withClient(withDatabase(url, preview), (then) => diffTablesByBlocks(client, then), { applicationName: "pgstack restore" });
        return { applied: await appliedMigrations(client), diffs: compared.diffs };
      },
      { applicationName: "pgstack restore" },
    );
      return {
      database,
      snapshot,
      engine,
      tables: diffs.map((d) => ({ table: d.table, changed: true, inserted: d.inserted, updated: d.updated, deleted: d.deleted })),
      discardedMigrations: newerThan(applied, snapshot.lastMigration),
      sealKeyFile: sealKeyFileOf(options),
      byFiles: true,
    };
  } finally {
    await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(preview)} WITH (FORCE)`), { applicationName: "pgstack restore" }).catch(() => undefined);
  }
}

async function exists(client: Client, name: string): Promise<boolean> {
  return ((await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount ?? 0) > 0;
}

/** Restores `plan.snapshot` over its database (see the module comment). */
export async function restoreSnapshot(url: string, plan: RestorePlan, options: RestoreOptions): Promise<RestoreResult> {
  const { database: db, snapshot, engine } = plan;
  const log = options.log;
  const admin = withDatabase(url, "postgres");
  const restoring = derivedName(db, "_restoring");
  const stamp = timestamp((options.now ?? (() => new Date()))());
  // First, before any copy: digests whose seal does not match were rewritten, refused here.
  const seal = await checkSeal(snapshot, plan.sealKeyFile);
  // A clone snapshot is checked by its files, never read (fingerprint.ts).
  const byFiles = snapshot.files !== undefined;
  const expected = byFiles ? {} : await engine.tableStates(url, snapshot);
  // Digests recorded when the snapshot was taken (absent: taken by an older pgstack, or a dump sidecar with counts only).
  const recorded = snapshot.states !== undefined || byFiles;

  // Whether `db` is closed by this restore now: what the error says if the session ends under it.
  const state = { closed: false };
  // The guardian reopens the database if this process dies while it is closed (guardian.ts).
  return withGuardian(url, log, () => withClient(
    admin,
    async (client) => {
      if (!(await exists(client, db))) throw new PgstackError("E_DB_MISSING", `Database '${db}' does not exist, so there is nothing to restore over: nothing was changed.`);
      // Fail early, before any copy, when a deploy is running.
      const deployer = await migrationLockHolder(client, db);
      if (deployer) throw deployerBusy("restore", db, deployer);
      // Left by an interrupted restore that no marker names: never the live database, safe to drop.
      if (await exists(client, restoring)) {
        log.warn(`dropping ${restoring}, left by an interrupted restore`);
        await client.query(`DROP DATABASE ${quoteIdent(restoring)} WITH (FORCE)`);
      }
      let before = derivedName(db, `_before_restore_${stamp}`);
      for (let n = 2; await exists(client, before); n++) before = derivedName(db, `_before_restore_${stamp}_${n}`);

      // From here a killed process is repaired by the next command (fence.ts).
      await beginOperation(client, db, { op: "restore", copy: restoring, keepOld: Boolean(options.keepOld) }, { close: false });
      let swapped = false;
      let discarded: TableDiff[] = [];
      let method = "";
      const pause: Pick<RestoreResult, "pauseMs" | "countMs" | "countedByBlocks"> = { pauseMs: 0, countMs: 0 };
      try {
        const made = await failpointDuring("restore:materializing", () => engine.materialize(url, snapshot, restoring, log, { copyMethod: options.copyMethod, closed: byFiles }));
        method = made ? made.method : "pg_restore";
        failpoint("restore:materialized");
        // A clone snapshot's copy is not checked row by row: made closed and out of PUBLIC's reach, so the
        // application's role cannot write it between the copy and the close below (the owner and superusers can).
        if (byFiles) await client.query(`ALTER DATABASE ${quoteIdent(restoring)} ALLOW_CONNECTIONS true`);
        // Verified closed to every session but the verifying one, and opened only
        // by the swap: the database put in place is exactly the one verified
        // (a check after the swap would race the application's first writes).
        discarded = await withClient(
          withDatabase(url, restoring),
          async (copySession) => {
            const { rows: me } = await copySession.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
            await client.query(`ALTER DATABASE ${quoteIdent(restoring)} ALLOW_CONNECTIONS false`);
            await endSessionsAndWait(client, restoring, log, me[0].pid, Date.now() + 5000);
            const copy = byFiles ? {} : await tableStatesOn(copySession);
            if (snapshot.schema !== undefined && (await schemaDigestOn(copySession)) !== snapshot.schema) {
              throw new PgstackError(
                "E_SNAPSHOT",
                `Snapshot '${snapshot.snapshotId}' no longer matches the schema digest recorded when it was taken (a column, constraint, index, trigger, function, view, sequence, enum or policy differs): it was changed since, so it is not restored; nothing was changed.`,
                { snapshotId: snapshot.snapshotId, reason: "schema-changed" },
              );
            }
            if (differingTables(copy, expected).length > 0) {
              throw recorded
                ? new PgstackError(
                    "E_SNAPSHOT",
                    `Snapshot '${snapshot.snapshotId}' no longer matches the content digests recorded when it was taken (${describeStateMismatch(copy, expected)}): it was changed since, so it is not restored; nothing was changed.`,
                    { snapshotId: snapshot.snapshotId, reason: "changed-since-taken" },
                  )
                : new PgstackError("E_SNAPSHOT", `The copy of snapshot '${snapshot.snapshotId}' does not match it (${describeStateMismatch(copy, expected)}): nothing was changed.`, {
                    snapshotId: snapshot.snapshotId,
                    reason: "copy-differs",
                  });
            }
            // After the copy: a change made to the snapshot before it was cloned shows in its files now.
            const files = byFiles ? await checkFiles(client, snapshot) : undefined;
            log.info(files ? filesVerdict(restoring, snapshot, files, seal) : verdict(restoring, snapshot, Object.keys(expected).length, recorded, seal));
            failpoint("restore:verified");
            await carryOver(client, db, restoring, log, byFiles);
            // Recorded before the swap (a rename keeps the oid): a restore killed right after
            // the swap is still known as one, so the next update re-applies only what it removed.
            const { rows: copyOid } = await client.query<{ oid: number }>("SELECT oid::int AS oid FROM pg_database WHERE datname = $1", [restoring]);
            await engine.markRestored(url, snapshot, copyOid[0].oid).catch((err) => log.warn(`could not record the restore in snapshot ${snapshot.snapshotId}: ${messageOf(err)}`));
            const intent: RollbackIntent | undefined = options.intent
              ? { op: "restore", pin: options.intent.pin, snapshot: snapshot.snapshotId, removed: plan.discardedMigrations, at: new Date().toISOString() }
              : undefined;
            return swap(client, url, db, restoring, before, log, { drainMs: options.drainTimeoutMs ?? 15_000, maxPauseMs: options.maxPauseMs ?? DEFAULT_MAX_PAUSE_MS, pause }, copySession, byFiles ? "blocks" : copy, intent, state);
          },
          { applicationName: "pgstack restore" },
        );
        swapped = true;
      } finally {
        if (!swapped) {
          await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(restoring)} WITH (FORCE)`).catch(() => undefined);
          await endOperation(client, db).catch(() => undefined);
        }
      }
      failpoint("restore:swapped");
      // The old database, under its new name, takes sessions again (to be
      // inspected or dropped); its marker stays until it is dropped or kept on purpose.
      await reopenKeepingMarker(client, before);
      failpoint("restore:reopened");
      if (options.keepOld) await endOperation(client, before);
      else await client.query(`DROP DATABASE ${quoteIdent(before)} WITH (FORCE)`);
      log.info(
        `restored ${db} from snapshot ${snapshot.snapshotId}${options.keepOld ? `; the previous database is kept as ${before} (remove it with: DROP DATABASE ${quoteIdent(before)};)` : ""}`,
      );
      return { database: db, snapshotId: snapshot.snapshotId, keptAs: options.keepOld ? before : undefined, discarded, tables: plan.tables, ...pause, method };
    },
    { applicationName: "pgstack restore" },
  ), (err, failure) => restoreFailure(err, failure, db, snapshot.snapshotId, state.closed, Boolean(options.keepOld)));
}

const ENDED = "was ended (terminated by an administrator, a failover or the network)";

/** A restore whose own session was ended under it, in one sentence saying where the database is now (withGuardian repaired it, or left it to the guardian). */
function restoreFailure(err: unknown, failure: GuardedFailure, db: string, snapshotId: string, closed: boolean, keepOld: boolean): unknown {
  if (!connectionEnded(err)) return err;
  const details = { reason: "connection-ended", sqlstate: (err as { code?: string }).code };
  if (failure.handedOver) {
    return new PgstackError(
      "E_SNAPSHOT",
      `The restore's connection to the server ${ENDED} and database '${db}' could not be repaired at once: pgstack's guardian reopens it as soon as the server answers (so does any pgstack command), either as it was or restored from snapshot '${snapshotId}'.`,
      details,
    );
  }
  const replaced = failure.recoveries.find((r) => r.op === "replaced");
  if (replaced) {
    return new PgstackError(
      "E_SNAPSHOT",
      `The restore's connection to the server ${ENDED} after the verified copy was swapped in: '${db}' is restored from snapshot '${snapshotId}' and open, and the previous database was ${keepOld ? `kept as ${replaced.database}` : "dropped"}.`,
      details,
    );
  }
  return closed || failure.recoveries.some((r) => r.reopened)
    ? new PgstackError("E_SNAPSHOT", `The restore's connection to the server ${ENDED} while database '${db}' was closed; it has been reopened and nothing was changed.`, details)
    : new PgstackError("E_SNAPSHOT", `The restore's connection to the server ${ENDED}; database '${db}' is open and nothing was changed.`, details);
}

/** The changes since the snapshot, reading only the blocks the two databases do not share (block-diff.ts). */
async function countByBlocks(now: Client, then: Client, log: Logger): Promise<BlockDiffResult> {
  const result = await diffTablesByBlocks(now, then);
  const why = result.rowByRow.map((t) => `${t} (${result.reasons[t] ?? "not comparable by blocks"})`);
  log.info(`counted by changed blocks: ${result.byBlocks.length} table(s), ${result.blocksRead} block(s) read${why.length > 0 ? `; row by row: ${why.join(", ")}` : ""}`);
  return result;
}

/** The snapshot's files now against its sealed fingerprint: a difference refuses the restore. */
async function checkFiles(client: Client, snapshot: SnapshotInfo): Promise<{ verified: true; fingerprint: FilesFingerprint } | { verified: false; reason: string }> {
  const now = await filesFingerprint(client, snapshot.snapshotId);
  if (!now.fingerprint) return { verified: false, reason: now.reason };
  if (!sameFiles(now.fingerprint, snapshot.files!)) {
    throw new PgstackError(
      "E_SNAPSHOT",
      `Snapshot '${snapshot.snapshotId}' no longer matches the fingerprint of its files recorded when it was taken (${describeFiles(now.fingerprint, snapshot.files!)}): a change to its content since cannot be ruled out, so it is not restored; nothing was changed.`,
      { snapshotId: snapshot.snapshotId, reason: "changed-since-taken" },
    );
  }
  return { verified: true, fingerprint: now.fingerprint };
}

/** What the check of a clone snapshot proved, in one sentence. */
function filesVerdict(restoring: string, snapshot: SnapshotInfo, files: Awaited<ReturnType<typeof checkFiles>>, seal: SealCheck): string {
  const id = snapshot.snapshotId;
  if (!files.verified) {
    return `${restoring} is a clone of snapshot ${id}, but its files could not be checked against the fingerprint recorded when it was taken (${files.reason}), so a change made to it since cannot be detected`;
  }
  const what = `its ${files.fingerprint.files} files (${(files.fingerprint.bytes / 2 ** 30).toFixed(2)} GiB) are unchanged since it was taken${snapshot.schema !== undefined ? " and the copy's schema matches" : ""}`;
  if (seal.status === "sealed") return `${restoring} verified: it is a clone of snapshot ${id}, whose ${what.slice(4)} (sealed fingerprint; a clone's rows are not read)`;
  return `${restoring} is a clone of snapshot ${id}, whose ${what.slice(4)}, but the fingerprint could not be verified against its seal (${seal.status === "unsealed" ? "none" : `key ${seal.keyFile} ${seal.other ? "is another one" : "is not on this machine"}`}), so a change made to it since by a role that owns it cannot be detected`;
}

/** What the check of the copy proved, in one sentence: "verified" only against sealed digests. */
function verdict(restoring: string, snapshot: SnapshotInfo, tables: number, recorded: boolean, seal: SealCheck): string {
  const id = snapshot.snapshotId;
  if (!recorded) {
    return `${restoring} matches snapshot ${id} as it is now (${tables} table(s)); it was taken by an older pgstack that recorded no content digest, so a change made to it since it was taken cannot be detected`;
  }
  if (seal.status === "sealed") {
    return `${restoring} verified: ${tables} table(s)${snapshot.schema !== undefined ? " and the schema" : ""} match the sealed digests recorded when snapshot ${id} was taken`;
  }
  const why =
    seal.status === "no-key"
      ? seal.other
        ? `they were sealed with another key than ${seal.keyFile} (taken on another machine or project, or the key was replaced?)`
        : `the key that seals them (${seal.keyFile}) is not on this machine (was the snapshot taken elsewhere?)`
      : "it was taken by an older pgstack that sealed none";
  return `${restoring} matches the digests in snapshot ${id}'s record (${tables} table(s)), but they could not be verified against the digest recorded when it was taken: ${why}, so a change made to it since by a role that owns it cannot be detected`;
}

/** The replaced database's owner, ACL, connection limit, settings and comment, onto the copy. */
async function carryOver(client: Client, db: string, restoring: string, log: Logger, publicRevoked = false): Promise<void> {
  const { rows } = await client.query<{ owner: string; current: string }>(
    `SELECT pg_get_userbyid(o.datdba) AS owner, pg_get_userbyid(n.datdba) AS current FROM pg_database o, pg_database n WHERE o.datname = $1 AND n.datname = $2`,
    [db, restoring],
  );
  // The copy belongs to whoever restored it; give it to the old database's owner.
  if (rows[0] && rows[0].owner !== rows[0].current) {
    await client.query(`ALTER DATABASE ${quoteIdent(restoring)} OWNER TO ${quoteIdent(rows[0].owner)}`).catch((err) => log.warn(`could not give ${db} back to its owner ${rows[0].owner}: ${messageOf(err)}`));
  }
  const props = await readProperties(client, db);
  await applyProperties(client, restoring, props, log);
  // The copy was made without PUBLIC's CONNECT and TEMPORARY (materialize, closed): the default ACL's back.
  if (publicRevoked && props.acl === null) await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${quoteIdent(restoring)} TO PUBLIC`);
}

/** The changes one table lost, as a phrase. */
export function describeDiff(d: TableDiff): string {
  return `${d.table}: ${d.inserted} inserted, ${d.updated} updated, ${d.deleted} deleted`;
}

/**
 * Closes `db`, ends its sessions and waits until they are gone, counts what
 * the swap discards (no write can land in between), then swaps both names in
 * one transaction: `<db>` always names a complete database.
 */
async function swap(
  client: Client,
  url: string,
  db: string,
  restoring: string,
  before: string,
  log: Logger,
  timing: { drainMs: number; maxPauseMs: number; pause: Pick<RestoreResult, "pauseMs" | "countMs" | "countedByBlocks"> },
  copySession: Client,
  /** The copy's content digests (only tables whose digest differs are compared row by row), or "blocks": a clone, compared by changed blocks. */
  copyStates: TableStates | "blocks",
  intent: RollbackIntent | undefined,
  state: { closed: boolean },
): Promise<TableDiff[]> {
  const deadline = Date.now() + timing.drainMs;
  let closedSince = 0;
  // The counting session enters `db` before it closes: nobody else can after.
  return withClient(
    url,
    async (counter) => {
      const { rows: me } = await counter.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      const closedAt = await serverNow(client);
      await client.query("BEGIN");
      await rewriteOperation(client, db, { closed: true });
      await client.query(`ALTER DATABASE ${quoteIdent(db)} ALLOW_CONNECTIONS false`);
      await client.query("COMMIT");
      closedSince = Date.now();
      state.closed = true;
      failpoint("restore:closed");
      // The bounded pause: each session ended once the transaction it had open at the close is over; the rest after maxPauseMs.
      const { busy } = await drainSessions(client, db, { closedAt, graceMs: timing.maxPauseMs, log, purpose: "restore", keep: me[0].pid });
      if (busy > 0) log.warn(`${busy} session(s) of ${db} were still in a transaction after ${timing.maxPauseMs} ms: ending them (their transactions roll back)`);
      await endSessionsAndWait(client, db, log, me[0].pid, deadline);
      // Read with the database closed to writes, so the count is exact; it reads every table, so it is inside the pause (measured, said).
      const counting = Date.now();
      let discarded: TableDiff[];
      if (copyStates === "blocks") {
        const counted = await countByBlocks(counter, copySession, log);
        timing.pause.countedByBlocks = { tables: counted.byBlocks, blocksRead: counted.blocksRead };
        discarded = counted.diffs;
      } else discarded = await diffTablesOn(counter, copySession, copyStates);
      timing.pause.countMs = Date.now() - counting;
      // The copy may be renamed only with no session in it.
      await copySession.end();
      log.info(
        discarded.length > 0
          ? `discarded by the restore (counted with ${db} closed to writes): ${discarded.map(describeDiff).join("; ")}`
          : `nothing written since the snapshot is discarded (every table of ${db} equals the snapshot's)`,
      );
      failpoint("restore:counted");
      return discarded;
    },
    { applicationName: "pgstack restore" },
  ).then(async (discarded) => {
    for (let attempt = 1; ; attempt++) {
      await endSessions(client, db, log, attempt + 1, "restore");
      try {
        await client.query("BEGIN");
        await client.query(`ALTER DATABASE ${quoteIdent(db)} RENAME TO ${quoteIdent(before)}`);
        await client.query(`ALTER DATABASE ${quoteIdent(restoring)} RENAME TO ${quoteIdent(db)}`);
        // The marker goes with the old database: a crash from here keeps it, reopened, and says so.
        await client.query(`ALTER DATABASE ${quoteIdent(db)} ALLOW_CONNECTIONS true`);
        await rewriteOperation(client, before, { op: "replaced", copy: undefined });
        // The point of no return: the rollback's pin commits with the swap, so a kill from here is finished by a retry.
        if (intent) await recordRollbackIntent(client, db, intent);
        await failpointDuring("restore:swapping", () => client.query("COMMIT"), 0);
        state.closed = false;
        timing.pause.pauseMs = Date.now() - closedSince;
        log.info(`${db} was closed to the application for ${timing.pause.pauseMs} ms by the swap (counting what it discards took ${timing.pause.countMs} ms of it)`);
        return discarded;
      } catch (err) {
        await client.query("ROLLBACK").catch(() => undefined);
        // The session ended under it: withGuardian repairs and says so (a swap committed or not).
        if (connectionEnded(err)) throw err;
        if ((err as { code?: string }).code !== OBJECT_IN_USE || Date.now() > deadline) {
          throw new PgstackError("E_SNAPSHOT", `Could not swap the restored copy in for '${db}': ${messageOf(err).split("\n")[0]}; nothing was changed.`);
        }
      }
      await sleep(Math.min(200 * attempt, 1000));
    }
  });
}

/** Ends every session in `db` but `keep`, and waits until they are gone: a write in flight either committed before the count or never will. */
async function endSessionsAndWait(client: Client, db: string, log: Logger, keep: number, deadline: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const d = await migrationLockHolder(client, db);
    if (d) throw deployerBusy("restore", db, d);
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND pid <> $2",
      [db, keep],
    );
    if (rows.length === 0) return;
    if (attempt === 1) log.warn(`ended ${rows.length} session(s) still connected to ${db} so it could be replaced`);
    if (Date.now() > deadline) throw new PgstackError("E_SNAPSHOT", `Sessions of '${db}' did not end in time for the restore; nothing was changed.`);
    await sleep(50);
  }
}

/** The snapshot the database of `url` was last restored from, if it was (its id). */
export async function restoredFrom(url: string, options: StoreOptions = {}): Promise<string | undefined> {
  const found = await restoredFromSnapshot(url, options);
  if (found) return found.snapshotId;
  // Restores made before the mark moved into the snapshot left it in the database's comment.
  const comment = await withClient(url, async (client) => (await client.query<{ c: string | null }>("SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = current_database()")).rows[0]?.c ?? null, {
    applicationName: "pgstack snapshot",
  });
  try {
    const data = JSON.parse(comment ?? "null") as Record<string, unknown> | null;
    return typeof data?.[RESTORED_MARK] === "string" ? (data[RESTORED_MARK] as string) : undefined;
  } catch {
    return undefined;
  }
}

/** The snapshot (either engine) that recorded the database of `url`, by its oid, as restored from it. */
export async function restoredFromSnapshot(url: string, options: StoreOptions = {}): Promise<SnapshotInfo | undefined> {
  const oid = await withClient(url, async (client) => (await client.query<{ oid: number }>("SELECT oid::int AS oid FROM pg_database WHERE datname = current_database()")).rows[0]?.oid, {
    applicationName: "pgstack snapshot",
  });
  return (await listAllSnapshots(url, {}, options)).filter((s) => s.restoredInto?.includes(oid)).at(-1);
}
