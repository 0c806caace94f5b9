import { pgstack } from "../support/cli";
import { createTestDatabase, withDb } from "../support/cluster";
import { migrationsDir } from "../support/fixtures";

/** A chain step carries the mode the preview showed; the file must still run that way. */
describe("pgstack apply <name> --mode", () => {
  test("runs a migration in the mode it was planned in, and refuses another with nothing applied", async () => {
    const url = await createTestDatabase("apply_mode");
    const dir = await migrationsDir({
      "20250101000000_init": 'CREATE TABLE "t" (id int PRIMARY KEY, v int);\n',
      "20250102000000_idx": 'CREATE INDEX CONCURRENTLY "t_v_idx" ON "t"("v");\n',
    });
    expect((await pgstack(["apply", "20250101000000_init", "--dir", dir, "--mode", "transaction"], { DATABASE_URL: url })).code).toBe(0);

    const refused = await pgstack(["apply", "20250102000000_idx", "--dir", dir, "--mode", "transaction"], { DATABASE_URL: url });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(
      "pgstack: Migration 20250102000000_idx runs statement by statement (NOT atomic), not transaction (atomic) as the update was planned: run `pulumi preview` again and review the new plan.\n",
    );
    const state = async () =>
      withDb(url, async (c) => ({
        index: (await c.query("SELECT 1 FROM pg_indexes WHERE indexname = 't_v_idx'")).rowCount,
        ledger: (await c.query("SELECT 1 FROM _prisma_migrations WHERE migration_name = '20250102000000_idx'")).rowCount,
      }));
    expect(await state()).toEqual({ index: 0, ledger: 0 });

    expect((await pgstack(["apply", "20250102000000_idx", "--dir", dir, "--mode", "bogus"], { DATABASE_URL: url })).stderr).toBe(
      "pgstack: --mode must be one of transaction, statements, as-written, batches (got 'bogus').\n",
    );
    expect((await pgstack(["apply", "20250102000000_idx", "--dir", dir, "--mode", "statements"], { DATABASE_URL: url })).code).toBe(0);
    expect(await state()).toEqual({ index: 1, ledger: 1 });
  });
});
