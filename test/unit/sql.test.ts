import { errorLine, loadSqlParser, splitStatements } from "../../infra/core/migrations/sql";

beforeAll(() => loadSqlParser());

describe("splitStatements", () => {
  it("splits on statement boundaries the way PostgreSQL parses them, with each statement's line", () => {
    const sql = [
      "-- CreateEnum",
      "CREATE TYPE \"Role\" AS ENUM ('OWNER', 'MEMBER');",
      "",
      "/* a function with semicolons inside dollar quotes */",
      "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; $$ LANGUAGE sql;",
      "INSERT INTO t VALUES (';'), ('é');",
      "UPDATE t SET a = 'ü' WHERE a = ';'",
    ].join("\n");
    const statements = splitStatements(sql, "m");
    expect(statements.map((s) => s.line)).toEqual([2, 5, 6, 7]);
    expect(statements[1].sql).toBe("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; $$ LANGUAGE sql");
    expect(statements[2].sql).toBe("INSERT INTO t VALUES (';'), ('é')");
    expect(statements[3].sql).toBe("UPDATE t SET a = 'ü' WHERE a = ';'");
  });

  it("reports a syntax error with its line before anything runs", () => {
    expect(() => splitStatements("SELECT 1;\n\nCREATE TABL x (a int);\n", "20250101000000_bad")).toThrow(
      'Migration 20250101000000_bad has a SQL syntax error at line 3: syntax error at or near "TABL"; fix migration.sql and run again.',
    );
  });

  it("maps a server error position inside a statement to the file's line", () => {
    const sql = "SELECT 1;\nINSERT INTO t\n  VALUES (missing_column);\n";
    const [, insert] = splitStatements(sql, "m");
    expect(insert.line).toBe(2);
    const position = insert.sql.indexOf("missing_column") + 1;
    expect(errorLine(sql, insert, position)).toBe(3);
    expect(errorLine(sql, insert, undefined)).toBe(2);
  });
});

describe("splitStatements on large files", () => {
  it("does work linear in the file's size (60,000 statements: each character looked at a bounded number of times)", () => {
    // Issue 10: lines and offsets were recounted from the start of the file for
    // every statement (quadratic: 20 minutes for a 5 MB file).
    const count = 60_000;
    const lines: string[] = [];
    for (let i = 0; i < count; i++) lines.push(`INSERT INTO "t" ("id", "name") VALUES (${i}, 'row ${i} é');`);
    const sql = lines.join("\n") + "\n";
    const stats = { charsScanned: 0 };
    const statements = splitStatements(sql, "big", stats);
    expect(statements).toHaveLength(count);
    expect(statements[count - 1].line).toBe(count);
    expect(sql.slice(statements[count - 1].offset, statements[count - 1].offset + 11)).toBe('INSERT INTO');
    expect(stats.charsScanned).toBeLessThanOrEqual(2 * sql.length);
  });
});

describe("statement kinds", () => {
  it("marks statements PostgreSQL refuses in a transaction block, and transaction control", () => {
    const kinds = splitStatements(
      [
        "CREATE INDEX CONCURRENTLY i ON t (a);",
        "CREATE INDEX j ON t (a);",
        "DROP INDEX CONCURRENTLY i;",
        "REINDEX INDEX CONCURRENTLY i;",
        "VACUUM t;",
        "ANALYZE t;",
        "ALTER SYSTEM SET work_mem = '8MB';",
        "ALTER TABLE p DETACH PARTITION c CONCURRENTLY;",
        "BEGIN;",
        "COMMIT;",
        "ROLLBACK;",
      ].join("\n"),
      "m",
    ).map((s) => s.kind);
    expect(kinds).toEqual([
      "no-transaction-block",
      "plain",
      "no-transaction-block",
      "no-transaction-block",
      "no-transaction-block",
      "plain",
      "no-transaction-block",
      "no-transaction-block",
      "transaction-control",
      "transaction-control",
      "transaction-control",
    ]);
    expect(splitStatements('CREATE INDEX CONCURRENTLY IF NOT EXISTS "i" ON "s"."t" (a);', "m")[0].concurrentIndex).toEqual({ name: "i", schema: "s" });
  });
});
