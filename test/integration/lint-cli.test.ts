import { promises as fs } from "node:fs";
import * as path from "node:path";
import { pgstack } from "../support/cli";
import { createTestDatabase } from "../support/cluster";
import { migrationsDir } from "../support/fixtures";

const SAFE = path.join("test", "fixtures", "lint", "safe");
const UNSAFE = path.join("test", "fixtures", "lint", "unsafe");
const NO_DB = { DATABASE_URL: undefined };

describe("pgstack lint (the real CLI)", () => {
  it("exits 1 with the findings as JSON when a blocking finding is not accepted", async () => {
    const result = await pgstack(["lint", "--dir", UNSAFE, "--json"], NO_DB);
    expect(result.code).toBe(1);
    // The report is the whole of stdout; the failure sentence goes to stderr.
    const report = JSON.parse(result.stdout);
    expect(Object.keys(report)).toEqual(["findings", "blocking", "warnings", "suppressed"]);
    expect(report).toMatchObject({ blocking: 3, warnings: 2, suppressed: 0 });
    expect(report.findings.filter((f: { severity: string }) => f.severity === "blocking")).toEqual([
      {
        migration: "20250302000000_index_widgets",
        file: path.join(UNSAFE, "20250302000000_index_widgets", "migration.sql"),
        line: 2,
        column: 1,
        rule: "require-concurrent-index-creation",
        message: expect.any(String),
        help: expect.any(String),
        severity: "blocking",
        source: "squawk",
      },
      expect.objectContaining({ migration: "20250303000000_drop_widget_legacy", line: 2, rule: "allow-without-reason", source: "pgstack" }),
      expect.objectContaining({ migration: "20250303000000_drop_widget_legacy", line: 3, rule: "ban-drop-column" }),
    ]);
    expect(result.stderr.trim()).toBe(
      "pgstack: 3 blocking finding(s) in migrations 20250302000000_index_widgets, 20250303000000_drop_widget_legacy: fix them, or accept each with `-- pgstack:allow <rule> <reason>` on the line before it.",
    );
  });

  it("exits 0 when only warnings and accepted findings remain, and keeps the accepted ones with their reason", async () => {
    const result = await pgstack(["lint", "--dir", SAFE, "--json"], NO_DB);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ blocking: 0, warnings: 2, suppressed: 1 });
    expect(report.findings.find((f: { suppressed?: unknown }) => f.suppressed)).toMatchObject({
      migration: "20250303000000_drop_widget_legacy",
      rule: "ban-drop-column",
      severity: "blocking",
      suppressed: { reason: "legacy_code has been unused since the v2 importer was removed" },
    });
  });

  it("prints one `path:line:col  severity  rule  message` line per finding and a summary", async () => {
    const result = await pgstack(["lint", path.join(UNSAFE, "20250302000000_index_widgets"), path.join(SAFE, "20250303000000_drop_widget_legacy", "migration.sql")], NO_DB);
    expect(result.code).toBe(1);
    const lines = result.stdout.trim().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^test\/fixtures\/lint\/unsafe\/20250302000000_index_widgets\/migration\.sql:2:1  blocking  require-concurrent-index-creation  \S/);
    expect(lines[1]).toMatch(/^test\/fixtures\/lint\/safe\/20250303000000_drop_widget_legacy\/migration\.sql:3:23  accepted  ban-drop-column  .*\(accepted: legacy_code has been unused/);
    expect(lines[2]).toBe("2 migration(s) linted: 1 blocking, 0 warning(s), 1 accepted.");
  });

  it("reports an applied migration edited since only when given a database", async () => {
    const url = await createTestDatabase("lint_drift");
    const dir = await migrationsDir({ "20250101000000_a": `CREATE TABLE "a" ("id" BIGINT);\n` });
    const applied = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    expect(applied.code).toBe(0);
    await fs.writeFile(path.join(dir, "20250101000000_a", "migration.sql"), `CREATE TABLE "a" ("id" BIGINT, "name" TEXT);\n`);

    const withDb = await pgstack(["lint", "--dir", dir, "--json"], { DATABASE_URL: url });
    expect(withDb.code).toBe(1);
    const report = JSON.parse(withDb.stdout);
    expect(report.findings).toEqual([expect.objectContaining({ migration: "20250101000000_a", rule: "applied-migration-edited", severity: "blocking" })]);
    expect(withDb.stdout + withDb.stderr).not.toContain(new URL(url).password);

    const filesOnly = await pgstack(["lint", "--dir", dir, "--json"], NO_DB);
    expect(filesOnly.code).toBe(0);
    expect(JSON.parse(filesOnly.stdout)).toEqual({ findings: [], blocking: 0, warnings: 0, suppressed: 0 });
  });

  it("a path that does not exist is a usage error in one sentence", async () => {
    const result = await pgstack(["lint", "no/such/migration"], NO_DB);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe("pgstack: 'no/such/migration' does not exist: pass migration folders or .sql files.");
  });
});
