import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { driftFindings, lintError, lintMigrations, migrationFromFile, type LintReport } from "../../infra/core/lint";
import { PGSTACK_RULES, SQUAWK_RULES, SQUAWK_EXCLUDED, squawkRule } from "../../infra/core/lint/rules";
import { checksumOf } from "../../infra/core/migrations/checksum";
import { discoverMigrations, NO_TRANSACTION_MARKER, type Migration } from "../../infra/core/migrations/discover";
import type { MigrationStatus } from "../../infra/core/migrations/status";
import { REPO_ROOT } from "../support/fixtures";

const FIXTURES = path.join(REPO_ROOT, "test", "fixtures", "lint");

let counter = 0;
function migration(sql: string, name = `2025010100${String(counter++).padStart(4, "0")}_m`): Migration {
  const bytes = Buffer.from(sql);
  const first = sql.split(/\r?\n/).find((l) => l.trim() !== "") ?? "";
  return {
    name,
    slug: name.slice(15),
    dir: `/m/${name}`,
    sqlPath: `/m/${name}/migration.sql`,
    bytes,
    sql,
    checksum: checksumOf(bytes),
    noTransaction: first.trim() === NO_TRANSACTION_MARKER,
  };
}

async function lint(...files: string[]): Promise<LintReport> {
  return lintMigrations(files.map((sql) => migration(sql)), { cwd: "/" });
}

/** Unaccepted blocking findings' rules, in order. */
function blocking(report: LintReport): string[] {
  return report.findings.filter((f) => f.severity === "blocking" && !f.suppressed).map((f) => f.rule);
}

function rules(report: LintReport): string[] {
  return report.findings.map((f) => f.rule);
}

describe("the rule table", () => {
  it("classifies every rule squawk-cli 2.66.0 can report", () => {
    // From the Display impl of squawk 2.66.0's Rule enum (plus its parser's syntax-error).
    const squawk266 = [
      "require-concurrent-index-creation", "require-concurrent-index-deletion", "constraint-missing-not-valid",
      "adding-field-with-default", "adding-foreign-key-constraint", "changing-column-type", "adding-not-nullable-field",
      "adding-serial-primary-key-field", "renaming-column", "renaming-table", "disallowed-unique-constraint",
      "ban-drop-database", "prefer-bigint-over-int", "prefer-bigint-over-smallint", "prefer-identity", "prefer-repack",
      "prefer-robust-stmts", "prefer-text-field", "prefer-timestamp-tz", "ban-char-field", "ban-drop-column",
      "ban-drop-table", "ban-drop-not-null", "transaction-nesting", "adding-required-field",
      "ban-concurrent-index-creation-in-transaction", "unused-ignore", "ban-create-domain-with-constraint",
      "ban-alter-domain-with-add-constraint", "ban-truncate-cascade", "require-timeout-settings",
      "ban-uncommitted-transaction", "require-enum-value-ordering", "require-table-schema", "identifier-too-long",
      "require-concurrent-partition-detach", "require-concurrent-reindex", "require-lock-timeout",
      "require-statement-timeout", "syntax-error",
    ];
    expect(Object.keys(SQUAWK_RULES).sort()).toEqual([...squawk266].sort());
    for (const spec of [...Object.values(SQUAWK_RULES), ...Object.values(PGSTACK_RULES)]) expect(spec.why).toMatch(/\S/);
  });

  it("blocks on a Squawk rule nobody has classified yet", () => {
    expect(squawkRule("some-future-rule").severity).toBe("blocking");
  });

  it("does not even run the timeout rules pgstack answers itself", () => {
    expect(SQUAWK_EXCLUDED.sort()).toEqual(
      ["ban-concurrent-index-creation-in-transaction", "require-lock-timeout", "require-statement-timeout", "require-timeout-settings"].sort(),
    );
  });
});

