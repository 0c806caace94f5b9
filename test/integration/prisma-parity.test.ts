/**
 * Issue 10: a history `prisma migrate deploy` applies, pgstack applies unedited,
 * to the same schema. Each case compares pgstack with applying the same files
 * the way Prisma does (test/support/prisma-way.ts): `pg_dump -s` identical and
 * every migration finished in the ledger.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { deployerSession } from "../../infra/core/db/deployers";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings, type Settings } from "../../infra/core/settings";
import { memoryLogger } from "../../infra/core/logger";
import { pgstack } from "../support/cli";
import { createTestDatabase, withDb } from "../support/cluster";
import { migrationsDir, REPO_ROOT } from "../support/fixtures";
import { applyThePrismaWay, schemaDump } from "../support/prisma-way";
import { expectFailure } from "../support/sentence";

const CORPUS = path.join(REPO_ROOT, "test", "fixtures", "prisma-patterns", "history");

function settings(url: string, dir: string, extra: Partial<Settings> = {}): Settings {
  return { ...resolveSettings({ url, dir }), retryDelayMs: 20, ...extra };
}

async function copyOfCorpus(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-corpus-"));
  await fs.cp(CORPUS, dir, { recursive: true });
  return dir;
}

async function finishedLedger(url: string): Promise<{ migration_name: string; checksum: string }[]> {
  const { rows } = await withDb(url, (c) =>
    c.query(`SELECT migration_name, checksum FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY started_at, id`),
  );
  return rows;
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("the pattern corpus, pgstack versus the Prisma way", () => {
  let dir: string;
  let prismaUrl: string;
  let prismaNames: string[];
  beforeAll(async () => {
    dir = await copyOfCorpus();
    prismaUrl = await createTestDatabase("parity_prisma");
    prismaNames = await applyThePrismaWay(prismaUrl, dir);
  });

  it("applies every folder from empty, in Prisma's order, to the same pg_dump -s, with every migration in the ledger", async () => {
    const url = await createTestDatabase("parity_pgstack");
    const result = await applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger());
    expect(result.applied.map((a) => a.name)).toEqual(prismaNames);
    expect(prismaNames).toHaveLength(19);
    expect(await schemaDump(url)).toBe(await schemaDump(prismaUrl));
    const ledger = await finishedLedger(url);
    expect(ledger.map((r) => r.migration_name)).toEqual(prismaNames);
    for (const r of ledger) expect(r.checksum).toBe(sha256(await fs.readFile(path.join(dir, r.migration_name, "migration.sql"))));
    // The modes, chosen from the files alone.
    const modes = Object.fromEntries(result.applied.map((a) => [a.name, a.mode]));
    expect(modes).toMatchObject({
      "01_init": "transaction",
      "20240201000000_post_title_idx.sql": "statements",
      "20240203000000_drop_post_title_idx": "statements",
      "20240204000000_reindex_concurrently": "statements",
      "20240205000000_serializable": "as-written",
      "20240207000000_trailing_rollback": "as-written",
      "20240208000000_empty": "transaction",
    });
    // The file's own ROLLBACK discarded its table, for pgstack as for Prisma, and both record it applied.
    const scratch = await withDb(url, (c) => c.query(`SELECT to_regclass('public."Scratch"') AS t`));
    expect(scratch.rows[0].t).toBeNull();
    // Data written by the files is the same too.
    const data = (u: string) => withDb(u, (c) => c.query(`SELECT "email", "nickname", "role"::text FROM "Account" ORDER BY "id"`).then((r) => r.rows));
    expect(await data(url)).toEqual(await data(prismaUrl));
  });

  it("half applied the Prisma way, with Prisma's ledger rows, then pgstack apply --all applies exactly the rest", async () => {
    const url = await createTestDatabase("parity_half");
    const half = await applyThePrismaWay(url, dir, 9);
    const result = await applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger());
    expect(result.applied.map((a) => a.name)).toEqual(prismaNames.slice(9));
    expect(result.alreadyApplied).toEqual(half);
    expect(await schemaDump(url)).toBe(await schemaDump(prismaUrl));
    expect((await finishedLedger(url)).map((r) => r.migration_name)).toEqual(prismaNames);
  });

  it("status --json and plan --markdown show each pending migration's mode and say which are not atomic", async () => {
    const url = await createTestDatabase("parity_plan");
    const status = await pgstack(["status", "--json", "--dir", dir], { DATABASE_URL: url });
    expect(status.code).toBe(0);
    const byName = Object.fromEntries(JSON.parse(status.stdout).migrations.map((m: { name: string }) => [m.name, m]));
    expect(byName["20240202000000_account_email_key"]).toMatchObject({ state: "pending", mode: "statements", atomic: false });
    expect(byName["20240206000000_two_transactions"]).toMatchObject({ state: "pending", mode: "as-written", atomic: false });
    expect(byName["20240126184148_new_models copy"]).toMatchObject({ state: "pending", mode: "transaction", atomic: true });
    const plan = await pgstack(["plan", "--markdown", "--dir", dir], { DATABASE_URL: url });
    expect(plan.code).toBe(0);
    expect(plan.stdout).toContain("| 7 | `20240201000000_post_title_idx.sql` | 1 | statement by statement (NOT atomic) |");
    expect(plan.stdout).toContain("| 12 | `20240206000000_two_transactions` | 6 | as written, own BEGIN/COMMIT (NOT atomic) |");
    expect(plan.stdout).toMatch(/> \*\*Not atomic:\*\* `20240201000000_post_title_idx\.sql`, .*`20240206000000_two_transactions`.* commit statement by statement/);
    // --to and apply <name> take any folder name.
    const to = await pgstack(["apply", "--all", "--to", "20240126184148_new_models copy", "--dir", dir], { DATABASE_URL: url });
    expect(to.code).toBe(0);
    expect(to.stdout).toBe(`Applied 6 migration(s): ${prismaNames.slice(0, 6).join(", ")}.\n`);
    const one = await pgstack(["apply", "20240201000000_post_title_idx.sql", "--dir", dir], { DATABASE_URL: url });
    expect(one.code).toBe(0);
    expect(one.stdout).toBe("Applied 1 migration(s): 20240201000000_post_title_idx.sql.\n");
  });
});

describe("every migration starts from pgstack's session settings", () => {
  it("a SET lock_timeout = 0 in one migration does not stay in force for the next", async () => {
    const url = await createTestDatabase("parity_reset");
    const dir = await migrationsDir({
      "20250101000000_t": `CREATE TABLE "t" ("a" INTEGER);\nSET lock_timeout = 0;\nSET search_path = '';`,
      // Fails if the previous file's settings leaked: pgstack's lock_timeout is 5000 ms, and the table is unqualified.
      "20250102000000_check": `DO $$ BEGIN IF current_setting('lock_timeout') <> '5s' THEN RAISE EXCEPTION 'lock_timeout leaked: %', current_setting('lock_timeout'); END IF; END $$;\nALTER TABLE "t" ADD COLUMN "b" INTEGER;`,
    });
    const result = await applyMigrations(settings(url, dir, { lockTimeoutMs: 5000 }), { kind: "all" }, memoryLogger());
    expect(result.applied.map((a) => a.name)).toEqual(["20250101000000_t", "20250102000000_check"]);
  });
});

describe("every migration starts from a clean session, the deployer lock held throughout", () => {
  // What one migration leaves in its session: prepared statement, temporary table, cursor WITH HOLD, LISTEN,
  // and session advisory locks of every kind (bigint and int pair, negative keys, shared, taken twice).
  const leaves = (tag: string) =>
    `PREPARE q1 AS SELECT 1;\nCREATE TEMP TABLE "scratch" ("a" INTEGER);\nLISTEN ch_${tag};\n` +
    `SELECT pg_advisory_lock(4242), pg_advisory_lock(4242), pg_advisory_lock(-5), pg_advisory_lock(-1, 7), pg_advisory_lock_shared(99), pg_advisory_lock_shared(3, -3);\n` +
    `DECLARE c CURSOR WITH HOLD FOR SELECT 1;\n`;
  // Fails on anything the previous migration left, and unless the deployer lock is still this session's.
  const checks =
    `DO $$ BEGIN\n` +
    `  IF EXISTS (SELECT 1 FROM pg_prepared_statements) THEN RAISE EXCEPTION 'prepared statement leaked'; END IF;\n` +
    `  IF EXISTS (SELECT 1 FROM pg_cursors) THEN RAISE EXCEPTION 'cursor leaked'; END IF;\n` +
    `  IF EXISTS (SELECT 1 FROM pg_listening_channels()) THEN RAISE EXCEPTION 'LISTEN leaked'; END IF;\n` +
    `  IF EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND NOT (classid = 0 AND objid = 72707369)) THEN RAISE EXCEPTION 'advisory lock leaked'; END IF;\n` +
    `  IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND classid = 0 AND objid = 72707369 AND granted) THEN RAISE EXCEPTION 'deployer lock lost'; END IF;\n` +
    `END $$;\n`;

  it("PREPARE q1 and CREATE TEMP TABLE in two migrations of one run both succeed; locks, cursors and LISTENs of one do not reach the next", async () => {
    const url = await createTestDatabase("parity_clean");
    const dir = await migrationsDir({
      "20250101000000_a": leaves("a"),
      "20250102000000_b": checks + leaves("b"),
      "20250103000000_c": checks,
    });
    const result = await applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger());
    expect(result.applied.map((a) => a.name)).toEqual(["20250101000000_a", "20250102000000_b", "20250103000000_c"]);
  });

  it("across the steps of one deploy session: each step starts clean and the deployer lock is never let go", async () => {
    const url = await createTestDatabase("parity_clean_session");
    const dir = await migrationsDir({ "20250101000000_a": leaves("a"), "20250102000000_b": checks + leaves("b") });
    const deployer = deployerSession();
    const lockFree = () => withDb(url, (c) => c.query(`SELECT pg_try_advisory_lock(72707369) AS free, pg_advisory_unlock_all()`).then((r) => r.rows[0].free));
    try {
      await applyMigrations(settings(url, dir), { kind: "one", name: "20250101000000_a" }, memoryLogger(), { deployer });
      expect(await lockFree()).toBe(false);
      await applyMigrations(settings(url, dir), { kind: "one", name: "20250102000000_b" }, memoryLogger(), { deployer });
      expect(await lockFree()).toBe(false);
    } finally {
      await deployer.close();
    }
  });
});

describe("non-atomic migrations after a failure: the truth, and a resume at the failed statement", () => {
  it("statements mode: records applied_steps_count, rebuilds the INVALID index the failed build left, and resumes without re-running committed statements", async () => {
    const url = await createTestDatabase("parity_resume_stmts");
    const dir = await migrationsDir({
      "20250101000000_t": `CREATE TABLE "t" ("a" INTEGER, "b" INTEGER);\nINSERT INTO "t" VALUES (1, 1), (2, 1);`,
      // Not idempotent on purpose: re-running the first statement would fail.
      "20250102000000_idx": `CREATE INDEX CONCURRENTLY "t_a_idx" ON "t"("a");\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "t_b_key" ON "t"("b");\n`,
    });
    const s = settings(url, dir);
    const err = await expectFailure(applyMigrations(s, { kind: "all" }, memoryLogger()));
    expect(err.message).toBe(
      'Migration 20250102000000_idx failed at line 2 of migration.sql: could not create unique index "t_b_key" (SQLSTATE 23505); ' +
        "it runs statement by statement, so its first 1 of 2 statement(s) (through line 1) are committed and recorded (applied_steps_count = 1); " +
        'the next run resumes at line 2, after dropping the index public.t_b_key this failed build left INVALID: remove the cause and run again, or finish it by hand and run `pgstack resolve --applied 20250102000000_idx`.',
    );
    const row = await withDb(url, (c) => c.query(`SELECT finished_at, rolled_back_at, applied_steps_count, logs FROM "_prisma_migrations" WHERE migration_name = '20250102000000_idx'`));
    expect(row.rows).toHaveLength(1);
    expect(row.rows[0]).toMatchObject({ finished_at: null, rolled_back_at: null, applied_steps_count: 1 });
    expect(row.rows[0].logs).toMatch(/Database error code: 23505/);
    const invalid = await withDb(url, (c) => c.query(`SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid`));
    expect(invalid.rows).toEqual([{ relname: "t_b_key" }]);
    const status = await pgstack(["status", "--json", "--dir", dir], { DATABASE_URL: url });
    expect(JSON.parse(status.stdout).migrations[1]).toMatchObject({ name: "20250102000000_idx", state: "failed", appliedSteps: 1, mode: "statements" });

    await withDb(url, (c) => c.query(`UPDATE "t" SET "b" = "a"`));
    const log = memoryLogger();
    const result = await applyMigrations(s, { kind: "all" }, log);
    expect(result.applied).toMatchObject([{ name: "20250102000000_idx", mode: "statements", resumedAfter: 1 }]);
    expect(log.lines.some((l) => l.includes("index public.t_b_key is INVALID"))).toBe(true);
    const indexes = await withDb(url, (c) =>
      c.query(`SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 't\\_%' ORDER BY 1`),
    );
    expect(indexes.rows).toEqual([
      { relname: "t_a_idx", indisvalid: true },
      { relname: "t_b_key", indisvalid: true },
    ]);
    const rows = await withDb(url, (c) => c.query(`SELECT finished_at IS NOT NULL AS done, applied_steps_count FROM "_prisma_migrations" WHERE migration_name = '20250102000000_idx'`));
    expect(rows.rows).toEqual([{ done: true, applied_steps_count: 2 }]);
  });

  it("as written: a COMMIT in the file made part of it permanent; the error says so (never 'nothing of it was applied') and the next run resumes after it", async () => {
    const url = await createTestDatabase("parity_resume_written");
    const dir = await migrationsDir({
      "20250101000000_two": `BEGIN;\nCREATE TABLE "a" ("id" INTEGER);\nCOMMIT;\nBEGIN;\nCREATE TABLE "b" ("id" INTEGER);\nINSERT INTO "needed" VALUES (1);\nCOMMIT;\n`,
    });
    const s = settings(url, dir);
    const err = await expectFailure(applyMigrations(s, { kind: "all" }, memoryLogger()));
    expect(err.message).toMatch(
      /^Migration 20250101000000_two failed at line 6 of migration\.sql: relation "needed" does not exist \(SQLSTATE 42P01\); it runs as written \(its own transactions\), so its first 3 of 7 statement\(s\) \(through line 3\) are committed and recorded \(applied_steps_count = 3\); the next run resumes at line 4/,
    );
    expect(err.message).not.toContain("nothing of it was applied");
    const tables = () => withDb(url, (c) => c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_prisma_migrations' ORDER BY 1`).then((r) => r.rows.map((x) => x.tablename)));
    expect(await tables()).toEqual(["a"]);
    const ledger = await withDb(url, (c) => c.query(`SELECT count(*)::int AS n, max(applied_steps_count) AS steps FROM "_prisma_migrations"`));
    expect(ledger.rows).toEqual([{ n: 1, steps: 3 }]);

    await withDb(url, (c) => c.query(`CREATE TABLE "needed" ("id" INTEGER)`));
    const result = await applyMigrations(s, { kind: "all" }, memoryLogger());
    expect(result.applied).toMatchObject([{ name: "20250101000000_two", mode: "as-written", resumedAfter: 3 }]);
    expect(await tables()).toEqual(["a", "b", "needed"]);
  });

  it("a file ending in ROLLBACK is recorded applied, as Prisma records it (it was reported applied and recorded nowhere)", async () => {
    const url = await createTestDatabase("parity_rollback");
    const dir = await migrationsDir({ "20250101000000_dry": `BEGIN;\nCREATE TABLE "scratch" ("id" INTEGER);\nROLLBACK;\n` });
    const result = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    expect(result.code).toBe(0);
    expect((await finishedLedger(url)).map((r) => r.migration_name)).toEqual(["20250101000000_dry"]);
  });

  it("a file that leaves its own transaction open fails, rolled back, and says so", async () => {
    const url = await createTestDatabase("parity_open_tx");
    const dir = await migrationsDir({ "20250101000000_open": `BEGIN;\nCREATE TABLE "x" ("id" INTEGER);\n` });
    const err = await expectFailure(applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger()));
    expect(err.message).toMatch(/ends inside a transaction it opened \(BEGIN without COMMIT\), so its last transaction was rolled back; nothing of it was applied/);
    const x = await withDb(url, (c) => c.query(`SELECT to_regclass('public.x') AS t`));
    expect(x.rows[0].t).toBeNull();
  });
});

describe("a migration prisma migrate deploy failed on", () => {
  it("is applied by pgstack, and Prisma's failed row (neither finished nor rolled back) is marked rolled back in the same transaction", async () => {
    const url = await createTestDatabase("parity_prisma_failed");
    const dir = await migrationsDir({ "20250101000000_t": `CREATE TABLE "t" ("a" INTEGER);` });
    await applyThePrismaWay(url, dir, 0);
    await withDb(url, (c) =>
      c.query(
        `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, logs, applied_steps_count)
         VALUES ('00000000-0000-4000-8000-000000000001', $1, '20250101000000_t', now(), 'Database error code: 40P01', 0)`,
        ["0".repeat(64)],
      ),
    );
    const result = await applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger());
    expect(result.applied.map((a) => a.name)).toEqual(["20250101000000_t"]);
    const rows = await withDb(url, (c) =>
      c.query(`SELECT id, finished_at IS NOT NULL AS finished, rolled_back_at IS NOT NULL AS rolled_back FROM "_prisma_migrations" ORDER BY started_at`),
    );
    // Prisma counts any row with neither timestamp as a failed migration, even after a later success.
    expect(rows.rows).toEqual([
      { id: "00000000-0000-4000-8000-000000000001", finished: false, rolled_back: true },
      { id: expect.any(String), finished: true, rolled_back: false },
    ]);
  });
});

describe("pgstack resolve, as prisma migrate resolve", () => {
  it("--applied records a failed migration finished by hand; --rolled-back lets the next run start it afresh; wrong states are refused", async () => {
    const url = await createTestDatabase("parity_resolve");
    const dir = await migrationsDir({
      "20250101000000_split": `BEGIN;\nCREATE TABLE "one" ("id" INTEGER);\nCOMMIT;\nCREATE TABLE "two" ("id" INTEGER REFERENCES "missing");\n`,
    });
    await expectFailure(applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger()));

    // Finished by hand, then recorded.
    await withDb(url, (c) => c.query(`CREATE TABLE "two" ("id" INTEGER)`));
    const applied = await pgstack(["resolve", "--applied", "20250101000000_split", "--dir", dir], { DATABASE_URL: url });
    expect(applied.code).toBe(0);
    expect(applied.stdout).toBe("Migration 20250101000000_split is recorded as applied.\n");
    const rows = await withDb(url, (c) =>
      c.query(`SELECT finished_at IS NOT NULL AS finished, rolled_back_at IS NOT NULL AS rolled_back FROM "_prisma_migrations" ORDER BY started_at`),
    );
    expect(rows.rows).toEqual([
      { finished: false, rolled_back: true },
      { finished: true, rolled_back: false },
    ]);
    const again = await pgstack(["resolve", "--applied", "20250101000000_split", "--dir", dir], { DATABASE_URL: url });
    expect(again.code).toBe(1);
    expect(again.stderr).toBe("pgstack: Migration 20250101000000_split is already recorded as applied: there is nothing to resolve.\n");
    const rolledBack = await pgstack(["resolve", "--rolled-back", "20250101000000_split", "--dir", dir], { DATABASE_URL: url });
    expect(rolledBack.code).toBe(1);
    expect(rolledBack.stderr).toMatch(/^pgstack: Migration 20250101000000_split is applied, not failed with work left in the database/);
    expect((await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url })).stdout).toMatch(/nothing to do/);
  });

  it("--rolled-back after the partial work was undone by hand: the next apply runs the file from its first statement", async () => {
    const url = await createTestDatabase("parity_rolled_back");
    const dir = await migrationsDir({
      "20250101000000_split": `BEGIN;\nCREATE TABLE "one" ("id" INTEGER);\nCOMMIT;\nCREATE TABLE "two" ("id" INTEGER REFERENCES "missing");\n`,
    });
    await expectFailure(applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger()));
    await withDb(url, (c) => c.query(`DROP TABLE "one"; CREATE TABLE "missing" ("id" INTEGER PRIMARY KEY)`));
    const resolved = await pgstack(["resolve", "--rolled-back", "20250101000000_split", "--dir", dir], { DATABASE_URL: url });
    expect(resolved.code).toBe(0);
    const result = await applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger());
    expect(result.applied.map((a) => [a.name, a.resumedAfter])).toEqual([["20250101000000_split", undefined]]);
    const tables = await withDb(url, (c) => c.query(`SELECT tablename FROM pg_tables WHERE tablename IN ('one', 'two') ORDER BY 1`));
    expect(tables.rows.map((r) => r.tablename)).toEqual(["one", "two"]);
  });
});

describe("a non-atomic migration killed between statements (PGSTACK_FAILPOINT)", () => {
  const files = {
    "20250101000000_t": `CREATE TABLE "t" ("a" INTEGER, "b" INTEGER);`,
    "20250102000000_idx": `CREATE INDEX CONCURRENTLY "t_a_idx" ON "t"("a");\nCREATE INDEX CONCURRENTLY "t_b_idx" ON "t"("b");\nALTER TABLE "t" ADD COLUMN "c" INTEGER;\n`,
  };
  const state = (url: string) =>
    withDb(url, async (c) => ({
      indexes: (await c.query(`SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 't\\_%' ORDER BY 1`)).rows,
      columns: (await c.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 't' ORDER BY 1`)).rows.map((r) => r.column_name),
      ledger: (await c.query(`SELECT finished_at IS NOT NULL AS done, rolled_back_at IS NOT NULL AS rolled_back, applied_steps_count FROM "_prisma_migrations" WHERE migration_name = '20250102000000_idx'`)).rows,
    }));

  it("killed after an index build committed but before its progress was recorded: the next run does not build it again, and finishes the file", async () => {
    const url = await createTestDatabase("parity_kill_build");
    const dir = await migrationsDir(files);
    const killed = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url, PGSTACK_FAILPOINT: "statement-committed:1" });
    expect(killed.signal).toBe("SIGKILL");
    expect(await state(url)).toEqual({ indexes: [{ relname: "t_a_idx", indisvalid: true }], columns: ["a", "b"], ledger: [{ done: false, rolled_back: false, applied_steps_count: 0 }] });
    const status = await pgstack(["status", "--json", "--dir", dir], { DATABASE_URL: url });
    expect(JSON.parse(status.stdout).migrations[1]).toMatchObject({ state: "failed", mode: "statements" });
    const again = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("index t_a_idx at line 1 was built by the interrupted run; not building it again");
    expect(await state(url)).toEqual({
      indexes: [
        { relname: "t_a_idx", indisvalid: true },
        { relname: "t_b_idx", indisvalid: true },
      ],
      columns: ["a", "b", "c"],
      ledger: [{ done: true, rolled_back: false, applied_steps_count: 3 }],
    });
  });

  it("killed right after a plain statement: its progress was recorded with it, so the next run only finishes the ledger row", async () => {
    const url = await createTestDatabase("parity_kill_plain");
    const dir = await migrationsDir(files);
    const killed = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url, PGSTACK_FAILPOINT: "statement-committed:3" });
    expect(killed.signal).toBe("SIGKILL");
    expect((await state(url)).ledger).toEqual([{ done: false, rolled_back: false, applied_steps_count: 3 }]);
    expect((await state(url)).columns).toEqual(["a", "b", "c"]);
    const again = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    expect(again.code).toBe(0);
    expect(await state(url)).toMatchObject({ columns: ["a", "b", "c"], ledger: [{ done: true, rolled_back: false, applied_steps_count: 3 }] });
  });
});
