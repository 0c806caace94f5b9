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