describe("blocking categories: each unsafe form blocks, its safe form passes", () => {
  it("CREATE INDEX without CONCURRENTLY on an existing table", async () => {
    expect(blocking(await lint(`CREATE INDEX "users_name_idx" ON "users"("name");`))).toEqual(["require-concurrent-index-creation"]);
    const safe = await lint(`${NO_TRANSACTION_MARKER}\nCREATE INDEX CONCURRENTLY IF NOT EXISTS "users_name_idx" ON "users"("name");\n`);
    expect(safe.findings).toEqual([]);
  });

  it("DROP INDEX without CONCURRENTLY", async () => {
    expect(blocking(await lint(`DROP INDEX "users_name_idx";`))).toEqual(["require-concurrent-index-deletion"]);
    expect(blocking(await lint(`${NO_TRANSACTION_MARKER}\nDROP INDEX CONCURRENTLY IF EXISTS "users_name_idx";`))).toEqual([]);
  });

  it("ADD COLUMN NOT NULL without a default", async () => {
    expect(blocking(await lint(`ALTER TABLE "users" ADD COLUMN "plan" TEXT NOT NULL;`))).toEqual(["adding-required-field"]);
    expect(blocking(await lint(`ALTER TABLE "users" ADD COLUMN "plan" TEXT NOT NULL DEFAULT 'free';`))).toEqual([]);
  });

  it("ADD COLUMN with a volatile default (table rewrite)", async () => {
    expect(blocking(await lint(`ALTER TABLE "users" ADD COLUMN "token" UUID DEFAULT gen_random_uuid();`))).toEqual(["adding-field-with-default"]);
    expect(blocking(await lint(`ALTER TABLE "users" ADD COLUMN "seen_at" TIMESTAMPTZ NOT NULL DEFAULT now();`))).toEqual([]);
  });

  it("ALTER COLUMN TYPE", async () => {
    expect(blocking(await lint(`ALTER TABLE "users" ALTER COLUMN "age" TYPE BIGINT;`))).toEqual(["changing-column-type"]);
    // The safe path starts with a new column, backfilled later.
    expect(blocking(await lint(`ALTER TABLE "users" ADD COLUMN "age_big" BIGINT;`))).toEqual([]);
  });

  it("SET NOT NULL without a validated CHECK", async () => {
    expect(blocking(await lint(`ALTER TABLE "users" ALTER COLUMN "email" SET NOT NULL;`))).toEqual(["adding-not-nullable-field"]);
    const report = await lint(
      `ALTER TABLE "users" ADD CONSTRAINT "users_email_not_null" CHECK ("email" IS NOT NULL) NOT VALID;`,
      `ALTER TABLE "users" VALIDATE CONSTRAINT "users_email_not_null";\nALTER TABLE "users" ALTER COLUMN "email" SET NOT NULL;\nALTER TABLE "users" DROP CONSTRAINT "users_email_not_null";`,
    );
    expect(blocking(report)).toEqual([]);
  });

  it("adding a constraint NOT VALID and validating it in the same transaction", async () => {
    const report = await lint(
      `ALTER TABLE "users" ADD CONSTRAINT "users_email_not_null" CHECK ("email" IS NOT NULL) NOT VALID;\nALTER TABLE "users" VALIDATE CONSTRAINT "users_email_not_null";`,
    );
    expect(blocking(report)).toEqual(["constraint-missing-not-valid"]);
  });

  it("FOREIGN KEY without NOT VALID", async () => {
    const fk = `ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_created_by_id_fkey" FOREIGN KEY ("created_by_id") REFERENCES "users"("id")`;
    // One finding per foreign key (issue 10: Squawk's constraint-missing-not-valid repeated it).
    expect(blocking(await lint(`${fk};`))).toEqual(["adding-foreign-key-constraint"]);
    const safe = await lint(`${fk} NOT VALID;`, `ALTER TABLE "api_keys" VALIDATE CONSTRAINT "api_keys_created_by_id_fkey";`);
    expect(blocking(safe)).toEqual([]);
  });

  it("CHECK without NOT VALID", async () => {
    const check = `ALTER TABLE "organizations" ADD CONSTRAINT "seat_limit_positive" CHECK ("seat_limit" > 0)`;
    expect(blocking(await lint(`${check};`))).toEqual(["constraint-missing-not-valid"]);
    expect(blocking(await lint(`${check} NOT VALID;`, `ALTER TABLE "organizations" VALIDATE CONSTRAINT "seat_limit_positive";`))).toEqual([]);
  });

  it("UNIQUE constraint and PRIMARY KEY added to an existing table", async () => {
    // No NOT VALID advice: PostgreSQL refuses NOT VALID on UNIQUE and PRIMARY KEY (issue 10).
    expect(blocking(await lint(`ALTER TABLE "users" ADD CONSTRAINT "users_email_key" UNIQUE ("email");`))).toEqual(["disallowed-unique-constraint"]);
    expect(rules(await lint(`ALTER TABLE "users" ADD CONSTRAINT "users_pkey" PRIMARY KEY ("id");`))).not.toContain("constraint-missing-not-valid");
    const safe = await lint(
      `${NO_TRANSACTION_MARKER}\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "users_email_key" ON "users"("email");`,
      `ALTER TABLE "users" ADD CONSTRAINT "users_email_key" UNIQUE USING INDEX "users_email_key";`,
    );
    expect(blocking(safe)).toEqual([]);
  });

  it("RENAME of a column or a table", async () => {
    expect(blocking(await lint(`ALTER TABLE "users" RENAME COLUMN "name" TO "full_name";`))).toEqual(["renaming-column"]);
    expect(blocking(await lint(`ALTER TABLE "users" RENAME TO "people";`))).toEqual(["renaming-table"]);
    // A table nobody uses yet can be renamed freely.
    const fresh = await lint(`CREATE TABLE "draft" ("id" TEXT NOT NULL);\nALTER TABLE "draft" RENAME COLUMN "id" TO "key";\nALTER TABLE "draft" RENAME TO "drafts";`);
    expect(blocking(fresh)).toEqual([]);
  });

  it("DROP TABLE and DROP COLUMN", async () => {
    expect(blocking(await lint(`DROP TABLE "sessions";`))).toEqual(["ban-drop-table"]);
    expect(blocking(await lint(`ALTER TABLE "users" DROP COLUMN "avatar_url";`))).toEqual(["ban-drop-column"]);
    const fresh = await lint(`CREATE TABLE "tmp" ("id" TEXT, "x" TEXT);\nALTER TABLE "tmp" DROP COLUMN "x";\nDROP TABLE "tmp";`);
    expect(blocking(fresh)).toEqual([]);
  });

  it("TRUNCATE (pgstack's own check; Squawk only has TRUNCATE ... CASCADE)", async () => {
    const report = await lint(`TRUNCATE "sessions";`);
    expect(blocking(report)).toEqual(["ban-truncate"]);
    expect(report.findings[0]).toMatchObject({ source: "pgstack", line: 1, column: 1 });
    expect(blocking(await lint(`TRUNCATE "sessions" CASCADE;`)).sort()).toEqual(["ban-truncate", "ban-truncate-cascade"]);
    expect(blocking(await lint(`DELETE FROM "sessions" WHERE "expires_at" < now() - interval '30 days';`))).toEqual([]);
  });

  it("DELETE without WHERE (pgstack's own check), also inside WITH", async () => {
    expect(blocking(await lint(`DELETE FROM "sessions";`))).toEqual(["ban-delete-without-where"]);
    expect(blocking(await lint(`WITH gone AS (DELETE FROM "sessions" RETURNING "id")\nSELECT count(*) FROM gone;`))).toEqual(["ban-delete-without-where"]);
    expect(blocking(await lint(`DELETE FROM "sessions" WHERE "user_id" IS NULL;`))).toEqual([]);
    // Text that merely looks like SQL is not SQL: the parser knows.
    expect(blocking(await lint(`-- DELETE FROM "sessions";\nSELECT 'TRUNCATE "users"; DELETE FROM "users"';`))).toEqual([]);
  });

  it("destructive or locking statements on a table created earlier in the same migration pass", async () => {
    const report = await lint(
      [
        `CREATE TABLE "imports" ("id" TEXT NOT NULL, "n" INTEGER);`,
        `ALTER TABLE "imports" ALTER COLUMN "n" SET NOT NULL;`,
        `ALTER TABLE "imports" ALTER COLUMN "n" TYPE BIGINT;`,
        `ALTER TABLE "imports" ADD CONSTRAINT "n_positive" CHECK ("n" > 0);`,
        `DELETE FROM "imports";`,
        `TRUNCATE "imports";`,
      ].join("\n"),
    );
    expect(blocking(report)).toEqual([]);
  });

  it("CREATE TABLE IF NOT EXISTS may meet an existing table, so it does not count as new", async () => {
    const report = await lint(`CREATE TABLE IF NOT EXISTS "users" ("id" TEXT);\nALTER TABLE "users" DROP COLUMN "name";`);
    expect(blocking(report)).toEqual(["ban-drop-column"]);
  });
});

