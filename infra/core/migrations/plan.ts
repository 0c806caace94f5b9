import { readLedger } from "../ledger/ledger";
import { withClient } from "../db/client";
import { isPgstackError, PgstackError } from "../errors";
import type { Settings } from "../settings";
import { discoverMigrations } from "./discover";
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
}

export interface Plan {
  /** What `apply --all` would run, in order. */
  pending: PlannedMigration[];
  /** Why `apply --all` would refuse, one sentence each (drift, syntax). */
  blockers: { code: string; message: string }[];
  status: MigrationStatus[];
}

/** What `apply --all` would do, read-only: no lock, no ledger created. */
export async function planMigrations(settings: Settings, to?: string): Promise<Plan> {
  const migrations = await discoverMigrations(settings.migrationsDir);
  await loadSqlParser();
  const status = await withClient(settings.databaseUrl, async (client) => computeStatus(migrations, await readLedger(client)));
  return buildPlan(status, migrations, settings.migrationsDir, to);
}

/** Pure part of `planMigrations`, for tests. */
export function buildPlan(
  status: MigrationStatus[],
  migrations: Parameters<typeof selectMigrations>[1],
  dir: string,
  to?: string,
): Plan {
  const blockers: Plan["blockers"] = [];
  const keep = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      if (!isPgstackError(err)) throw err;
      blockers.push({ code: err.code, message: err.message });
    }
  };
  keep(() => assertNoDrift(status, dir));
  const selected = selectMigrations(status, migrations, { kind: "all", to });
  const pending: PlannedMigration[] = [];
  for (const m of selected) {
    let statements = 0;
    keep(() => {
      statements = splitStatements(m.sql, m.name).length;
    });
    pending.push({
      name: m.name,
      checksum: m.checksum,
      retry: status.find((s) => s.name === m.name)?.state === "failed",
      noTransaction: m.noTransaction,
      statements,
    });
  }
  return { pending, blockers, status };
}

export function planError(plan: Plan): PgstackError | undefined {
  if (plan.blockers.length === 0) return undefined;
  const first = plan.blockers[0];
  return new PgstackError(first.code as never, first.message);
}
