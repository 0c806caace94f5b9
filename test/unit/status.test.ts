import type { Migration } from "../../infra/core/migrations/discover";
import { checksumOf } from "../../infra/core/migrations/checksum";
import { computeStatus } from "../../infra/core/migrations/status";
import { buildPlan } from "../../infra/core/migrations/plan";
import { selectMigrations } from "../../infra/core/migrations/runner";
import type { LedgerRow } from "../../infra/core/ledger/ledger";
import { loadSqlParser } from "../../infra/core/migrations/sql";

beforeAll(() => loadSqlParser());

function migration(name: string, sql = `CREATE TABLE "${name}" ();`): Migration {
  const bytes = Buffer.from(sql);
  return { name, slug: name.slice(15), dir: `/m/${name}`, sqlPath: `/m/${name}/migration.sql`, bytes, sql, checksum: checksumOf(bytes), noTransaction: false };
}

let clock = 0;
function row(m: { name: string; checksum: string }, patch: Partial<LedgerRow> = {}): LedgerRow {
  clock += 1000;
  return {
    id: `id-${clock}`,
    checksum: m.checksum,
    migrationName: m.name,
    startedAt: new Date(clock),
    finishedAt: new Date(clock + 10),
    rolledBackAt: null,
    logs: null,
    appliedStepsCount: 1,
    ...patch,
  };
}

const a = migration("20250101000000_a");
const b = migration("20250102000000_b");
const c = migration("20250103000000_c");

describe("computeStatus", () => {
  it("marks finished attempts applied and the rest pending", () => {
    const status = computeStatus([a, b], [row(a)]);
    expect(status.map((s) => [s.name, s.state])).toEqual([
      [a.name, "applied"],
      [b.name, "pending"],
    ]);
    expect(status[0].appliedAt).toEqual(new Date(clock + 10));
  });

  it("marks an applied migration whose file changed as drifted", () => {
    const edited = migration(a.name, `CREATE TABLE "other" ();`);
    expect(computeStatus([edited], [row(a)])[0].state).toBe("drifted");
  });

  it("lists an applied migration that vanished from disk as missing-from-disk, in name order", () => {
    const status = computeStatus([a, c], [row(a), row(b)]);
    expect(status.map((s) => [s.name, s.state])).toEqual([
      [a.name, "applied"],
      [b.name, "missing-from-disk"],
      [c.name, "pending"],
    ]);
    expect(status[1].checksum).toBe(b.checksum);
  });

  it("ignores rolled-back attempts of a migration no longer on disk", () => {
    const status = computeStatus([a], [row(a), row(b, { finishedAt: null, rolledBackAt: new Date() })]);
    expect(status.map((s) => s.state)).toEqual(["applied"]);
  });

  it("marks a migration with only failed attempts failed, keeping the last error", () => {
    const status = computeStatus([a], [row(a, { finishedAt: null, rolledBackAt: new Date(), logs: "first" }), row(a, { finishedAt: null, rolledBackAt: new Date(), logs: "second" })]);
    expect(status[0]).toMatchObject({ state: "failed", lastError: "second", partiallyApplied: false });
  });

  it("flags a failed no-transaction attempt that applied some statements", () => {
    const status = computeStatus([a], [row(a, { finishedAt: null, rolledBackAt: null, appliedStepsCount: 2 })]);
    expect(status[0]).toMatchObject({ state: "failed", partiallyApplied: true });
  });

  it("counts a migration that was applied and then reverted (finished, rolled back) as pending", () => {
    const status = computeStatus([a], [row(a, { rolledBackAt: new Date() })]);
    expect(status[0].state).toBe("pending");
  });

  it("counts a migration applied after an earlier failed attempt as applied", () => {
    const status = computeStatus([a], [row(a, { finishedAt: null, rolledBackAt: new Date() }), row(a)]);
    expect(status[0].state).toBe("applied");
  });
});

describe("selectMigrations and buildPlan", () => {
  it("selects failed and pending migrations in order, stopping at --to", () => {
    const status = computeStatus([a, b, c], [row(a, { finishedAt: null, rolledBackAt: new Date() })]);
    expect(selectMigrations(status, [a, b, c], { kind: "all" }).map((m) => m.name)).toEqual([a.name, b.name, c.name]);
    expect(selectMigrations(status, [a, b, c], { kind: "all", to: "b" }).map((m) => m.name)).toEqual([a.name, b.name]);
  });

  it("applies an older pending migration that arrived after newer ones (a merged branch), as Prisma does", () => {
    const status = computeStatus([a, b, c], [row(a), row(c)]);
    expect(selectMigrations(status, [a, b, c], { kind: "all" }).map((m) => m.name)).toEqual([b.name]);
  });

  it("refuses a single migration while an earlier one is not applied", () => {
    const status = computeStatus([a, b], []);
    expect(() => selectMigrations(status, [a, b], { kind: "one", name: b.name })).toThrow(
      /cannot run before 20250101000000_a.*pgstack apply --all --to 20250102000000_b/,
    );
  });

  it("selects nothing for a single migration already applied", () => {
    const status = computeStatus([a, b], [row(a)]);
    expect(selectMigrations(status, [a, b], { kind: "one", name: a.name })).toEqual([]);
  });

  it("reports drift as a blocker instead of planning past it", () => {
    const edited = migration(a.name, "SELECT 2;");
    const plan = buildPlan(computeStatus([edited, b], [row(a)]), [edited, b], "/m");
    expect(plan.blockers.map((x) => x.code)).toEqual(["E_DRIFT"]);
    expect(plan.pending.map((p) => p.name)).toEqual([b.name]);
  });
});