describe("Prisma's own migrations", () => {
  it("the repository's init migration (CREATE TYPE/TABLE/INDEX/UNIQUE INDEX/FOREIGN KEY) has no blocking finding", async () => {
    const init = await migrationFromFile(path.join(REPO_ROOT, "migrations", "20250114093012_init", "migration.sql"));
    const report = await lintMigrations([init]);
    expect(report.blocking).toBe(0);
    // Prisma's TIMESTAMP(3) and INTEGER are style warnings, not blockers.
    expect(new Set(rules(report))).toEqual(new Set(["prefer-timestamp-tz", "prefer-bigint-over-int"]));
    expect(report.findings.every((f) => f.severity === "warning" && f.migration === "20250114093012_init")).toBe(true);
  });

  it("a new table with a foreign key to an existing table passes (fixture)", async () => {
    const [widgets] = await discoverMigrations(path.join(FIXTURES, "safe"));
    expect(widgets.name).toBe("20250301000000_add_widgets");
    const report = await lintMigrations([widgets]);
    expect(report.blocking).toBe(0);
    expect(report.findings.map((f) => f.rule)).toEqual(["prefer-timestamp-tz", "prefer-timestamp-tz"]);
  });

  it("outside a transaction, an index on a table created just before in the file passes too", async () => {
    // Squawk flags this without --assume-in-transaction; pgstack knows the table is new.
    const report = await lint(`${NO_TRANSACTION_MARKER}\nCREATE TABLE "u" ("id" BIGINT);\nCREATE INDEX "u_id_idx" ON "u"("id");`);
    expect(blocking(report)).toEqual([]);
  });
});

