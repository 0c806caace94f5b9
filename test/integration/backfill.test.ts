/**
 * The backfill a split writes, as `pgstack apply` runs it: batches by key
 * range, each its own transaction, the ledger row only after the last one.
 * Killed between two batches (fail-point, SIGKILL) while an application keeps
 * writing through the old column, the next apply continues from the first row
 * still to copy; afterwards every row has new == old (content digests), the
 * application's acknowledged writes included. A batch that meets the
 * application's row lock backs off under lock_timeout and retries.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { pgstack } from "../support/cli";
import { createTestDatabase, withDb } from "../support/cluster";
import { eventually } from "../support/data";
import { migrationsDir } from "../support/fixtures";

jest.setTimeout(180_000);

const INIT = "20250101000000_init";
const BACKFILL = "20250102000000_rename_2_backfill";
const ROWS = 40_000;

async function setUp(prefix: string): Promise<{ url: string; dir: string }> {
  const url = await createTestDatabase(prefix);
  const dir = await migrationsDir({
    [INIT]: `CREATE TABLE "t" ("id" BIGSERIAL PRIMARY KEY, "a" INTEGER NOT NULL);\n`,
    "20250102000000_rename": `ALTER TABLE "t" RENAME COLUMN "a" TO "b";\n`,
  });
  const run = async (args: string[]) => {
    const r = await pgstack(args, { DATABASE_URL: url });
    if (r.code !== 0) throw new Error(r.stderr);
  };
  await run(["apply", INIT, "--dir", dir]);
  await withDb(url, (c) => c.query(`INSERT INTO t (a) SELECT g FROM generate_series(1, ${ROWS}) g`));
  await run(["split", "rename", "--dir", dir, "--batch", "2000"]);
  await run(["apply", "--all", "--to", "20250102000000_rename_1_expand", "--dir", dir]);
  return { url, dir };
}

/** The old version of the application: inserts and updates through "a" only, every few ms; records what was acknowledged. */
function startOldVersion(url: string) {
  const inserted: number[] = [];
  const updated = new Map<number, number>();
  let stop = false;
  let errors = 0;
  const done = (async () => {
    const c = new Client({ connectionString: url });
    await c.connect();
    for (let n = 1; !stop; n++) {
      try {
        await c.query(`INSERT INTO t (a) VALUES ($1)`, [-n]);
        inserted.push(-n);
        const id = 1 + ((n * 7919) % ROWS);
        await c.query(`UPDATE t SET a = $2 WHERE id = $1`, [id, 1_000_000 + n]);
        updated.set(id, 1_000_000 + n);
      } catch {
        errors++;
      }
      await new Promise((r) => setTimeout(r, 3));
    }
    await c.end();
  })();
  return {
    async stop() {
      stop = true;
      await done;
      return { inserted, updated, errors };
    },
  };
}

const digest = (values: unknown[]) => createHash("sha256").update(values.map(String).join(",")).digest("hex");

