import type { Node, RangeVar } from "libpg-query";
import { loadSqlParser } from "../migrations/sql";

// The same WebAssembly build of PostgreSQL's parser that splits statements
// for the runner: what lint reads is exactly what will run.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const pgQuery = require("libpg-query") as typeof import("libpg-query");

export { loadSqlParser };

export interface Token {
  /** Byte offsets in the file. */
  start: number;
  end: number;
  text: string;
  comment: boolean;
  keyword: string;
}

/** A relation or index a statement acts on; schema absent when unqualified. */
export interface ObjectName {
  schema?: string;
  name: string;
}

export interface ParsedStatement {
  node: Node;
  /** Byte offset of its first token, and of its end (semicolon excluded). */
  start: number;
  end: number;
  /** Existing-or-not objects it acts on (tables, and indexes for DROP/REINDEX). */
  targets: ObjectName[];
  /** Objects that exist because of this file, up to and including this statement. */
  createdSoFar: ObjectName[];
}

/** A migration file as PostgreSQL parses it, with byte <-> line:column mapping. */
export class SourceFile {
  readonly bytes: Buffer;
  readonly tokens: Token[];
  readonly statements: ParsedStatement[] = [];
  /** Set when PostgreSQL's parser rejects the file. */
  readonly syntaxError?: { message: string; byte: number };
  private readonly lineStarts: number[] = [0];
  private readonly charAt?: Int32Array;

  /** Call `loadSqlParser()` once before. */
  constructor(readonly text: string) {
    this.bytes = Buffer.from(text, "utf8");
    for (let i = 0; i < this.bytes.length; i++) if (this.bytes[i] === 10) this.lineStarts.push(i + 1);
    if (this.bytes.length !== text.length) this.charAt = charOffsets(text, this.bytes.length);
    this.tokens = scan(text);
    // Only comments and whitespace: no statement (PostgreSQL runs it as an empty query; the parser refuses it).
    if (this.tokens.every((t) => t.comment)) return;
    try {
      const parsed = pgQuery.parseSync(text);
      this.statements = statementsOf(parsed.stmts ?? [], this.tokens, this.bytes.length);
    } catch (err) {
      const details = (err as { sqlDetails?: { cursorPosition?: number; message?: string } }).sqlDetails;
      this.syntaxError = { message: details?.message ?? (err as Error).message, byte: details?.cursorPosition ?? 0 };
    }
  }

  /** 1-based line and character column of a byte offset. */
  position(byte: number): { line: number; column: number } {
    const clamped = Math.max(0, Math.min(byte, this.bytes.length));
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid] <= clamped) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: this.char(clamped) - this.char(this.lineStarts[lo]) + 1 };
  }

  /** Byte offset of a 0-based line and 0-based byte column (Squawk's JSON positions). */
  byteAt(line0: number, byteColumn: number): number {
    const start = this.lineStarts[Math.max(0, Math.min(line0, this.lineStarts.length - 1))];
    return Math.min(start + Math.max(0, byteColumn), this.bytes.length);
  }

  /** The statement a byte offset belongs to: from its first token to the next statement. */
  statementAt(byte: number): ParsedStatement | undefined {
    let found: ParsedStatement | undefined;
    for (const s of this.statements) {
      if (s.start <= byte) found = s;
      else break;
    }
    return found;
  }

  /** Lines (1-based) holding nothing but comments: what a `-- pgstack:allow` may sit on. */
  commentOnlyLines(): Set<number> {
    const code = new Set<number>();
    const comment = new Set<number>();
    for (const t of this.tokens) {
      const first = this.position(t.start).line;
      const last = this.position(Math.max(t.start, t.end - 1)).line;
      for (let l = first; l <= last; l++) (t.comment ? comment : code).add(l);
    }
    return new Set([...comment].filter((l) => !code.has(l)));
  }

  private char(byte: number): number {
    return this.charAt ? this.charAt[byte] : byte;
  }
}

function charOffsets(text: string, byteLength: number): Int32Array {
  const map = new Int32Array(byteLength + 1);
  let byte = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.codePointAt(i)!;
    const size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    for (let k = 0; k < size; k++) map[byte + k] = i;
    byte += size;
    if (code >= 0x10000) i++; // surrogate pair: two UTF-16 units
  }
  map[byteLength] = text.length;
  return map;
}

function scan(text: string): Token[] {
  try {
    return pgQuery.scanSync(text).tokens.map((t) => ({
      start: t.start,
      end: t.end,
      text: t.text,
      comment: t.tokenName === "SQL_COMMENT" || t.tokenName === "C_COMMENT",
      keyword: t.keywordKind !== 0 ? t.text.toUpperCase() : "",
    }));
  } catch {
    // The scanner gives up on an unterminated string or comment; the parser
    // then reports the syntax error, which is what matters.
    return [];
  }
}

type RawStatement = { stmt?: Node; stmt_location?: number; stmt_len?: number };

