import type { LedgerRow } from "../ledger/ledger";
import { checksumMatches } from "./checksum";
import { compareMigrationNames, type Migration } from "./discover";

export type MigrationState = "applied" | "pending" | "failed" | "drifted" | "missing-from-disk";

export interface MigrationStatus {
  name: string;
  /** The file's checksum; for a migration missing from disk, the recorded one. */
  checksum: string;
  state: MigrationState;
  appliedAt: Date | null;
  /** The file, when it is on disk. */
  migration?: Migration;
  /** Error text of the latest failed attempt. */
  lastError?: string;
  /** True when a failed attempt left part of a non-atomic migration committed. */
  partiallyApplied?: boolean;
  /**
   * Where the next run picks up a partially applied migration: the attempt's
   * ledger row and how many statements of it are committed. `sameFile` is
   * false when migration.sql changed since, so the count no longer says which
   * statements ran.
   */
  resume?: { ledgerId: string; steps: number; sameFile: boolean };
}

/**
 * Joins the files with the ledger. Pure, so every rule here is unit-tested
 * without a database. A migration is applied when some attempt finished and
 * was not rolled back; drifted when that attempt's checksum does not match the
 * file (under Prisma's line-ending rules); failed when attempts exist but none
 * finished; pending again when its last attempt finished and was then rolled
 * back (a revert: `pgstack revert` marks it so).
 */
export function computeStatus(migrations: Migration[], ledger: LedgerRow[]): MigrationStatus[] {
  const attempts = new Map<string, LedgerRow[]>();
  for (const row of ledger) {
    const list = attempts.get(row.migrationName) ?? [];
    list.push(row);
    attempts.set(row.migrationName, list);
  }
  const result: MigrationStatus[] = [];
  for (const migration of migrations) {
    const rows = attempts.get(migration.name) ?? [];
    const applied = lastApplied(rows);
    if (applied) {
      result.push({
        name: migration.name,
        checksum: migration.checksum,
        // The file's own checksum first: hashing its line-ending variants is for the rare mismatch.
        state: applied.checksum === migration.checksum || checksumMatches(applied.checksum, migration.bytes) ? "applied" : "drifted",
        appliedAt: applied.finishedAt,
        migration,
      });
    } else if (rows.length > 0 && !(rows[rows.length - 1].finishedAt !== null && rows[rows.length - 1].rolledBackAt !== null)) {
      const last = rows[rows.length - 1];
      // An unfinished attempt nobody rolled back: a non-atomic run stopped (failed or killed) with
      // applied_steps_count statements committed, where the next run of that file picks up.
      const open = last.rolledBackAt === null && last.finishedAt === null;
      const partiallyApplied = open && last.appliedStepsCount > 0;
      result.push({
        name: migration.name,
        checksum: migration.checksum,
        state: "failed",
        appliedAt: null,
        migration,
        lastError: last.logs ?? undefined,
        partiallyApplied,
        ...(open
          ? { resume: { ledgerId: last.id, steps: last.appliedStepsCount, sameFile: checksumMatches(last.checksum, migration.bytes) } }
          : {}),
      });
    } else {
      result.push({ name: migration.name, checksum: migration.checksum, state: "pending", appliedAt: null, migration });
    }
  }
  const onDisk = new Set(migrations.map((m) => m.name));
  for (const [name, rows] of attempts) {
    if (onDisk.has(name)) continue;
    const applied = lastApplied(rows);
    if (applied) {
      result.push({ name, checksum: applied.checksum, state: "missing-from-disk", appliedAt: applied.finishedAt });
    }
  }
  return result.sort((a, b) => compareMigrationNames(a.name, b.name));
}

function lastApplied(rows: LedgerRow[]): LedgerRow | undefined {
  const done = rows.filter((r) => r.finishedAt !== null && r.rolledBackAt === null);
  return done[done.length - 1];
}
