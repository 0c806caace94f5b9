import { withClient } from "../db/client";
import { readLedgerIfExists, type LedgerRow } from "../ledger/ledger";
import { discoverMigrations, type Migration } from "../migrations/discover";
import { computeStatus, type MigrationStatus } from "../migrations/status";
import type { CheckResult } from "./check";

export interface LedgerFacts {
  migrations: Migration[];
  ledger: LedgerRow[];
  status: MigrationStatus[];
}

/** The folder, the ledger and their join (core/migrations/status.ts), read once for every check. */
export async function readLedgerFacts(url: string, migrationsDir: string, onNote?: (note: string) => void): Promise<LedgerFacts> {
  const migrations = await discoverMigrations(migrationsDir, onNote);
  const ledger = (await withClient(url, (c) => readLedgerIfExists(c), { applicationName: "pgstack verify" })) ?? [];
  return { migrations, ledger, status: computeStatus(migrations, ledger) };
}

/**
 * Ledger health: no failed or unfinished attempt left unresolved, every
 * applied migration's checksum equal to its file's, no ledger row whose
 * folder is gone. Pending migrations are a warning (not applied yet). Pure.
 */
export function checkLedger(facts: LedgerFacts): CheckResult {
  const by = (state: MigrationStatus["state"]) => facts.status.filter((s) => s.state === state).map((s) => s.name);
  const failed = by("failed");
  const drifted = by("drifted");
  const missing = by("missing-from-disk");
  const pending = by("pending");
  const applied = by("applied");
  // A migration applied after a failed attempt keeps that attempt's row: only the latest attempt counts (as in status).
  const details = { applied: applied.length, failed, checksumMismatch: drifted, missingFromFolder: missing, pending };
  const problems: string[] = [];
  if (failed.length > 0) problems.push(`${failed.join(", ")} failed and ${failed.length === 1 ? "is" : "are"} not resolved (fix the file and apply again, or \`pgstack resolve\`)`);
  if (drifted.length > 0) problems.push(`${drifted.join(", ")} changed after ${drifted.length === 1 ? "it was" : "they were"} applied (its checksum differs from the ledger's: restore the file from version control)`);
  if (missing.length > 0) problems.push(`${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} in the ledger but missing from the migrations folder (restore the folder)`);
  if (problems.length > 0) return { name: "ledger", status: "fail", sentence: `The ledger is not healthy: ${problems.join("; ")}.`, details };
  if (pending.length > 0) {
    return { name: "ledger", status: "warn", sentence: `${applied.length} migrations applied as their files say; ${pending.length} pending (${pending.join(", ")}).`, details };
  }
  return { name: "ledger", status: "pass", sentence: `${applied.length} migrations applied, each as its file says; none failed, none missing from the folder.`, details };
}
