import { hasBackfillDirective } from "./backfill";
import type { Migration } from "./discover";
import { loadSqlParser, splitStatements, type Statement } from "./sql";
import type { MigrationStatus } from "./status";

/**
 * How a migration runs, chosen from the file itself so that no file Prisma
 * applies needs an edit:
 * - `transaction`: the whole file and its ledger row in one transaction (atomic);
 * - `statements`: the file holds a statement PostgreSQL refuses inside a
 *   transaction block (or opts out with `-- pgstack:no-transaction`): statement
 *   by statement, each committed on its own, as Prisma's single-statement
 *   script runs;
 * - `as-written`: the file has its own BEGIN/COMMIT/ROLLBACK: statement by
 *   statement with nothing wrapped around it, the file's own transactions
 *   deciding what commits.
 * The last two are not atomic: progress is recorded in applied_steps_count and
 * a failed run resumes at the failed statement.
 */
export type ExecutionMode = "transaction" | "statements" | "as-written" | "batches";
export const EXECUTION_MODES: readonly ExecutionMode[] = ["transaction", "statements", "as-written", "batches"];

/**
 * `batches`: a backfill migration (`-- pgstack:backfill`, see backfill.ts):
 * its one UPDATE runs in batches by key range, each its own transaction,
 * recorded applied after the last; a killed run continues where it stopped.
 */
export function executionModeOf(migration: Pick<Migration, "noTransaction"> & { sql?: string }, statements: Statement[]): ExecutionMode {
  if (migration.sql !== undefined && hasBackfillDirective(migration.sql)) return "batches";
  if (statements.some((s) => s.kind === "transaction-control")) return "as-written";
  if (migration.noTransaction || statements.some((s) => s.kind === "no-transaction-block")) return "statements";
  return "transaction";
}

export function isAtomic(mode: ExecutionMode): boolean {
  return mode === "transaction";
}

/** How plan, status and the PR comment name a mode. */
export function describeMode(mode: ExecutionMode): string {
  switch (mode) {
    case "transaction":
      return "transaction (atomic)";
    case "statements":
      return "statement by statement (NOT atomic)";
    case "as-written":
      return "as written, own BEGIN/COMMIT (NOT atomic)";
    case "batches":
      return "backfill in batches, one transaction each (NOT atomic, resumable)";
  }
}

/**
 * The mode of every migration still to run (pending or failed); one whose SQL
 * does not parse has none (apply and plan report the syntax error).
 */
export async function pendingModes(status: MigrationStatus[]): Promise<Map<string, ExecutionMode>> {
  const modes = new Map<string, ExecutionMode>();
  const toRun = status.filter((s) => s.migration && (s.state === "pending" || s.state === "failed"));
  if (toRun.length === 0) return modes;
  await loadSqlParser();
  for (const s of toRun) {
    try {
      modes.set(s.name, executionModeOf(s.migration!, splitStatements(s.migration!.sql, s.name)));
    } catch {
      // A syntax error: no mode to show.
    }
  }
  return modes;
}

/**
 * The mode of each migration whose SQL parses (one that does not has none: apply
 * reports its syntax error). What the Pulumi program shows reviewers per step.
 */
export async function modesOf(migrations: Pick<Migration, "name" | "sql" | "noTransaction">[]): Promise<Map<string, ExecutionMode>> {
  const modes = new Map<string, ExecutionMode>();
  if (migrations.length === 0) return modes;
  await loadSqlParser();
  for (const m of migrations) {
    try {
      modes.set(m.name, executionModeOf(m, splitStatements(m.sql, m.name)));
    } catch {
      // A syntax error: no mode to show.
    }
  }
  return modes;
}
