import { createHash } from "node:crypto";
import { withClient } from "../db/client";
import { readLedger } from "../ledger/ledger";
import { formatIdentity, identityOn } from "./identity";
import { checkedRollbackIntentOn, type CheckedIntent, type RollbackIntent } from "./intent";
import { restoredFromSnapshot } from "./restore";
import type { StoreOptions } from "./store";

/**
 * What the stack must know of the database as it is now, not as the last
 * update left it: a restore (by `npm run rollback`, by `pgstack snapshot
 * restore`, or one killed after its swap) replaces the database under the
 * stack, and the stack's record of which migrations ran is then wrong for the
 * ones the snapshot does not hold.
 */
export interface DatabaseObservation {
  /** `<system identifier>/<database>/<oid>` of the database now (see identity.ts). */
  identity: string;
  /** Each migration the ledger holds as applied, with when it finished. */
  applied: Map<string, Date>;
  /** When the database was restored from a snapshot, the moment that snapshot was taken. */
  restoredSnapshotTakenAt?: Date;
  /** Id of that snapshot. */
  restoredFrom?: string;
  /** A rollback that passed its point of no return and has not pinned the stack yet (intent.ts), the ledger agreeing. */
  unfinishedRollback?: RollbackIntent;
  /** A rollback's record the ledger contradicts: stale (or forged), to be ignored. */
  staleRollback?: CheckedIntent;
}

export async function observeDatabase(url: string, options: StoreOptions & { connectTimeoutMs?: number } = {}): Promise<DatabaseObservation> {
  const connect = { applicationName: "pgstack observe", connectTimeoutMs: options.connectTimeoutMs ?? 3000 };
  const { id, rows, intent } = await withClient(
    url,
    async (client) => {
      const id = await identityOn(client);
      return { id, rows: await readLedger(client), intent: await checkedRollbackIntentOn(client, id.database) };
    },
    connect,
  );
  const applied = new Map<string, Date>();
  for (const row of rows) {
    if (row.finishedAt !== null && row.rolledBackAt === null) applied.set(row.migrationName, new Date(row.finishedAt));
  }
  const snapshot = await restoredFromSnapshot(url, options).catch(() => undefined);
  return {
    identity: formatIdentity(id.systemIdentifier, id.database, id.databaseOid),
    applied,
    ...(snapshot ? { restoredFrom: snapshot.snapshotId, restoredSnapshotTakenAt: new Date(snapshot.createdAt) } : {}),
    ...(intent && !intent.stale ? { unfinishedRollback: intent.intent } : {}),
    ...(intent?.stale ? { staleRollback: intent } : {}),
  };
}

/**
 * For each migration, the identity of the database it was applied to, or will
 * be: what its command's triggers carry. Pure.
 *
 * The stack recorded one identity (`recorded`, the database it created). While
 * the database is that one, every migration gets it and nothing changes.
 * Once the database was replaced (`live` differs):
 *   - a migration the restored snapshot already held keeps `recorded`: its
 *     command stays as it is, nothing runs;
 *   - a migration the database does not hold gets `live`: its command is
 *     replaced, so the update applies it again (after a new snapshot);
 *   - a migration applied to this database after the restore has `live`
 *     already, so the update after that one changes nothing either.
 * Without an observation (the database is not reachable from where the
 * program runs, e.g. a preview without network access) every migration keeps
 * `recorded`, as before.
 */
export function appliedUnder(names: string[], observation: DatabaseObservation | undefined, recorded: string, live: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    if (!observation || live === undefined || live === recorded) {
      out[name] = recorded;
      continue;
    }
    const finished = observation.applied.get(name);
    const inherited = finished !== undefined && observation.restoredSnapshotTakenAt !== undefined && finished <= observation.restoredSnapshotTakenAt;
    out[name] = inherited ? recorded : live;
  }
  return out;
}

/**
 * What the update says about the chain's migrations the database's ledger
 * lacks once the database is not the one the stack recorded, or nothing. Pure.
 * A restore is named as their cause only while no migration was applied to
 * the restored database since (the first update after it): later, a
 * migration it lacks is new or one an earlier update did not finish (a
 * failed or interrupted step), which is no news. A database replaced
 * otherwise (its identity changed, no restore recorded) is said to be one.
 */
export function missingMigrationsNote(names: string[], observation: DatabaseObservation | undefined, recorded: string, live: string | undefined): string | undefined {
  if (!observation || live === undefined || live === recorded) return undefined;
  const missing = names.filter((n) => !observation.applied.has(n));
  if (missing.length === 0) return undefined;
  const lacks = `its ledger lacks ${missing.join(", ")}: the update applies ${missing.length > 1 ? "them" : "it"} after a snapshot of this database`;
  if (observation.restoredFrom !== undefined) {
    const takenAt = observation.restoredSnapshotTakenAt;
    const appliedSince = takenAt !== undefined && [...observation.applied.values()].some((finished) => finished > takenAt);
    if (appliedSince) return undefined;
    return `the database is a restore of snapshot ${observation.restoredFrom}${takenAt ? ` (taken at ${takenAt.toISOString()})` : ""} and ${lacks}.`;
  }
  return `the database is not the one this stack created (its identity changed, and no pgstack restore made it) and ${lacks}.`;
}

/** The engine-prefixed identity the stack records (`embedded:`, `docker:`, `external:`). Pure. */
export function stackIdentity(engine: string, identity: string): string {
  return `${engine}:${identity}`;
}

/**
 * The identity the pre-update snapshot's triggers carry: `recorded` while no
 * migration is (to be) applied to another database than the recorded one, so
 * nothing changes; otherwise one that changes with the set, so an update that
 * re-applies what a restore removed snapshots the restored database first. Pure.
 */
export function chainIdentity(tokens: Record<string, string>, recorded: string): string {
  const names = Object.keys(tokens).sort();
  if (names.every((n) => tokens[n] === recorded)) return recorded;
  const hash = createHash("sha256");
  for (const n of names) hash.update(`${n}=${tokens[n]}\n`);
  return `${recorded}+${hash.digest("hex").slice(0, 16)}`;
}
