import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { applyMigrations, migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings, type Settings } from "../../infra/core/settings";
import { memoryLogger } from "../../infra/core/logger";
import { legacyChecksumOf } from "../../infra/core/migrations/checksum";
import { MIGRATION_LOCK_KEY } from "../../infra/core/db/deployers";
import { createTestDatabase, withDb } from "../support/cluster";
import { copyOfRepoMigrations, fingerprint, migrationsDir, writeMigrations } from "../support/fixtures";
import { expectFailure } from "../support/sentence";

function settings(url: string, dir: string, extra: Partial<Settings> = {}): Settings {
  return { ...resolveSettings({ url, dir }), retryDelayMs: 50, ...extra };
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

describe("apply --all on the repository's migration history", () => {
  let url: string;
  let dir: string;
  beforeAll(async () => {
    url = await createTestDatabase("apply_repo");
    dir = await copyOfRepoMigrations();
  });

  it("applies every migration in order and records each like Prisma does", async () => {
    const log = memoryLogger();
    const result = await applyMigrations(settings(url, dir), { kind: "all" }, log);
    const names = (await fs.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
    expect(names.length).toBeGreaterThanOrEqual(8);
    expect(result.applied.map((a) => a.name)).toEqual(names);
    const rows = await withDb(url, (c) =>
      c.query(`SELECT migration_name, checksum, finished_at, rolled_back_at, logs, applied_steps_count FROM "_prisma_migrations" ORDER BY started_at`),
    );
    expect(rows.rows.map((r) => r.migration_name)).toEqual(names);
    for (const r of rows.rows) {
      expect(r.checksum).toBe(sha256(await fs.readFile(path.join(dir, r.migration_name, "migration.sql"))));
      expect(r.finished_at).toBeInstanceOf(Date);
      expect(r.rolled_back_at).toBeNull();
      expect(r.logs).toBeNull();
      expect(r.applied_steps_count).toBe(1);
    }
    expect(log.lines.filter((l) => l.startsWith("info: applied "))).toHaveLength(names.length);
  });

  it("is a no-op the second time", async () => {
    const before = await fingerprint(url);
    const result = await applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger());
    expect(result.applied).toEqual([]);
    expect(result.alreadyApplied.length).toBeGreaterThanOrEqual(8);
    expect(await fingerprint(url)).toBe(before);
  });

  it("creates the ledger with exactly Prisma's columns and types", async () => {
    const { rows } = await withDb(url, (c) =>
      c.query(
        `SELECT column_name, data_type, character_maximum_length AS len, is_nullable, column_default
           FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position`,
      ),
    );
    expect(rows).toEqual([
      { column_name: "id", data_type: "character varying", len: 36, is_nullable: "NO", column_default: null },
      { column_name: "checksum", data_type: "character varying", len: 64, is_nullable: "NO", column_default: null },
      { column_name: "finished_at", data_type: "timestamp with time zone", len: null, is_nullable: "YES", column_default: null },
      { column_name: "migration_name", data_type: "character varying", len: 255, is_nullable: "NO", column_default: null },
      { column_name: "logs", data_type: "text", len: null, is_nullable: "YES", column_default: null },
      { column_name: "rolled_back_at", data_type: "timestamp with time zone", len: null, is_nullable: "YES", column_default: null },
      { column_name: "started_at", data_type: "timestamp with time zone", len: null, is_nullable: "NO", column_default: "now()" },
      { column_name: "applied_steps_count", data_type: "integer", len: null, is_nullable: "NO", column_default: "0" },
    ]);
    const pk = await withDb(url, (c) => c.query(`SELECT conname FROM pg_constraint WHERE conrelid = '"_prisma_migrations"'::regclass AND contype = 'p'`));
    expect(pk.rows).toEqual([{ conname: "_prisma_migrations_pkey" }]);
  });
});

describe("one migration at a time", () => {
  const files = {
    "20250101000000_a": `CREATE TABLE "a" ("id" SERIAL PRIMARY KEY);`,
    "20250102000000_b": `CREATE TABLE "b" ("id" SERIAL PRIMARY KEY);`,
    "20250103000000_c": `CREATE TABLE "c" ("id" SERIAL PRIMARY KEY);`,
  };

  it("applies by name, refuses to skip ahead, stops at --to", async () => {
    const url = await createTestDatabase("apply_one");
    const dir = await migrationsDir(files);
    const s = settings(url, dir);
    const first = await applyMigrations(s, { kind: "one", name: "20250101000000_a" }, memoryLogger());
    expect(first.applied.map((a) => a.name)).toEqual(["20250101000000_a"]);
    const again = await applyMigrations(s, { kind: "one", name: "a" }, memoryLogger());
    expect(again.applied).toEqual([]);
    expect(again.alreadyApplied).toEqual(["20250101000000_a"]);

    const before = await fingerprint(url);
    const err = await expectFailure(applyMigrations(s, { kind: "one", name: "20250103000000_c" }, memoryLogger()));
    expect(err.code).toBe("E_MIGRATION_ORDER");
    expect(await fingerprint(url)).toBe(before);

    const upTo = await applyMigrations(s, { kind: "all", to: "b" }, memoryLogger());
    expect(upTo.applied.map((a) => a.name)).toEqual(["20250102000000_b"]);
    expect((await migrationStatus(s)).map((m) => m.state)).toEqual(["applied", "applied", "pending"]);
  });
});

describe("a failing migration", () => {
  it("rolls back, records the attempt with the error, stops the chain, and is retried once fixed", async () => {
    const url = await createTestDatabase("apply_fail");
    const dir = await migrationsDir({
      "20250101000000_users": `CREATE TABLE "users" ("email" TEXT NOT NULL);\nINSERT INTO "users" VALUES ('a@x.io'), ('a@x.io');`,
      "20250102000000_unique_email": `-- CreateTable\nCREATE TABLE "side" ("id" INTEGER);\n\n-- CreateIndex\nCREATE UNIQUE INDEX "users_email_key"\n  ON "users"("email");\n`,
      "20250103000000_after": `CREATE TABLE "after" ("id" INTEGER);`,
    });
    const s = settings(url, dir);
    const err = await expectFailure(applyMigrations(s, { kind: "all" }, memoryLogger()));
    expect(err.code).toBe("E_MIGRATION_FAILED");
    expect(err.message).toMatch(
      /^Migration 20250102000000_unique_email failed at line 5 of migration\.sql: could not create unique index "users_email_key" \(SQLSTATE 23505\); nothing of it was applied: fix it and run again\.$/,
    );
    const tables = await withDb(url, (c) => c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`));
    expect(tables.rows.map((r) => r.tablename)).toEqual(["_prisma_migrations", "users"]);
    const ledger = await withDb(url, (c) =>
      c.query(`SELECT migration_name, finished_at, rolled_back_at, logs FROM "_prisma_migrations" WHERE migration_name LIKE '%unique%'`),
    );
    expect(ledger.rows).toHaveLength(1);
    expect(ledger.rows[0].finished_at).toBeNull();
    expect(ledger.rows[0].rolled_back_at).toBeInstanceOf(Date);
    expect(ledger.rows[0].logs).toContain("Database error code: 23505");
    expect(ledger.rows[0].logs).toContain("Line in migration.sql: 5");
    expect((await migrationStatus(s)).map((m) => m.state)).toEqual(["applied", "failed", "pending"]);

    await withDb(url, (c) => c.query(`DELETE FROM "users" WHERE ctid NOT IN (SELECT min(ctid) FROM "users")`));
    const retry = await applyMigrations(s, { kind: "all" }, memoryLogger());
    expect(retry.applied.map((a) => a.name)).toEqual(["20250102000000_unique_email", "20250103000000_after"]);
    expect((await migrationStatus(s)).map((m) => m.state)).toEqual(["applied", "applied", "applied"]);
  });

  it("refuses every pending migration when one has a syntax error, before running any", async () => {
    const url = await createTestDatabase("apply_syntax");
    const dir = await migrationsDir({
      "20250101000000_ok": `CREATE TABLE "ok" ("id" INTEGER);`,
      "20250102000000_typo": `CREATE TABLE "x" ("id" INTEGER);\nALTER TABEL "x" ADD COLUMN "y" INTEGER;`,
    });
    const before = await fingerprint(url);
    const err = await expectFailure(applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger()));
    expect(err.code).toBe("E_MIGRATION_SYNTAX");
    expect(err.message).toBe('Migration 20250102000000_typo has a SQL syntax error at line 2: syntax error at or near "TABEL"; fix migration.sql and run again.');
    expect(await fingerprint(url)).toBe(before);
  });

  it("enforces statement_timeout on every migration", async () => {
    const url = await createTestDatabase("apply_stmt_timeout");
    const dir = await migrationsDir({ "20250101000000_slow": `CREATE TABLE "t" ("id" INTEGER);\nSELECT pg_sleep(5);` });
    const err = await expectFailure(applyMigrations(settings(url, dir, { statementTimeoutMs: 200 }), { kind: "all" }, memoryLogger()));
    expect(err.details.sqlstate).toBe("57014");
    expect(err.message).toMatch(/failed at line 2 .*statement timeout/);
  });
});

describe("drift", () => {
  it("stops before anything runs when an applied migration was edited, and names it", async () => {
    const url = await createTestDatabase("apply_drift");
    const dir = await migrationsDir({ "20250101000000_a": `CREATE TABLE "a" ("id" INTEGER);\n` });
    const s = settings(url, dir);
    await applyMigrations(s, { kind: "all" }, memoryLogger());
    await fs.writeFile(path.join(dir, "20250101000000_a", "migration.sql"), `CREATE TABLE "a" ("id" BIGINT);\n`);
    await writeMigrations(dir, { "20250102000000_b": `CREATE TABLE "b" ("id" INTEGER);` });
    const before = await fingerprint(url);
    const err = await expectFailure(applyMigrations(s, { kind: "all" }, memoryLogger()));
    expect(err.code).toBe("E_DRIFT");
    expect(err.message).toBe(
      "Applied migration 20250101000000_a was edited after it ran (its checksum no longer matches the database's record): restore the original migration.sql from version control and put the change in a new migration.",
    );
    expect(await fingerprint(url)).toBe(before);
    expect((await migrationStatus(s)).map((m) => m.state)).toEqual(["drifted", "pending"]);
  });

  it("stops when an applied migration vanished from disk", async () => {
    const url = await createTestDatabase("apply_missing");
    const dir = await migrationsDir({ "20250101000000_a": `CREATE TABLE "a" ("id" INTEGER);` });
    const s = settings(url, dir);
    await applyMigrations(s, { kind: "all" }, memoryLogger());
    await fs.rm(path.join(dir, "20250101000000_a"), { recursive: true });
    await writeMigrations(dir, { "20250102000000_b": `CREATE TABLE "b" ("id" INTEGER);` });
    const err = await expectFailure(applyMigrations(s, { kind: "all" }, memoryLogger()));
    expect(err.code).toBe("E_MISSING_FROM_DISK");
    expect(err.message).toMatch(/^Applied migration 20250101000000_a is missing from .*: restore its folder from version control/);
    expect((await migrationStatus(s)).map((m) => [m.name, m.state])).toEqual([
      ["20250101000000_a", "missing-from-disk"],
      ["20250102000000_b", "pending"],
    ]);
  });

  it("does not count a CRLF checkout of an applied migration as drift", async () => {
    const url = await createTestDatabase("apply_crlf");
    const dir = await migrationsDir({ "20250101000000_a": `CREATE TABLE "a" (\n  "id" INTEGER\n);\n` });
    const s = settings(url, dir);
    await applyMigrations(s, { kind: "all" }, memoryLogger());
    await fs.writeFile(path.join(dir, "20250101000000_a", "migration.sql"), `CREATE TABLE "a" (\r\n  "id" INTEGER\r\n);\r\n`);
    expect((await migrationStatus(s)).map((m) => m.state)).toEqual(["applied"]);
    expect((await applyMigrations(s, { kind: "all" }, memoryLogger())).applied).toEqual([]);
  });
});

describe("a database migrated by `prisma migrate deploy`", () => {
  it("is read as Prisma left it: applied, rolled-back and legacy-checksum rows", async () => {
    const url = await createTestDatabase("apply_adopt");
    const files = {
      "20240101000000_init": `CREATE TABLE "a" ("id" INTEGER);\n`,
      "20240201000000_second": `CREATE TABLE "b" ("id" INTEGER);\n`,
      "20240301000000_third": `CREATE TABLE "c" ("id" INTEGER);\n`,
    };
    const dir = await migrationsDir(files);
    const bytes = (name: keyof typeof files) => Buffer.from(files[name]);
    // What Prisma's schema engine leaves behind: its DDL, a finished row per
    // migration, a failed attempt later marked with `migrate resolve --rolled-back`,
    // and a row written by an old Prisma with the unpadded checksum.
    await withDb(url, async (c) => {
      await c.query(`CREATE TABLE _prisma_migrations (
        id VARCHAR(36) PRIMARY KEY NOT NULL, checksum VARCHAR(64) NOT NULL, finished_at TIMESTAMPTZ,
        migration_name VARCHAR(255) NOT NULL, logs TEXT, rolled_back_at TIMESTAMPTZ,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_steps_count INTEGER NOT NULL DEFAULT 0)`);
      await c.query(`CREATE TABLE "a" ("id" INTEGER); CREATE TABLE "b" ("id" INTEGER);`);
      const insert = `INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
                      VALUES (gen_random_uuid()::text, $1, $2, $3, $4, $5, $6, $7)`;
      await c.query(insert, [legacyChecksumOf(bytes("20240101000000_init")), new Date("2024-01-01T00:00:01Z"), "20240101000000_init", null, null, new Date("2024-01-01T00:00:00Z"), 1]);
      await c.query(insert, [sha256(bytes("20240201000000_second")), null, "20240201000000_second", "Database error code: 42P07", new Date("2024-02-01T00:10:00Z"), new Date("2024-02-01T00:00:00Z"), 0]);
      await c.query(insert, [sha256(bytes("20240201000000_second")), new Date("2024-02-02T00:00:01Z"), "20240201000000_second", null, null, new Date("2024-02-02T00:00:00Z"), 1]);
    });
    const s = settings(url, dir);
    const status = await migrationStatus(s);
    expect(status.map((m) => [m.name, m.state])).toEqual([
      ["20240101000000_init", "applied"],
      ["20240201000000_second", "applied"],
      ["20240301000000_third", "pending"],
    ]);
    expect(status[1].appliedAt).toEqual(new Date("2024-02-02T00:00:01Z"));
    const result = await applyMigrations(s, { kind: "all" }, memoryLogger());
    expect(result.applied.map((a) => a.name)).toEqual(["20240301000000_third"]);
  });
});

describe("CREATE INDEX CONCURRENTLY with the no-transaction line", () => {
  it("runs statement by statement outside a transaction and leaves a valid index", async () => {
    const url = await createTestDatabase("apply_concurrently");
    const dir = await migrationsDir({
      "20250101000000_t": `CREATE TABLE "t" ("a" INTEGER, "b" INTEGER);`,
      "20250102000000_idx": `-- pgstack:no-transaction\nCREATE INDEX CONCURRENTLY "t_a_idx" ON "t"("a");\nCREATE INDEX CONCURRENTLY "t_b_idx" ON "t"("b");\n`,
    });
    const result = await applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger());
    expect(result.applied.map((a) => a.name)).toEqual(["20250101000000_t", "20250102000000_idx"]);
    const idx = await withDb(url, (c) =>
      c.query(`SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 't_%_idx' ORDER BY 1`),
    );
    expect(idx.rows).toEqual([
      { relname: "t_a_idx", indisvalid: true },
      { relname: "t_b_idx", indisvalid: true },
    ]);
    const ledger = await withDb(url, (c) => c.query(`SELECT applied_steps_count FROM "_prisma_migrations" WHERE migration_name = '20250102000000_idx'`));
    expect(ledger.rows).toEqual([{ applied_steps_count: 2 }]);
  });

  it("applies a single-statement CONCURRENTLY file without the line, statement by statement, as Prisma applies it", async () => {
    // Issue 10: this failed with "cannot run inside a transaction block" after
    // every earlier pending migration was applied; Prisma applies it.
    const url = await createTestDatabase("apply_concurrently_tx");
    const dir = await migrationsDir({
      "20250101000000_t": `CREATE TABLE "t" ("a" INTEGER);`,
      "20250102000000_idx": `-- CreateIndex\nCREATE INDEX CONCURRENTLY "t_a_idx" ON "t"("a");\n`,
      "20250103000000_drop": `DROP INDEX CONCURRENTLY "t_a_idx";`,
    });
    const result = await applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger());
    expect(result.applied.map((a) => [a.name, a.mode])).toEqual([
      ["20250101000000_t", "transaction"],
      ["20250102000000_idx", "statements"],
      ["20250103000000_drop", "statements"],
    ]);
    const rows = await withDb(url, (c) => c.query(`SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY 1`));
    expect(rows.rows.map((r) => r.migration_name)).toEqual(["20250101000000_t", "20250102000000_idx", "20250103000000_drop"]);
  });
});

describe("lock_timeout and retries", () => {
  const files = {
    "20250101000000_t": `CREATE TABLE "busy" ("id" INTEGER);`,
    "20250102000000_alter": `ALTER TABLE "busy" ADD COLUMN "note" TEXT;`,
  };

  async function holdTableLock(url: string): Promise<Client> {
    const holder = new Client({ connectionString: url, application_name: "app-under-load" });
    await holder.connect();
    await holder.query("BEGIN");
    await holder.query(`LOCK TABLE "busy" IN ACCESS SHARE MODE`);
    return holder;
  }

  it("backs off and retries a migration that hit lock_timeout, then applies it", async () => {
    const url = await createTestDatabase("apply_retry");
    const dir = await migrationsDir(files);
    const s = settings(url, dir, { lockTimeoutMs: 100, retries: 5, retryDelayMs: 100 });
    await applyMigrations(s, { kind: "all", to: "20250101000000_t" }, memoryLogger());
    const holder = await holdTableLock(url);
    setTimeout(() => void holder.query("COMMIT").then(() => holder.end()), 400);
    const log = memoryLogger();
    const result = await applyMigrations(s, { kind: "all" }, log);
    expect(result.applied).toHaveLength(1);
    expect(result.applied[0].attempts).toBeGreaterThan(1);
    expect(log.lines.some((l) => /warn: 20250102000000_alter: lock_timeout at line 1 .*retry 1 of 5 in 100 ms/.test(l))).toBe(true);
  });

  it("counts it as failed after --retries attempts, with SQLSTATE 55P03", async () => {
    const url = await createTestDatabase("apply_retry_fail");
    const dir = await migrationsDir(files);
    const s = settings(url, dir, { lockTimeoutMs: 50, retries: 2, retryDelayMs: 20 });
    await applyMigrations(s, { kind: "all", to: "20250101000000_t" }, memoryLogger());
    const holder = await holdTableLock(url);
    try {
      const err = await expectFailure(applyMigrations(s, { kind: "all" }, memoryLogger()));
      expect(err.details).toMatchObject({ sqlstate: "55P03", attempts: 3 });
      expect(err.message).toMatch(/^Migration 20250102000000_alter failed at line 1 of migration\.sql: canceling statement due to lock timeout \(SQLSTATE 55P03\)/);
    } finally {
      await holder.end();
    }
  });
});

describe("one deployer at a time", () => {
  it("waits at most --lock-wait, then names the pid and application_name holding the lock", async () => {
    const url = await createTestDatabase("apply_advisory");
    const dir = await migrationsDir({ "20250101000000_a": `CREATE TABLE "a" ("id" INTEGER);` });
    const other = new Client({ connectionString: url, application_name: "other-deployer" });
    await other.connect();
    try {
      const { rows } = await other.query("SELECT pg_backend_pid() AS pid, pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      const before = await fingerprint(url);
      const started = Date.now();
      const err = await expectFailure(applyMigrations(settings(url, dir, { lockWaitSeconds: 1 }), { kind: "all" }, memoryLogger()));
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
      expect(err.code).toBe("E_LOCK_TIMEOUT");
      expect(err.message).toMatch(
        new RegExp(`^Another deployer holds the migration lock on database '[a-z0-9_]+' \\(pid ${rows[0].pid}, application_name 'other-deployer'\\); waited 1s: let it finish, or raise --lock-wait\\.$`),
      );
      expect(await fingerprint(url)).toBe(before);
    } finally {
      await other.end();
    }
    const result = await applyMigrations(settings(url, dir, { lockWaitSeconds: 1 }), { kind: "all" }, memoryLogger());
    expect(result.applied).toHaveLength(1);
  });

  it("lets only one of two concurrent deploys apply each migration", async () => {
    const url = await createTestDatabase("apply_concurrent");
    const dir = await copyOfRepoMigrations();
    const [one, two] = await Promise.all([
      applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger()),
      applyMigrations(settings(url, dir), { kind: "all" }, memoryLogger()),
    ]);
    const total = one.applied.length + two.applied.length;
    const names = (await fs.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).length;
    expect(total).toBe(names);
    expect([one.applied.length, two.applied.length].sort()).toEqual([0, names]);
    const dupes = await withDb(url, (c) => c.query(`SELECT migration_name FROM "_prisma_migrations" GROUP BY 1 HAVING count(*) > 1`));
    expect(dupes.rows).toEqual([]);
  });
});

describe("the Prisma ?schema= parameter", () => {
  it("keeps the ledger and the tables in that schema", async () => {
    const url = await createTestDatabase("apply_schema");
    const dir = await migrationsDir({ "20250101000000_a": `CREATE TABLE "a" ("id" INTEGER);` });
    await applyMigrations(settings(`${url}?schema=tenant`, dir), { kind: "all" }, memoryLogger());
    const tables = await withDb(url, (c) => c.query(`SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 2`));
    expect(tables.rows).toEqual([
      { schemaname: "tenant", tablename: "_prisma_migrations" },
      { schemaname: "tenant", tablename: "a" },
    ]);
  });
});