describe("a split's backfill under pgstack apply", () => {
  test("killed between two batches while the old version writes, the next apply continues from the first row still to copy; every row ends with new == old", async () => {
    const { url, dir } = await setUp("backfill_kill");
    const app = startOldVersion(url);
    await new Promise((r) => setTimeout(r, 300));

    const killed = await pgstack(["apply", "--all", "--dir", dir, "--to", BACKFILL], { DATABASE_URL: url, PGSTACK_FAILPOINT: "backfill-batch-5" });
    expect(killed.signal).toBe("SIGKILL");
    const midway = await withDb(url, async (c) => ({
      ledger: (await c.query(`SELECT migration_name FROM _prisma_migrations WHERE migration_name = $1`, [BACKFILL])).rowCount,
      copied: (await c.query(`SELECT count(*)::int AS n FROM t WHERE id <= 10000 AND b IS NOT NULL`)).rows[0].n,
      left: (await c.query(`SELECT min(id)::int AS first, count(*)::int AS n FROM t WHERE b IS DISTINCT FROM a`)).rows[0],
    }));
    // Five batches of 2000 committed (ids 1..10000), nothing recorded, the rest still to copy.
    expect(midway.ledger).toBe(0);
    expect(midway.copied).toBe(10_000);
    expect(midway.left.first).toBeGreaterThan(10_000);
    expect(midway.left.n).toBeGreaterThan(20_000);

    await new Promise((r) => setTimeout(r, 300));
    const resumed = await pgstack(["apply", "--all", "--dir", dir, "--to", BACKFILL], { DATABASE_URL: url });
    expect(resumed.code).toBe(0);
    const first = Number(/the first at id = (\d+)/.exec(resumed.stderr)?.[1]);
    expect(first).toBeGreaterThan(10_000);
    expect(resumed.stderr).toMatch(/copied \(100%/);
    const written = await app.stop();
    expect(written.errors).toBe(0);
    expect(written.inserted.length).toBeGreaterThan(20);

    await withDb(url, async (c) => {
      const rows = (await c.query<{ id: string; a: number; b: number }>(`SELECT id, a, b FROM t ORDER BY id`)).rows;
      expect(digest(rows.map((r) => r.b))).toBe(digest(rows.map((r) => r.a)));
      // Every acknowledged write of the old version is there, in both columns.
      const byA = new Map(rows.map((r) => [r.a, r]));
      for (const v of written.inserted) expect(byA.get(v)?.b).toBe(v);
      for (const [id, v] of written.updated) expect(rows[id - 1]).toEqual({ id: String(id), a: v, b: v });
      const ledger = (await c.query(`SELECT checksum, finished_at IS NOT NULL AS finished, applied_steps_count FROM _prisma_migrations WHERE migration_name = $1`, [BACKFILL])).rows;
      const bytes = await fs.readFile(path.join(dir, BACKFILL, "migration.sql"));
      expect(ledger).toEqual([{ checksum: createHash("sha256").update(bytes).digest("hex"), finished: true, applied_steps_count: 1 }]);
    });
  });

  test("a batch that meets the application's row lock backs off under lock_timeout, retries, and completes", async () => {
    const { url, dir } = await setUp("backfill_lock");
    // status (and plan, and the preview's --mode) say how it runs: not atomic.
    const status = JSON.parse((await pgstack(["status", "--json", "--dir", dir], { DATABASE_URL: url })).stdout);
    expect(status.migrations.find((m: { name: string }) => m.name === BACKFILL)).toMatchObject({ state: "pending", mode: "batches", atomic: false });
    const holder = new Client({ connectionString: url });
    await holder.connect();
    await holder.query("BEGIN");
    await holder.query(`UPDATE t SET a = a WHERE id = 1500`);
    const running = pgstack(["apply", "--all", "--dir", dir, "--to", BACKFILL, "--lock-timeout", "200", "--retry-delay", "300", "--retries", "5"], { DATABASE_URL: url });
    // Held until the backfill has waited on it and timed out at least once.
    const waited = await eventually(async () => {
      // Another session: pg_stat_activity stays as first read for the rest of a transaction.
      const { rows } = await withDb(url, (c) => c.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgstack' AND wait_event_type = 'Lock'`));
      return rows.length > 0;
    }, 30_000, 10);
    expect(waited).toBe(true);
    await new Promise((r) => setTimeout(r, 800));
    await holder.query("COMMIT");
    await holder.end();
    const r = await running;
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/batch 1 \(id from 1\): canceling statement due to lock timeout; retry 1 of 5 in 300 ms/);
    const left = await withDb(url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM t WHERE b IS DISTINCT FROM a`)).rows[0].n);
    expect(left).toBe(0);
  });

  test("a row the conversion refuses stops it with one sentence and no ledger success; fixed, the next apply completes and closes the failed attempt", async () => {
    const url = await createTestDatabase("backfill_fail");
    const dir = await migrationsDir({
      [INIT]: `CREATE TABLE "t" ("id" BIGSERIAL PRIMARY KEY, "c" TEXT);\n`,
      "20250102000000_retype": `ALTER TABLE "t" ALTER COLUMN "c" TYPE INTEGER USING "c"::integer;\n`,
    });
    const run = (args: string[]) => pgstack([...args, "--dir", dir], { DATABASE_URL: url });
    expect((await run(["apply", INIT])).code).toBe(0);
    await withDb(url, (c) => c.query(`INSERT INTO t (c) SELECT CASE WHEN g = 2500 THEN 'x' ELSE g::text END FROM generate_series(1, 3000) g`));
    expect((await run(["split", "retype", "--batch", "1000"])).code).toBe(0);
    expect((await run(["apply", "--all", "--to", "20250102000000_retype_1_expand"])).code).toBe(0);

    const failed = await run(["apply", "--all", "--to", "20250102000000_retype_2_backfill"]);
    expect(failed.code).toBe(1);
    expect(failed.stderr.trim().split("\n").pop()).toBe(
      `pgstack: Migration 20250102000000_retype_2_backfill failed in its backfill of "t" at the row id = 2500: invalid input syntax for type integer: "x" (SQLSTATE 22P02); no row was copied and it is not recorded as applied: change that row (through the old column: the trigger copies it) or the conversion, then run again.`,
    );
    const state = async () =>
      withDb(url, async (c) => ({
        copied: (await c.query(`SELECT count(*)::int AS n FROM t WHERE c_pgstack_new IS NOT NULL`)).rows[0].n,
        ledger: (await c.query(`SELECT finished_at IS NOT NULL AS finished, rolled_back_at IS NOT NULL AS rolled_back FROM _prisma_migrations WHERE migration_name = '20250102000000_retype_2_backfill' ORDER BY started_at`)).rows,
      }));
    expect(await state()).toEqual({ copied: 0, ledger: [{ finished: false, rolled_back: false }] });

    // The application fixes the row through the old column (the trigger converts it), and the backfill completes.
    await withDb(url, (c) => c.query(`UPDATE t SET c = '2500' WHERE id = 2500`));
    expect((await run(["apply", "--all", "--to", "20250102000000_retype_2_backfill"])).code).toBe(0);
    expect(await state()).toEqual({ copied: 3000, ledger: [{ finished: false, rolled_back: true }, { finished: true, rolled_back: false }] });
    expect((await run(["apply", "--all"])).code).toBe(0);
    const values = await withDb(url, async (c) => (await c.query(`SELECT c FROM t ORDER BY id`)).rows.map((r) => r.c));
    expect(values).toEqual(Array.from({ length: 3000 }, (_, i) => i + 1));
  });
});