describe("pgstack's transaction handling", () => {
  it("never reports timeout settings: pgstack sets lock_timeout and statement_timeout itself", async () => {
    const report = await lint(
      `ALTER TABLE "users" ALTER COLUMN "age" TYPE BIGINT;\nCREATE INDEX "i" ON "users"("age");`,
      `${NO_TRANSACTION_MARKER}\nCREATE INDEX CONCURRENTLY "j" ON "users"("name");\nALTER TABLE "users" ADD COLUMN "x" TEXT;`,
    );
    expect(report.findings.length).toBeGreaterThan(0);
    expect(rules(report).filter((r) => /timeout/.test(r))).toEqual([]);
  });

  it("CONCURRENTLY needs no no-transaction line: the file runs statement by statement, as Prisma runs it", async () => {
    // Issue 10: this blocked, and the advice (add a first line) turned into drift where the file had already run.
    for (const sql of [
      `CREATE INDEX CONCURRENTLY "users_name_idx" ON "users"("name");`,
      `DROP INDEX CONCURRENTLY "users_name_idx";`,
      `REINDEX INDEX CONCURRENTLY "users_name_idx";`,
      `ALTER TABLE "events" DETACH PARTITION "events_2024" CONCURRENTLY;`,
    ]) {
      expect(blocking(await lint(`-- AddIndex\n${sql}`))).toEqual([]);
      expect(blocking(await lint(`${NO_TRANSACTION_MARKER}\n${sql}`))).toEqual([]);
    }
  });

  it("REFRESH MATERIALIZED VIEW CONCURRENTLY is fine inside a transaction", async () => {
    expect(blocking(await lint(`REFRESH MATERIALIZED VIEW CONCURRENTLY "stats";`))).toEqual([]);
  });

  it("a file wrapped whole in its own BEGIN/COMMIT runs as written: no transaction-nesting; a nested BEGIN still blocks", async () => {
    // Issue 10: this blocked twice, though pgstack (and Prisma) run such a file as written.
    expect(blocking(await lint(`BEGIN;\nALTER TABLE "users" ADD COLUMN "x" TEXT;\nCOMMIT;`))).toEqual([]);
    expect(blocking(await lint(`BEGIN;\nBEGIN;\nALTER TABLE "users" ADD COLUMN "x" TEXT;\nCOMMIT;\nCOMMIT;`))).toContain("transaction-nesting");
    expect(blocking(await lint(`${NO_TRANSACTION_MARKER}\nBEGIN;\nALTER TABLE "users" ADD COLUMN "x" TEXT;\nCOMMIT;`))).toEqual([]);
  });

  it("asks for re-runnable statements only where pgstack re-runs a file after a partial failure", async () => {
    expect(rules(await lint(`CREATE TABLE "a" ("id" BIGINT);`))).toEqual([]);
    const outside = await lint(`${NO_TRANSACTION_MARKER}\nCREATE INDEX CONCURRENTLY "users_name_idx" ON "users"("name");`);
    expect(outside.findings).toMatchObject([{ rule: "prefer-robust-stmts", severity: "warning" }]);
  });
});

