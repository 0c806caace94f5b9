import { PgstackError } from "../errors";

// libpg-query is PostgreSQL's own parser compiled to WebAssembly: statement
// boundaries are exact, dollar quotes and comments included.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const pgQuery = require("libpg-query") as typeof import("libpg-query");

let loaded: Promise<void> | undefined;
export function loadSqlParser(): Promise<void> {
  loaded ??= pgQuery.loadModule();
  return loaded;
}

export interface Statement {
  /** Statement text without its trailing semicolon. */
  sql: string;
  /** 1-based line in the file where the statement's first token is. */
  line: number;
  /** Character offset in the file where `sql` starts. */
  offset: number;
}

/**
 * Splits a migration file into statements with their line numbers. A syntax
 * error is reported as E_MIGRATION_SYNTAX with the line, before anything runs.
 * Call `loadSqlParser()` once before.
 */
export function splitStatements(sql: string, migrationName: string): Statement[] {
  const bytes = Buffer.from(sql, "utf8");
  let parsed: ReturnType<typeof pgQuery.parseSync>;
  try {
    parsed = pgQuery.parseSync(sql);
  } catch (err) {
    const details = (err as { sqlDetails?: { cursorPosition?: number; message?: string } }).sqlDetails;
    // Without parser details this is not the SQL's fault (e.g. the parser was never loaded).
    if (!details) throw err;
    const charOffset = details?.cursorPosition !== undefined ? byteToCharOffset(bytes, details.cursorPosition) : 0;
    const line = lineAt(sql, charOffset);
    const message = details?.message ?? (err as Error).message;
    throw new PgstackError(
      "E_MIGRATION_SYNTAX",
      `Migration ${migrationName} has a SQL syntax error at line ${line}: ${message}; fix migration.sql and run again.`,
      { migration: migrationName, line, error: message },
    );
  }
  const statements: Statement[] = [];
  for (const stmt of parsed.stmts ?? []) {
    const startByte = stmt.stmt_location ?? 0;
    const endByte = stmt.stmt_len ? startByte + stmt.stmt_len : bytes.length;
    const raw = bytes.subarray(startByte, endByte).toString("utf8");
    const lead = leadingTriviaLength(raw);
    const text = raw.slice(lead).trimEnd();
    if (text === "") continue;
    const offset = byteToCharOffset(bytes, startByte) + lead;
    statements.push({ sql: text, offset, line: lineAt(sql, offset) });
  }
  return statements;
}

/**
 * True for BEGIN, COMMIT, ROLLBACK, SAVEPOINT and the like: statements that
 * end or nest the transaction a migration runs in. (`sql` starts at the
 * statement's first token, as `splitStatements` returns it.)
 */
export function isTransactionControl(statement: Statement): boolean {
  return /^(begin|start\s+transaction|commit|end|rollback|abort|savepoint|release|prepare\s+transaction)\b/i.test(statement.sql);
}

/** 1-based line of a character offset. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** Line in the file of a server error position (1-based, inside `statement`). */
export function errorLine(file: string, statement: Statement, position: number | undefined): number {
  if (!position) return statement.line;
  return lineAt(file, statement.offset + position - 1);
}

function byteToCharOffset(bytes: Buffer, byteOffset: number): number {
  return bytes.subarray(0, byteOffset).toString("utf8").length;
}

/** Whitespace and comments before a statement's first token. */
function leadingTriviaLength(text: string): number {
  let i = 0;
  for (;;) {
    while (i < text.length && /\s/.test(text[i])) i++;
    if (text.startsWith("--", i)) {
      const nl = text.indexOf("\n", i);
      i = nl === -1 ? text.length : nl + 1;
    } else if (text.startsWith("/*", i)) {
      const end = text.indexOf("*/", i + 2);
      i = end === -1 ? text.length : end + 2;
    } else {
      return i;
    }
  }
}
