import { withClient } from "../db/client";
import { readLedger, type LedgerRow } from "../ledger/ledger";
import { listAllSnapshots, type StoreOptions } from "./store";
import type { SnapshotInfo } from "./template";

/**
 * The snapshot a rollback restores by default: the one taken before the last
 * update that applied anything, whether that update succeeded or not. Read
 * from the snapshots themselves (each records its stack, that it was taken
 * before an update, and the last migration it holds) and the database's
 * ledger, never from the stack's outputs: Pulumi writes those only when an
 * update succeeds, so after a failed update they still name the snapshot of
 * the update before, and restoring it would throw away that earlier deploy.
 */
export interface RollbackTarget {
  snapshot: SnapshotInfo;
  /** Migrations the database has (wholly or partly) that the snapshot does not: what the rollback undoes. */
  undoes: { name: string; finished: boolean }[];
}

/** Ledger rows that changed the database: finished, or partly applied (statements mode). */
function effective(rows: LedgerRow[]): LedgerRow[] {
  return rows.filter((r) => r.rolledBackAt === null && (r.finishedAt !== null || r.appliedStepsCount > 0));
}

/** Pure: the target among `snapshots` (any order) given the database's ledger. */
export function chooseRollbackTarget(snapshots: SnapshotInfo[], ledger: LedgerRow[]): RollbackTarget | undefined {
  const preUpdate = snapshots
    .filter((s) => s.key !== null)
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.snapshotId.localeCompare(a.snapshotId));
  const changes = effective(ledger);
  for (const snapshot of preUpdate) {
    const since = changes.filter((r) => snapshot.lastMigration === null || r.migrationName > snapshot.lastMigration);
    if (since.length > 0) {
      const names = [...new Set(since.map((r) => r.migrationName))].sort();
      return { snapshot, undoes: names.map((name) => ({ name, finished: since.some((r) => r.migrationName === name && r.finishedAt !== null) })) };
    }
  }
  // No update applied anything since any snapshot: the newest one undoes nothing but is still the state before the last update.
  return preUpdate[0] ? { snapshot: preUpdate[0], undoes: [] } : undefined;
}

export async function rollbackTarget(url: string, stack: string, options: StoreOptions = {}): Promise<RollbackTarget | undefined> {
  const snapshots = await listAllSnapshots(url, { stack }, options);
  const ledger = await withClient(url, (c) => readLedger(c).catch(() => [] as LedgerRow[]), { applicationName: "pgstack snapshot" });
  return chooseRollbackTarget(snapshots, ledger);
}

/** "the update of <time> (snapshot <id>), which applied a, b (c partly)", for people. */
export function describeTarget(target: RollbackTarget): string {
  const s = target.snapshot;
  const what =
    target.undoes.length === 0
      ? "which applied nothing"
      : `which applied ${target.undoes.map((m) => (m.finished ? m.name : `${m.name} (partly, failed)`)).join(", ")}`;
  return `the update that started at ${s.createdAt} (snapshot ${s.snapshotId}), ${what}`;
}