describe("lint on real histories (issue 10)", () => {
  it("an empty or comment-only migration.sql is no finding (Prisma applies it)", async () => {
    expect(rules(await lint(``, `-- This is an empty migration.\n`))).toEqual([]);
  });

  it("UPDATE without WHERE on an existing table warns; on a table of the same file it does not", async () => {
    const report = await lint(`UPDATE "users" SET "name" = 'x';`);
    expect(report.findings).toMatchObject([{ rule: "update-without-where", severity: "warning", line: 1 }]);
    expect(rules(await lint(`UPDATE "users" SET "name" = 'x' WHERE "id" = 1;`))).toEqual([]);
    expect(rules(await lint(`CREATE TABLE "n" ("id" BIGINT, "v" TEXT);\nUPDATE "n" SET "v" = 'x';`))).toEqual([]);
  });

  it("DELETE without WHERE on an existing table blocks", async () => {
    expect(blocking(await lint(`DELETE FROM "users";`))).toEqual(["ban-delete-without-where"]);
  });

  it("an explicit LOCK TABLE in SHARE mode or stronger blocks; a weaker one does not", async () => {
    const report = await lint(`LOCK TABLE "users";`);
    expect(blocking(report)).toEqual(["lock-table"]);
    expect(report.findings[0].message).toBe(`LOCK TABLE "users" in ACCESS EXCLUSIVE mode blocks the application's writes and reads until the migration commits.`);
    expect(blocking(await lint(`LOCK TABLE "users" IN ROW EXCLUSIVE MODE;`))).toEqual([]);
  });

  it("a folder name Prisma accepts but not <timestamp>_<name> is a warning, not a refusal", async () => {
    const report = await lintMigrations([migration(`SELECT 1;`, "01_init")], { cwd: "/" });
    expect(report.findings).toMatchObject([{ rule: "nonstandard-folder-name", severity: "warning", migration: "01_init" }]);
    expect(rules(await lint(`SELECT 1;`))).toEqual([]);
  });

  it("a file ending in ROLLBACK is a warning: recorded applied, it changes nothing", async () => {
    const report = await lint(`BEGIN;\nCREATE TABLE "scratch" ("id" BIGINT);\nROLLBACK;`);
    expect(report.findings.filter((f) => f.rule === "rollback-discards-migration")).toMatchObject([{ severity: "warning", line: 3 }]);
    expect(blocking(report)).toEqual([]);
  });

  it("DDL inside a DO block is reported: lint cannot check it", async () => {
    const report = await lint(`DO $$ BEGIN\n  IF NOT EXISTS (SELECT 1) THEN\n    ALTER TABLE "users" ADD COLUMN "x" TEXT;\n  END IF;\nEND $$;`);
    expect(report.findings).toMatchObject([{ rule: "ddl-in-do-block", severity: "warning", line: 1 }]);
    expect(rules(await lint(`DO $$ BEGIN RAISE NOTICE 'hi'; END $$;`))).toEqual([]);
  });
});

