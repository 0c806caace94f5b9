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

/**
 * What a statement needs from the transaction around it:
 * - `transaction-control`: BEGIN, COMMIT, ROLLBACK, SAVEPOINT... (the file manages its own transactions);
 * - `no-transaction-block`: PostgreSQL refuses it inside a transaction block (CONCURRENTLY index
 *   builds and drops, REINDEX CONCURRENTLY, VACUUM, ALTER SYSTEM, CREATE/DROP DATABASE...);
 * - `plain`: anything else.
 */
export type StatementKind = "transaction-control" | "no-transaction-block" | "plain";

export interface Statement {
  /** Statement text without its trailing semicolon. */
  sql: string;
  /** 1-based line in the file where the statement's first token is. */
  line: number;
  /** Character offset in the file where `sql` starts. */
  offset: number;
  kind: StatementKind;
  /** For `CREATE INDEX CONCURRENTLY`: the index it builds (an interrupted build leaves it INVALID). */
  concurrentIndex?: { name: string; schema?: string };
}

/** Work counters of one `splitStatements` call, for the test that proves it linear. */
export interface SplitStats {
  /** Characters examined to turn byte offsets into character offsets and lines. */
  charsScanned: number;
}

/**
 * Splits a migration file into statements with their line numbers. A syntax
 * error is reported as E_MIGRATION_SYNTAX with the line, before anything runs.
 * Call `loadSqlParser()` once before. Linear in the file's size: offsets and
 * lines are advanced from one statement to the next, never recounted from the
 * start of the file.
 */
export function splitStatements(sql: string, migrationName: string, stats?: SplitStats): Statement[] {
  return parseStatements(sql, migrationName, stats).map((p) => p.statement);
}

/** `splitStatements` with each statement's parse tree (PostgreSQL's own), from the same single parse. */
export function parseStatements(sql: string, migrationName: string, stats?: SplitStats): { statement: Statement; node: Record<string, unknown> }[] {
  // Only whitespace and comments: no statement (the parser refuses an empty query).
  if (leadingTriviaLength(sql) === sql.length) return [];
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
  const cursor = new TextCursor(sql, bytes, stats);
  const statements: { statement: Statement; node: Record<string, unknown> }[] = [];
  for (const stmt of parsed.stmts ?? []) {
    const startByte = stmt.stmt_location ?? 0;
    const endByte = stmt.stmt_len ? startByte + stmt.stmt_len : bytes.length;
    const raw = bytes.subarray(startByte, endByte).toString("utf8");
    const lead = leadingTriviaLength(raw);
    const text = raw.slice(lead).trimEnd();
    if (text === "") continue;
    const { offset, line } = cursor.advanceTo(startByte, lead);
    const node = (stmt.stmt ?? {}) as Record<string, unknown>;
    statements.push({ statement: { sql: text, offset, line, kind: kindOf(node), concurrentIndex: concurrentIndexOf(node) }, node });
  }
  return statements;
}

/** Moves forward through the file once, turning byte offsets into character offsets and lines. */
class TextCursor {
  private byte = 0;
  private char = 0;
  private line = 1;
  constructor(
    private readonly text: string,
    private readonly bytes: Buffer,
    private readonly stats?: SplitStats,
  ) {}

  /** Offset and line of the character `extraChars` after byte `byteOffset` (never before the last call's). */
  advanceTo(byteOffset: number, extraChars: number): { offset: number; line: number } {
    // Statements come in file order, so the gap is decoded once.
    const gap = this.bytes.subarray(this.byte, byteOffset).toString("utf8");
    this.count(gap);
    this.byte = byteOffset;
    this.char += gap.length;
    const lead = this.text.slice(this.char, this.char + extraChars);
    let line = this.line;
    for (let i = 0; i < lead.length; i++) if (lead.charCodeAt(i) === 10) line++;
    if (this.stats) this.stats.charsScanned += lead.length;
    return { offset: this.char + extraChars, line };
  }

  private count(chunk: string): void {
    for (let i = 0; i < chunk.length; i++) if (chunk.charCodeAt(i) === 10) this.line++;
    if (this.stats) this.stats.charsScanned += chunk.length;
  }
}

/** Statements PostgreSQL refuses inside a transaction block (PreventInTransactionBlock callers). */
function kindOf(node: Record<string, unknown>): StatementKind {
  const [type] = Object.keys(node);
  const body = (node[type] ?? {}) as Record<string, unknown>;
  switch (type) {
    case "TransactionStmt":
      return "transaction-control";
    case "IndexStmt":
    case "DropStmt":
      return body.concurrent ? "no-transaction-block" : "plain";
    case "ReindexStmt":
      return hasOption(body.params, "concurrently") || body.kind === "REINDEX_OBJECT_SYSTEM" || body.kind === "REINDEX_OBJECT_DATABASE"
        ? "no-transaction-block"
        : "plain";
    case "VacuumStmt":
      // ANALYZE alone may run in a transaction; VACUUM may not.
      return body.is_vacuumcmd ? "no-transaction-block" : "plain";
    case "AlterTableStmt":
      return JSON.stringify(body.cmds ?? []).includes('"concurrent":true') ? "no-transaction-block" : "plain";
    case "AlterSystemStmt":
    case "CreatedbStmt":
    case "DropdbStmt":
    case "CreateTableSpaceStmt":
    case "DropTableSpaceStmt":
    case "CreateSubscriptionStmt":
    case "DropSubscriptionStmt":
      return "no-transaction-block";
    case "ClusterStmt":
      return body.relation ? "plain" : "no-transaction-block";
    default:
      return "plain";
  }
}

function hasOption(params: unknown, name: string): boolean {
  return Array.isArray(params) && params.some((p) => (p as { DefElem?: { defname?: string } }).DefElem?.defname === name);
}

function concurrentIndexOf(node: Record<string, unknown>): Statement["concurrentIndex"] {
  const index = node.IndexStmt as { concurrent?: boolean; idxname?: string; relation?: { schemaname?: string } } | undefined;
  if (!index?.concurrent || !index.idxname) return undefined;
  // An index lives in its table's schema.
  return { name: index.idxname, schema: index.relation?.schemaname };
}

/**
 * True for BEGIN, COMMIT, ROLLBACK, SAVEPOINT and the like: statements that
 * end or nest the transaction a migration runs in.
 */
export function isTransactionControl(statement: Statement): boolean {
  return statement.kind === "transaction-control";
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
