import type { Migration } from "../../infra/core/migrations/discover";
import { checksumOf } from "../../infra/core/migrations/checksum";
import { computeStatus } from "../../infra/core/migrations/status";
import { buildPlan, planFromApplied } from "../../infra/core/migrations/plan";
import { pendingFromApplied, pendingFromLedger, upToPin } from "../../infra/core/migrations/pending";
import { migrationsToGate } from "../../infra/guards/lint";
import { planChain } from "../../infra/components/migrations/chain";
import { loadSqlParser } from "../../infra/core/migrations/sql";

beforeAll(() => loadSqlParser());

function migration(name: string, sql = `CREATE TABLE "${name}" ();`): Migration {
  const bytes = Buffer.from(sql);
  return { name, slug: name.slice(15), dir: `/m/${name}`, sqlPath: `/m/${name}/migration.sql`, bytes, sql, checksum: checksumOf(bytes), noTransaction: false };
}

const a = migration("20250101000000_a");
const b = migration("20250102000000_b", "CREATE INDEX CONCURRENTLY i ON t (x);\n");
const c = migration("20250103000000_c", "CREATE TABLE c (id int);\nCREATE TABLE d (id int);\n");
const ledgerRow = (m: Migration) => ({ id: m.name, checksum: m.checksum, migrationName: m.name, startedAt: new Date(0), finishedAt: new Date(1), rolledBackAt: null, logs: null, appliedStepsCount: 1 });

/** One definition of "what this update would apply", whichever source says what ran. */
describe("the pending set", () => {
  it("has one pin filter, in Prisma's order (upToPin), that every reader uses", () => {
    expect(upToPin([a, b, c], undefined)).toEqual([a, b, c]);
    expect(upToPin([a, b, c], b.name)).toEqual([a, b]);
    // The lint gate and plan --stack agree with the ledger's view for the same history and pin.
    const status = computeStatus([a, b, c], [ledgerRow(a)]);
    for (const pin of [undefined, b.name, a.name]) {
      const fromLedger = pendingFromLedger(status, pin).map((m) => m.name);
      expect(pendingFromApplied([a, b, c], [a.name], pin).map((m) => m.name)).toEqual(fromLedger);
      expect(migrationsToGate([a, b, c], [a.name], pin).map((m) => m.name)).toEqual(fromLedger);
      expect(buildPlan(status, [a, b, c], "/m", pin).pending.map((p) => p.name)).toEqual(fromLedger);
      expect(planFromApplied([a, b, c], [a.name], pin).pending.map((p) => p.name)).toEqual(fromLedger);
    }
  });

  it("from the stack's outputs: each pending migration with its mode and statement count, like the ledger's plan", () => {
    const fromOutputs = planFromApplied([a, b, c], [a.name], undefined);
    const fromLedger = buildPlan(computeStatus([a, b, c], [ledgerRow(a)]), [a, b, c], "/m");
    expect(fromOutputs.pending).toEqual(fromLedger.pending);
    expect(fromOutputs.pending.map((p) => [p.name, p.mode, p.statements])).toEqual([
      [b.name, "statements", 1],
      [c.name, "transaction", 2],
    ]);
    expect(fromOutputs.status.map((s) => s.state)).toEqual(["applied", "pending", "pending"]);
  });
});

describe("the migration chain agrees with the runner", () => {
  it("orders its steps and cuts at the pin in Prisma's order, not byte order", () => {
    const names = ["Zeta_last", "add_users", "Init"];
    const migrations = names.map((name) => ({ name, checksum: "x" }));
    // Byte order would put Init and Zeta_last before add_users; Prisma (localeCompare) does not.
    expect(planChain("migrations", migrations).map((l) => l.migration.name)).toEqual(["add_users", "Init", "Zeta_last"]);
    expect(planChain("migrations", migrations, "Init").map((l) => l.migration.name)).toEqual(upToPin(["add_users", "Init", "Zeta_last"].map((name) => ({ name })), "Init").map((m) => m.name));
    expect(planChain("migrations", migrations).map((l) => l.after)).toEqual([undefined, "migrations-add_users", "migrations-Init"]);
  });
});