describe("suppressions", () => {
  it("a `-- pgstack:allow <rule> <reason>` on the line before accepts the finding and keeps it with its reason", async () => {
    const report = await lint(`-- AlterTable\n-- pgstack:allow ban-drop-column avatar_url is unused since v3.2\nALTER TABLE "users" DROP COLUMN "avatar_url";`);
    expect(report.blocking).toBe(0);
    expect(report.suppressed).toBe(1);
    expect(report.findings).toMatchObject([
      { rule: "ban-drop-column", severity: "blocking", line: 3, suppressed: { reason: "avatar_url is unused since v3.2" } },
    ]);
    expect(lintError(report)).toBeUndefined();
  });

  it("accepts only the named rule, and only for the statement right after it", async () => {
    const report = await lint(
      [
        `-- pgstack:allow ban-drop-column avatar_url is unused since v3.2`,
        `ALTER TABLE "users" DROP COLUMN "avatar_url", ALTER COLUMN "age" TYPE BIGINT;`,
        ``,
        `ALTER TABLE "users" DROP COLUMN "name";`,
      ].join("\n"),
    );
    expect(blocking(report).sort()).toEqual(["ban-drop-column", "changing-column-type"]);
    expect(report.findings.filter((f) => f.suppressed).map((f) => [f.rule, f.line])).toEqual([["ban-drop-column", 2]]);
  });

  it("covers a finding deep inside a multi-line statement from above the statement", async () => {
    const report = await lint(
      `-- pgstack:allow prefer-timestamp-tz Prisma maps DateTime to timestamp(3); times are stored in UTC\nCREATE TABLE "a" (\n  "id" TEXT,\n  "at" TIMESTAMP(3)\n);`,
    );
    expect(report.findings).toMatchObject([{ rule: "prefer-timestamp-tz", line: 4, suppressed: { reason: expect.stringMatching(/UTC/) } }]);
    expect(report.warnings).toBe(0);
  });

  it("a suppression without a reason is an error and accepts nothing", async () => {
    const report = await lint(`-- pgstack:allow ban-drop-column\nALTER TABLE "users" DROP COLUMN "avatar_url";`);
    expect(blocking(report)).toEqual(["allow-without-reason", "ban-drop-column"]);
    const error = report.findings.find((f) => f.rule === "allow-without-reason")!;
    expect(error).toMatchObject({ line: 1, column: 1, severity: "blocking" });
    expect(error.message).toMatch(/^`-- pgstack:allow ban-drop-column` gives no reason: [^.]+\.$/);
    expect(blocking(await lint(`-- pgstack:allow\nSELECT 1;`))).toEqual(["allow-without-reason"]);
  });

  it("a suppression that accepts nothing is a warning", async () => {
    const report = await lint(`-- pgstack:allow ban-drop-table not needed\nALTER TABLE "users" ADD COLUMN "x" TEXT;\n-- pgstack:allow no-such-rule because\nSELECT 1;`);
    expect(report.findings.map((f) => [f.rule, f.severity, f.line])).toEqual([
      ["unused-allow", "warning", 1],
      ["unused-allow", "warning", 3],
    ]);
    expect(report.findings[1].message).toMatch(/names no rule pgstack knows/);
  });

  it("cannot accept what would fail the deploy anyway", async () => {
    const report = await lint(`-- pgstack:allow invalid-sql we know\nCREATE TABL "i" ("a" INT);`);
    expect(blocking(report)).toContain("invalid-sql");
  });

  it("Squawk's own reason-less ignore comments are refused", async () => {
    const report = await lint(`-- squawk-ignore ban-drop-column\nALTER TABLE "users" DROP COLUMN "avatar_url";`);
    expect(blocking(report)).toEqual(["squawk-ignore-comment"]);
  });

  it("accepts the prefer-timestamptz spelling Squawk also accepts", async () => {
    const report = await lint(`CREATE TABLE "a" (\n  -- pgstack:allow prefer-timestamptz stored as UTC by Prisma\n  "at" TIMESTAMP(3)\n);`);
    expect(report.suppressed).toBe(1);
  });
});

