import { readLedger } from "../ledger/ledger";
import { withClient } from "../db/client";
import { isPgstackError, PgstackError } from "../errors";
import type { Settings } from "../settings";
import { discoverMigrations, type Migration } from "./discover";
import { describeMode, executionModeOf, isAtomic, type ExecutionMode } from "./mode";
import { pendingFromApplied } from "./pending";
import { assertNoDrift, selectMigrations } from "./runner";
import { loadSqlParser, splitStatements } from "./sql";
import { computeStatus, type MigrationStatus } from "./status";

export interface PlannedMigration {
  name: string;
  checksum: string;
  /** Retry of a failed attempt rather than a first run. */
  retry: boolean;
  noTransaction: boolean;
  statements: number;
  /** How it would run (see mode.ts); `atomic` is false for the modes that commit statement by statement. */
  mode: ExecutionMode;
  atomic: boolean;
  /** For a partly applied migration: the committed statements the run would skip. */
  resumeAfter?: number;
}

export interface Plan {
  /** What `apply --all` would run, in order. */
  pending: PlannedMigration[];
  /** Why `apply --all` would refuse, one sentence each (drift, syntax). */
  blockers: { code: string; message: string }[];
  status: MigrationStatus[];
  /** What discovery noticed but Prisma accepts (a symlinked folder skipped, an empty file). */
  notes?: string[];
}

/** What `apply --all` would do, read-only: no lock, no ledger created. */
export async function planMigrations(settings: Settings, to?: string): Promise<Plan> {
  const notes: string[] = [];
  const migrations = await discoverMigrations(settings.migrationsDir, (note) => notes.push(note));
  await loadSqlParser();
  const status = await withClient(settings.databaseUrl, async (client, db) => computeStatus(migrations, await readLedger(client, db.schema)));
  return { ...buildPlan(status, migrations, settings.migrationsDir, to), notes };
}

/** Runs `fn`, keeping a PgstackError it throws as a blocker instead. */
function blockerCollector(blockers: Plan["blockers"]): (fn: () => void) => void {
  return (fn) => {
    try {
      fn();
    } catch (err) {
      if (!isPgstackError(err)) throw err;
      blockers.push({ code: err.code, message: err.message });
    }
  };
}

/** Pure part of `planMigrations`, for tests. */
export function buildPlan(
  status: MigrationStatus[],
  migrations: Parameters<typeof selectMigrations>[1],
  dir: string,
  to?: string,
): Plan {
  const blockers: Plan["blockers"] = [];
  const keep = blockerCollector(blockers);
  keep(() => assertNoDrift(status, dir));
  const selected = selectMigrations(status, migrations, { kind: "all", to });
  const pending = selected.map((m) => {
    const own = status.find((s) => s.name === m.name);
    return plannedMigration(m, own?.state === "failed", own?.resume?.steps, keep);
  });
  return { pending, blockers, status };
}

/**
 * A stack's plan from its outputs, with no database connection (CI may not
 * reach prod): what its last successful update applied versus the migrations
 * on disk, up to `last` (the pin, or --to). Pure (the SQL parser loaded).
 */
export function planFromApplied(migrations: Migration[], applied: string[], last: string | undefined): Plan {
  const blockers: Plan["blockers"] = [];
  const keep = blockerCollector(blockers);
  const pending = pendingFromApplied(migrations, applied, last).map((m) => plannedMigration(m, false, undefined, keep));
  const done = new Set(applied);
  const status = migrations.map((m) => ({
    name: m.name,
    checksum: m.checksum,
    state: done.has(m.name) ? ("applied" as const) : ("pending" as const),
    appliedAt: null,
    migration: m,
  }));
  return { pending, blockers, status };
}

/** One pending migration as plan shows it; a syntax error becomes a blocker through `keep`. */
export function plannedMigration(m: Migration, retry: boolean, resumeAfter: number | undefined, keep: (fn: () => void) => void): PlannedMigration {
  let statements: ReturnType<typeof splitStatements> = [];
  keep(() => {
    statements = splitStatements(m.sql, m.name);
  });
  const mode = executionModeOf(m, statements);
  return {
    name: m.name,
    checksum: m.checksum,
    retry,
    noTransaction: m.noTransaction,
    statements: statements.length,
    mode,
    atomic: isAtomic(mode),
    ...(resumeAfter ? { resumeAfter } : {}),
  };
}

/** The MODE cell of plan's table and the PR comment. */
export function modeCell(p: PlannedMigration): string {
  return describeMode(p.mode) + (p.resumeAfter ? `, resumes after statement ${p.resumeAfter}` : "");
}

export function planError(plan: Plan): PgstackError | undefined {
  if (plan.blockers.length === 0) return undefined;
  const first = plan.blockers[0];
  return new PgstackError(first.code as never, first.message);
}

/**
 * Whether `apply --all --to <to>` would run anything, by the same plan
 * `pgstack plan` and the runner use. Drift, syntax and name errors throw
 * (one sentence): an update stops before a snapshot is taken (and the
 * application's sessions ended, and retention run) for migrations that would
 * never be applied.
 */
export async function willApply(settings: Settings, to?: string): Promise<boolean> {
  const plan = await planMigrations(settings, to);
  const refused = planError(plan);
  if (refused) throw refused;
  return plan.pending.length > 0;
}