function statementsOf(raw: RawStatement[], tokens: Token[], length: number): ParsedStatement[] {
  const created: ObjectName[] = [];
  let createdSoFar: ObjectName[] = [];
  const result: ParsedStatement[] = [];
  // Statements come in file order, so one cursor walks the tokens once for the
  // whole file (a search from the start per statement was quadratic).
  let next = 0;
  for (const s of raw) {
    if (!s.stmt) continue;
    const location = s.stmt_location ?? 0;
    const end = s.stmt_len ? location + s.stmt_len : length;
    // stmt_location may point at comments before the statement; its first
    // real token is where people (and Squawk) say it starts.
    while (next < tokens.length && tokens[next].start < location) next++;
    let t = next;
    while (t < tokens.length && tokens[t].start < end && tokens[t].comment) t++;
    const first = t < tokens.length && tokens[t].start < end && !tokens[t].comment ? tokens[t] : undefined;
    const made = createdBy(s.stmt);
    // Shared until a statement creates something: copying it per statement was quadratic too.
    if (made.length > 0) {
      created.push(...made);
      createdSoFar = [...created];
    }
    result.push({ node: s.stmt, start: first?.start ?? location, end, targets: targetsOf(s.stmt), createdSoFar });
  }
  return result;
}

function nameOf(rv: RangeVar | undefined): ObjectName[] {
  if (!rv?.relname) return [];
  return [{ schema: rv.schemaname || undefined, name: rv.relname }];
}

/** `DROP TABLE a.b` / `DROP INDEX i`: each object is a list of name parts. */
function dropNames(objects: Node[] | undefined): ObjectName[] {
  const names: ObjectName[] = [];
  for (const o of objects ?? []) {
    const parts = ("List" in o ? (o.List.items ?? []) : [])
      .map((i) => ("String" in i ? i.String.sval : undefined))
      .filter((p): p is string => typeof p === "string");
    if (parts.length === 0) continue;
    names.push({ name: parts[parts.length - 1], schema: parts.length > 1 ? parts[parts.length - 2] : undefined });
  }
  return names;
}

function createdBy(node: Node): ObjectName[] {
  // IF NOT EXISTS may meet an existing table: it is not known to be new.
  if ("CreateStmt" in node) return node.CreateStmt.if_not_exists ? [] : nameOf(node.CreateStmt.relation);
  if ("CreateTableAsStmt" in node) return node.CreateTableAsStmt.if_not_exists ? [] : nameOf(node.CreateTableAsStmt.into?.rel);
  if ("IndexStmt" in node) {
    const idx = node.IndexStmt;
    return idx.idxname && !idx.if_not_exists ? [{ name: idx.idxname, schema: idx.relation?.schemaname || undefined }] : [];
  }
  return [];
}

function targetsOf(node: Node): ObjectName[] {
  if ("CreateStmt" in node) return nameOf(node.CreateStmt.relation);
  if ("IndexStmt" in node) return nameOf(node.IndexStmt.relation);
  if ("AlterTableStmt" in node) return nameOf(node.AlterTableStmt.relation);
  if ("RenameStmt" in node) return nameOf(node.RenameStmt.relation);
  if ("TruncateStmt" in node) return (node.TruncateStmt.relations ?? []).flatMap((r) => ("RangeVar" in r ? nameOf(r.RangeVar) : []));
  if ("DeleteStmt" in node) return nameOf(node.DeleteStmt.relation);
  if ("UpdateStmt" in node) return nameOf(node.UpdateStmt.relation);
  if ("LockStmt" in node) return (node.LockStmt.relations ?? []).flatMap((r) => ("RangeVar" in r ? nameOf(r.RangeVar) : []));
  if ("ReindexStmt" in node) return nameOf(node.ReindexStmt.relation);
  if ("DropStmt" in node) {
    const kind = node.DropStmt.removeType;
    return kind === "OBJECT_TABLE" || kind === "OBJECT_INDEX" ? dropNames(node.DropStmt.objects) : [];
  }
  return [];
}

export function sameObject(a: ObjectName, b: ObjectName): boolean {
  return a.name === b.name && (a.schema === undefined || b.schema === undefined || a.schema === b.schema);
}

/** True when every object the statement acts on was created earlier in this same file. */
export function onlyNewObjects(statement: ParsedStatement): boolean {
  return statement.targets.length > 0 && statement.targets.every((t) => statement.createdSoFar.some((c) => sameObject(c, t)));
}

/** Every node under `node` (itself included) of the given type, e.g. nested DELETEs in a WITH. */
export function findNodes<K extends string>(node: unknown, type: K): { value: Record<string, unknown>; path: string[] }[] {
  const found: { value: Record<string, unknown>; path: string[] }[] = [];
  const walk = (value: unknown, path: string[]) => {
    if (Array.isArray(value)) {
      for (const v of value) walk(v, path);
    } else if (value && typeof value === "object") {
      for (const [key, child] of Object.entries(value)) {
        if (key === type && child && typeof child === "object") found.push({ value: child as Record<string, unknown>, path });
        walk(child, [...path, key]);
      }
    }
  };
  walk(node, []);
  return found;
}