describe("positions and parse errors", () => {
  it("reports 1-based lines and character columns, also after non-ASCII text", async () => {
    const report = await lint(`-- Größe ändern\nALTER TABLE "größe" ALTER COLUMN "maß" TYPE BIGINT;`);
    // Squawk reports a byte column; pgstack turns it into a character column.
    expect(report.findings).toMatchObject([{ rule: "changing-column-type", line: 2, column: 40 }]);
  });

  it("SQL PostgreSQL cannot parse is one blocking finding with its line", async () => {
    const report = await lint(`CREATE TABLE "a" ("id" BIGINT);\n\nALTER TABLE "a" ADD COLUMN;`);
    expect(report.findings.filter((f) => f.severity === "blocking")).toMatchObject([{ rule: "invalid-sql", line: 3 }]);
    expect(rules(report)).not.toContain("syntax-error");
  });
});

describe("drift (needs the ledger: MigrationStatus from computeStatus)", () => {
  const edited = migration(`CREATE TABLE "a" ("id" BIGINT);`, "20250101000000_a");
  const status: MigrationStatus[] = [
    { name: edited.name, checksum: edited.checksum, state: "drifted", appliedAt: new Date("2025-01-02T03:04:05Z"), migration: edited },
    { name: "20250102000000_b", checksum: "x", state: "applied", appliedAt: new Date() },
    { name: "20250103000000_c", checksum: "y", state: "pending", appliedAt: null },
  ];

  it("turns each drifted migration into a blocking finding", () => {
    const findings = driftFindings(status, { cwd: "/" });
    expect(findings).toEqual([
      expect.objectContaining({
        migration: "20250101000000_a",
        file: path.join("m", "20250101000000_a", "migration.sql"),
        line: 1,
        rule: "applied-migration-edited",
        severity: "blocking",
      }),
    ]);
    expect(findings[0].message).toMatch(/^Migration 20250101000000_a was applied to the database on 2025-01-02T03:04:05.000Z and its migration.sql has changed since\.$/);
  });

  it("is part of lintMigrations when the status is given, and cannot be accepted", async () => {
    const allowed = migration(`-- pgstack:allow applied-migration-edited fixing a typo\nCREATE TABLE "a" ("id" BIGINT);`, edited.name);
    const report = await lintMigrations([allowed], { cwd: "/", status: [{ ...status[0], migration: allowed }] });
    expect(blocking(report)).toEqual(["applied-migration-edited"]);
    expect(lintError(report)?.message).toBe(
      "1 blocking finding(s) in migration 20250101000000_a: fix them, or accept each with `-- pgstack:allow <rule> <reason>` on the line before it.",
    );
  });
});

describe("the Squawk binary", () => {
  it("missing binary: one sentence saying to run npm ci", async () => {
    const missing = path.join(REPO_ROOT, "node_modules", "no-such-squawk");
    await expect(lintMigrations([migration("SELECT 1;")], { squawkBinary: missing })).rejects.toMatchObject({
      code: "E_LINT",
      message: expect.stringMatching(/^The Squawk linter \(.*\) is not installed: run `npm ci` to install pgstack's dependencies\.$/),
    });
  });

  it("a .squawk.toml in the project does not switch rules off", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-lint-"));
    const cwd = process.cwd();
    try {
      await fs.writeFile(path.join(dir, ".squawk.toml"), `excluded_rules = ["ban-drop-column"]\nassume_in_transaction = false\n`);
      process.chdir(dir);
      expect(blocking(await lint(`ALTER TABLE "users" DROP COLUMN "x";`))).toEqual(["ban-drop-column"]);
    } finally {
      process.chdir(cwd);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
