import type { Node } from "libpg-query";
import { isPgstackError } from "../errors";
import { findNodes } from "../lint/source";
import { loadSqlParser, parseStatements, type Statement } from "../migrations/sql";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const pgQuery = require("libpg-query") as typeof import("libpg-query");

/**
 * Whether a migration keeps the application version now running working
 * (`expand`) or can make it fail (`contract`), read from PostgreSQL's own
 * parse tree. The rules, one id each, are COMPAT_RULES below and the table
 * "Expand and contract" in README.md.
 */
export type Compatibility = "expand" | "contract";

export interface CompatibilityReason {
  /** The statement's first line, trimmed. */
  statement: string;
  /** 1-based line of the statement's first token (as lint reports it). */
  line: number;
  /** A stable id from COMPAT_RULES. */
  rule: string;
  /** One sentence. */
  reason: string;
}

export interface MigrationCompatibility {
  /** "contract" when any statement breaks the running version. */
  compatibility: Compatibility;
  /** One per breaking action, in file order (a statement with two breaking actions gives two, same line); empty for expand. */
  reasons: CompatibilityReason[];
  /** The text of a `-- pgstack:allow-contract <why>` comment, if present. */
  acknowledged?: string;
  /**
   * The text of a `-- pgstack:expand <why>` comment, if present: the author declares the migration safe for the
   * running version, so it is `expand` (runs in the expand phase); `reasons` still lists what pgstack found.
   */
  declaredExpand?: string;
}

export const ALLOW_CONTRACT_PREFIX = "pgstack:allow-contract";
export const DECLARE_EXPAND_PREFIX = "pgstack:expand";

/** Every contract rule: what breaks the version now running. */
export const COMPAT_RULES: Record<string, string> = {
  "drop-table": "DROP TABLE (or materialized view, foreign table): the running version's queries on it fail.",
  "drop-column": "DROP COLUMN: the running version still selects and writes it.",
  "drop-object": "DROP of a view, function, procedure, schema or extension (a function created again by the same migration with the same name and argument types excepted, like CREATE OR REPLACE; a view created again is not, its columns may differ), or of a type, domain or sequence with CASCADE: the running version may use it.",
  "drop-unique-index": "DROP INDEX of an index not named as a plain one (Prisma: *_idx, *_index; also idx_*): a unique index may be what an upsert (INSERT ... ON CONFLICT) of the running version needs.",
  "drop-constraint": "DROP CONSTRAINT not named as a foreign key or check (Prisma: *_fkey, *_check): a primary key or unique constraint may be what an upsert (ON CONFLICT) needs.",
  "rename-table": "RENAME of a table, view or materialized view: the running version uses the old name.",
  "rename-column": "RENAME COLUMN: the running version uses the old name.",
  "rename-type": "RENAME of a type, domain, function, schema (or SET SCHEMA): Prisma casts enum parameters to the type by name; the running version uses the old name.",
  "rename-enum-value": "ALTER TYPE ... RENAME VALUE: the running version still writes and compares the old value.",
  "change-column-type": "ALTER COLUMN ... TYPE: the running version reads and writes the old type.",
  "enum-value-removal": "ALTER COLUMN ... TYPE to an enum this migration creates (Prisma's way to remove enum values): the running version may write a removed value.",
  "set-not-null": "SET NOT NULL (or ADD CONSTRAINT ... NOT NULL, PostgreSQL 18): the running version may write NULL or leave the column out.",
  "add-required-column": "ADD COLUMN NOT NULL without a default (or SET NOT NULL on a new column without one; DEFAULT NULL is none): the running version's inserts leave it out and fail.",
  "drop-default": "DROP DEFAULT, SET DEFAULT NULL or DROP IDENTITY on a NOT NULL or existing column: the running version's inserts may rely on the default.",
  "generated-always": "SET GENERATED ALWAYS, or ADD GENERATED ALWAYS AS IDENTITY, on an existing column: the running version's inserts that give a value are refused.",
  "reset-sequence": "ALTER SEQUENCE ... RESTART / INCREMENT / MINVALUE / MAXVALUE / CYCLE, or setval(), on a sequence this migration did not create: the running version's next inserts may take ids that exist.",
  "add-unique": "A UNIQUE constraint or unique index on existing columns (or on new ones with a default, or NULLS NOT DISTINCT): the running version's writes can violate it.",
  "add-primary-key": "A PRIMARY KEY on existing columns (or new ones without a generated default): the running version's writes can violate it.",
  "add-check": "A CHECK constraint on existing columns, NOT VALID or not (NOT VALID only skips existing rows; new writes are checked), or on new columns unless they have no default and the expression is NULL when they are (pgstack does not evaluate a default against it), or ALTER CONSTRAINT ... ENFORCED: the running version's writes can violate it.",
  "add-exclude": "An EXCLUDE constraint on an existing table: the running version's writes can violate it.",
  "add-foreign-key": "A FOREIGN KEY on existing columns (or new ones with a default), NOT VALID or not (new writes are checked either way), unless it re-creates one of the same name dropped earlier in the migration with ON DELETE and ON UPDATE both CASCADE or SET NULL (the old actions may have been more lenient: Cascade -> Restrict makes the running version's deletes fail): the running version's writes can violate it.",
  "delete-all-rows": "TRUNCATE, or DELETE without WHERE or with a WHERE that reads no column (WHERE true), also in a WITH, of an existing table: the running version's data disappears under it.",
  "revoke": "REVOKE, or OWNER TO on an existing object (the old owner, often the role the running version connects as, loses its privileges): the running version may need the privilege.",
  "row-security": "ENABLE/FORCE ROW LEVEL SECURITY, a restrictive policy, or DROP/ALTER POLICY: rows the running version sees can disappear.",
  "detach-partition": "DETACH PARTITION or NO INHERIT: the partition's rows disappear from the table the running version queries.",
  "alter-domain": "ALTER DOMAIN ADD CONSTRAINT / SET NOT NULL / DROP DEFAULT: the running version's writes can violate it.",
  "unknown-statement": "A statement pgstack does not classify (an unlisted statement or ALTER TABLE action, a DO block that EXECUTEs a string it builds, or a call of a function this migration defines whose body it cannot read): assumed to break the running version. A DO block's statements, and the body of a function this migration defines once it is called (SELECT, CALL, a trigger), are classified in the order they run.",
};

type ColumnState = { notNull: boolean; hasDefault: boolean; uniqueDefault: boolean };

interface Name {
  schema?: string;
  name: string;
}

/** What this migration has created so far: acting on those cannot break the running version. */
class Created {
  /** Where an unqualified name resolves: public, unless the file SETs search_path. */
  defaultSchema = "public";
  private readonly objects: { kind: string; name: Required<Name> }[] = [];
  /** Columns added to tables that existed before, by schema-qualified table name. */
  private readonly columns = new Map<string, Map<string, ColumnState>>();
  /** Constraints dropped, by schema-qualified table and name: re-adding a foreign key so is compared by its actions. */
  readonly droppedConstraints = new Set<string>();
  readonly enumTypes: Required<Name>[] = [];
  /** Existing objects renamed by this migration, under their new name: the rename was the break. */
  readonly renamedAway: { kind: string; name: Required<Name> }[] = [];
  /** Existing functions dropped, by schema-qualified name and argument types: created again with the same ones withdraws the drop. */
  readonly droppedObjects = new Map<string, Break>();
  /** DROP DEFAULT on an existing column, by qualified "table.column": a later SET DEFAULT in the migration withdraws it. */
  readonly droppedDefaults = new Map<string, Break>();
  /** Functions and procedures this migration defines (CREATE or CREATE OR REPLACE), by qualified name: a call runs their body. */
  readonly bodies = new Map<string, { text: string; body: Rec }[]>();
  /** Bodies being classified (a function calling itself). */
  readonly calling = new Set<string>();

  q(name: Name): Required<Name> {
    return { name: name.name, schema: name.schema ?? this.defaultSchema };
  }
  key(name: Name): string {
    const n = this.q(name);
    return `${n.schema}.${n.name}`;
  }
  add(kind: string, name: Name | undefined): void {
    if (name) this.objects.push({ kind, name: this.q(name) });
  }
  has(kind: string, name: Name | undefined): boolean {
    return Boolean(name) && this.objects.some((o) => o.kind === kind && same(o.name, this.q(name!)));
  }
  rename(kind: string, from: Name, to: string): void {
    const f = this.q(from);
    for (const o of this.objects) if (o.kind === kind && same(o.name, f)) o.name = { schema: o.name.schema, name: to };
    if (kind === "table") {
      const cols = this.columns.get(this.key(f));
      if (cols) {
        this.columns.delete(this.key(f));
        this.columns.set(this.key({ schema: f.schema, name: to }), cols);
      }
    }
  }
  remove(kind: string, name: Name): void {
    const n = this.q(name);
    const i = this.objects.findIndex((o) => o.kind === kind && same(o.name, n));
    if (i >= 0) this.objects.splice(i, 1);
  }
  addColumn(table: Name, column: string, state: ColumnState): void {
    let cols = this.columns.get(this.key(table));
    if (!cols) this.columns.set(this.key(table), (cols = new Map()));
    cols.set(column, state);
  }
  column(table: Name, column: string | undefined): ColumnState | undefined {
    return column === undefined ? undefined : this.columns.get(this.key(table))?.get(column);
  }
  renameColumn(table: Name, from: string, to: string): void {
    const cols = this.columns.get(this.key(table));
    const state = cols?.get(from);
    if (cols && state) {
      cols.delete(from);
      cols.set(to, state);
    }
  }
  isEnum(name: Name): boolean {
    const n = this.q(name);
    return this.enumTypes.some((e) => same(e, n));
  }
}

/** Both names resolved (schema-qualified). */
function same(a: Required<Name>, b: Required<Name>): boolean {
  return a.name === b.name && a.schema === b.schema;
}

/** One breaking action: its rule and sentence. */
interface Break {
  rule: string;
  reason: string;
  /** Withdrawn by a later statement of the same migration (a default dropped, then set again). */
  withdrawn?: boolean;
}

/**
 * Classifies one migration.sql. Never throws for what the file holds: a file
 * PostgreSQL's parser rejects is `contract` (unknown-statement) at the error's
 * line; lint (invalid-sql) and the runner refuse it anyway. One parse of the
 * file, shared with the runner's statement splitting (lines as lint reports them).
 */
export async function classifyMigration(sql: string): Promise<MigrationCompatibility> {
  await loadSqlParser();
  let parsed: ReturnType<typeof parseStatements>;
  try {
    parsed = parseStatements(sql, "migration.sql");
  } catch (err) {
    if (!isPgstackError(err) || err.code !== "E_MIGRATION_SYNTAX") throw err;
    const line = Number(err.details.line ?? 1);
    const reason: CompatibilityReason = {
      statement: (sql.split(/\r?\n/)[line - 1] ?? "").trim(),
      line,
      rule: "unknown-statement",
      reason: `PostgreSQL's parser rejects this file at line ${line} (${String(err.details.error ?? "syntax error")}), so pgstack cannot tell what it changes.`,
    };
    // A declared expand does not cover a file pgstack cannot read at all (the runner refuses it anyway).
    const acknowledged = commentReason(ALLOW_CONTRACT_LINE, sql, []);
    return { compatibility: "contract", reasons: [reason], ...(acknowledged ? { acknowledged } : {}) };
  }
  const created = new Created();
  const perStatement = parsed.map(({ statement, node }) => ({
    statement,
    breaks: classifyStatement(node as unknown as Node, created, () => statement.sql),
  }));
  const reasons: CompatibilityReason[] = [];
  // One reason per breaking action: `ALTER TABLE t DROP CONSTRAINT c, ALTER COLUMN x TYPE ...` gives two, same line.
  for (const { statement, breaks } of perStatement) {
    for (const b of breaks.filter((x) => !x.withdrawn)) {
      reasons.push({ statement: statement.sql.split(/\r?\n/)[0].trim(), line: statement.line, rule: b.rule, reason: b.reason });
    }
  }
  const statements = parsed.map((p) => p.statement);
  const acknowledged = commentReason(ALLOW_CONTRACT_LINE, sql, statements);
  const declaredExpand = commentReason(DECLARE_EXPAND_LINE, sql, statements);
  return {
    compatibility: reasons.length > 0 && !declaredExpand ? "contract" : "expand",
    reasons,
    ...(acknowledged ? { acknowledged } : {}),
    ...(declaredExpand ? { declaredExpand } : {}),
  };
}

const ALLOW_CONTRACT_LINE = /^[ \t]*--[ \t]*pgstack:allow-contract(?:[ \t]+([^\r\n]*))?[ \t]*\r?$/gm;
const DECLARE_EXPAND_LINE = /^[ \t]*--[ \t]*pgstack:expand(?:[ \t]+([^\r\n]*))?[ \t]*\r?$/gm;

/**
 * The reasons of every such line, `-- pgstack:allow-contract <why>` or
 * `-- pgstack:expand <why>` (one without a reason counts for nothing), joined.
 * Between statements a line starting with `--` is a comment; inside one (a
 * string or a function body) it is checked with PostgreSQL's scanner.
 */
function commentReason(pattern: RegExp, sql: string, statements: Statement[]): string | undefined {
  const whys: string[] = [];
  for (const match of sql.matchAll(pattern)) {
    const why = (match[1] ?? "").trim();
    if (!why) continue;
    const at = match.index! + match[0].indexOf("--");
    const inside = statements.find((st) => st.offset <= at && at < st.offset + st.sql.length);
    if (inside && !isCommentAt(inside.sql, at - inside.offset)) continue;
    whys.push(why);
  }
  return whys.length > 0 ? whys.join("; ") : undefined;
}

function isCommentAt(text: string, charOffset: number): boolean {
  const byte = Buffer.byteLength(text.slice(0, charOffset), "utf8");
  try {
    return pgQuery.scanSync(text).tokens.some((t) => t.start === byte && t.tokenName === "SQL_COMMENT");
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------

type Rec = Record<string, unknown>;

function rangeName(rv: unknown): Name | undefined {
  const r = rv as { relname?: string; schemaname?: string } | undefined;
  return r?.relname ? { name: r.relname, schema: r.schemaname || undefined } : undefined;
}

/** A list of String nodes (["schema", "name"]) as a name. */
function listName(items: unknown): Name | undefined {
  const parts = ((items as Node[] | undefined) ?? [])
    .map((i) => ("String" in i ? i.String.sval : undefined))
    .filter((p): p is string => typeof p === "string");
  if (parts.length === 0) return undefined;
  return { name: parts[parts.length - 1], schema: parts.length > 1 ? parts[parts.length - 2] : undefined };
}

/** The name of one object of a DROP: List, TypeName, ObjectWithArgs or String. */
function objectName(o: unknown): Name | undefined {
  const n = o as Rec;
  if (n.List) return listName((n.List as Rec).items);
  if (n.TypeName) return listName((n.TypeName as Rec).names);
  if (n.ObjectWithArgs) return listName((n.ObjectWithArgs as Rec).objname);
  if (n.String) return { name: String((n.String as Rec).sval) };
  return undefined;
}

const show = (n: Name | undefined) => (n ? `"${n.schema ? `${n.schema}.` : ""}${n.name}"` : "the object");

/** Object kinds by DropStmt.removeType / RenameStmt.renameType / ObjectType. */
const KIND: Record<string, string> = {
  OBJECT_TABLE: "table",
  OBJECT_MATVIEW: "table",
  OBJECT_FOREIGN_TABLE: "table",
  OBJECT_VIEW: "view",
  OBJECT_TYPE: "type",
  OBJECT_DOMAIN: "type",
  OBJECT_FUNCTION: "function",
  OBJECT_PROCEDURE: "function",
  OBJECT_ROUTINE: "function",
  OBJECT_AGGREGATE: "function",
  OBJECT_SEQUENCE: "sequence",
  OBJECT_SCHEMA: "schema",
  OBJECT_EXTENSION: "extension",
  OBJECT_INDEX: "index",
};

/** Default expressions that give each row a different value (so a UNIQUE/PRIMARY KEY on them holds). */
const UNIQUE_DEFAULTS = new Set(["nextval", "gen_random_uuid", "uuid_generate_v4", "uuid_generate_v1", "uuid_generate_v1mc", "uuidv4", "uuidv7"]);

function columnDefState(def: Rec): ColumnState {
  const constraints = ((def.constraints as Node[] | undefined) ?? []).map((c) => (c as { Constraint?: Rec }).Constraint ?? {});
  const typeName = listName((def.typeName as Rec | undefined)?.names)?.name.toLowerCase() ?? "";
  const serial = ["serial", "bigserial", "smallserial", "serial4", "serial8", "serial2"].includes(typeName);
  const identity = constraints.some((c) => c.contype === "CONSTR_IDENTITY");
  const generated = constraints.some((c) => c.contype === "CONSTR_GENERATED");
  // DEFAULT NULL is no default: the running version's inserts that leave the column out write NULL.
  const dflt = constraints.find((c) => c.contype === "CONSTR_DEFAULT" && !isNull(c.raw_expr));
  const uniqueDefault = serial || identity || (dflt !== undefined && isUniqueDefault(dflt.raw_expr));
  return {
    notNull: serial || identity || constraints.some((c) => c.contype === "CONSTR_NOTNULL" || c.contype === "CONSTR_PRIMARY"),
    hasDefault: serial || identity || generated || dflt !== undefined,
    uniqueDefault,
  };
}

/** NULL, or NULL cast to a type. */
function isNull(expr: unknown): boolean {
  const e = expr as Rec | undefined;
  if (e?.TypeCast) return isNull((e.TypeCast as Rec).arg);
  return Boolean((e?.A_Const as Rec | undefined)?.isnull);
}

function isUniqueDefault(expr: unknown): boolean {
  return findNodes(expr, "FuncCall").some(({ value }) => UNIQUE_DEFAULTS.has(listName(value.funcname)?.name.toLowerCase() ?? ""));
}

/** The breaking actions of one statement, given what the migration created before it (updated). */
function classifyStatement(node: Node, created: Created, text: () => string): Break[] {
  const [type] = Object.keys(node);
  const body = (node as unknown as Record<string, Rec>)[type] ?? {};
  // What runs as the statement runs: functions this migration defines (their body), setval(), a DELETE in a WITH.
  const before = NOT_RUN.has(type) ? [] : [...calls(body, created), ...nestedDeletes(type, body, created)];
  return [...before, ...statementBreaks(type, body, created, text)];
}

/** Statements whose function calls do not run now (a body, a definition, a default for rows to come). */
const NOT_RUN = new Set(["CreateFunctionStmt", "ViewStmt", "CreateStmt", "CreateTrigStmt", "DoStmt", "CommentStmt", "RuleStmt"]);

function statementBreaks(type: string, body: Rec, created: Created, text: () => string): Break[] {
  switch (type) {
    // New objects: the running version does not know them.
    case "CreateStmt": {
      if (!body.if_not_exists) created.add("table", rangeName(body.relation));
      return [];
    }
    case "CreateTableAsStmt": {
      if (!body.if_not_exists) created.add("table", rangeName((body.into as Rec | undefined)?.rel));
      return [];
    }
    case "ViewStmt": {
      // A view dropped and created again is not withdrawn: pgstack cannot compare its columns with the old ones.
      if (!body.replace) created.add("view", rangeName(body.view));
      return [];
    }
    case "CreateSeqStmt": {
      if (!body.if_not_exists) created.add("sequence", rangeName(body.sequence));
      return [];
    }
    case "CreateEnumStmt": {
      const name = listName(body.typeName);
      created.add("type", name);
      if (name) created.enumTypes.push(created.q(name));
      return [];
    }
    case "CompositeTypeStmt":
      created.add("type", rangeName(body.typevar));
      return [];
    case "CreateDomainStmt":
    case "CreateRangeStmt":
      created.add("type", listName(body.domainname ?? body.typeName));
      return [];
    case "CreateFunctionStmt": {
      const name = listName(body.funcname);
      if (!name) return [];
      recreated(created, name, functionArgs(body.parameters));
      if (!body.replace) created.add("function", name);
      const defined = created.bodies.get(created.key(name)) ?? [];
      created.bodies.set(created.key(name), [...defined, { text: text(), body }]);
      return [];
    }
    case "CreateTrigStmt": {
      // The trigger runs its function on the running version's writes (and the migration's own).
      const fn = listName(body.funcname);
      return fn ? callBody(fn, created) : [];
    }
    case "VariableSetStmt":
      // Where this file's unqualified names go from here on (pgstack starts each migration with Prisma's schema).
      if (body.name === "search_path") {
        const first = ((body.args as Node[] | undefined) ?? [])
          .map((a) => (a as { A_Const?: { sval?: { sval?: string } } }).A_Const?.sval?.sval ?? "")
          .find((v) => v !== "$user");
        created.defaultSchema = body.kind === "VAR_SET_VALUE" ? (first ?? "") : "public";
      }
      return [];
    case "AlterSeqStmt": {
      const seq = rangeName(body.sequence);
      if (created.has("sequence", seq)) return [];
      const moved = ((body.options as Node[] | undefined) ?? [])
        .map((o) => String((o as { DefElem?: Rec }).DefElem?.defname ?? ""))
        .filter((d) => !SAFE_SEQUENCE_OPTIONS.has(d));
      return moved.length === 0
        ? []
        : [{ rule: "reset-sequence", reason: `ALTER SEQUENCE ${show(seq)} ${moved.map((d) => d.toUpperCase()).join(", ")}: the running version's next inserts may take ids that exist, or none.` }];
    }
    case "AlterOwnerStmt": {
      const kind = KIND[String(body.objectType)];
      const name = body.objectType === "OBJECT_SCHEMA" ? { name: String((body.object as { String?: Rec } | undefined)?.String?.sval) } : objectName(body.object);
      if (kind && created.has(kind, name)) return [];
      return [{ rule: "revoke", reason: `Giving ${show(name)} to another owner takes its privileges from the role that owned it, which the running version may connect as.` }];
    }
    case "CreateSchemaStmt":
      if (!body.if_not_exists) created.add("schema", { name: String(body.schemaname) });
      return [];
    case "CreateExtensionStmt":
      if (!body.if_not_exists) created.add("extension", { name: String(body.extname) });
      return [];
    case "IndexStmt":
      return createIndex(body, created);
    case "CreatePolicyStmt":
      return body.permissive ? [] : [{ rule: "row-security", reason: `A restrictive policy on ${show(rangeName(body.table))} hides rows the running version may need.` }];
    case "AlterPolicyStmt":
      return [{ rule: "row-security", reason: `ALTER POLICY on ${show(rangeName(body.table))} can hide rows the running version sees.` }];
    case "CreateEventTrigStmt":
    case "DefineStmt":
    case "CommentStmt":
    case "AlterDefaultPrivilegesStmt":
    case "AlterFunctionStmt":
    case "AlterExtensionStmt":
    case "AlterEnumStmt":
    case "CreateCastStmt":
    case "CreateOpClassStmt":
    case "CreateStatsStmt":
    case "CreateRoleStmt":
    case "AlterRoleStmt":
    case "InsertStmt":
    case "UpdateStmt":
    case "SelectStmt":
    case "TransactionStmt":
    case "LockStmt":
    case "VacuumStmt":
    case "ReindexStmt":
    case "ClusterStmt":
    case "RefreshMatViewStmt":
    case "NotifyStmt":
    case "CallStmt":
      if (type === "AlterEnumStmt" && body.oldVal !== undefined) {
        return [{ rule: "rename-enum-value", reason: `Renaming value '${body.oldVal}' of enum ${show(listName(body.typeName))} to '${body.newVal}': the running version still writes and compares '${body.oldVal}'.` }];
      }
      return [];
    case "GrantStmt":
    case "GrantRoleStmt":
      return body.is_grant ? [] : [{ rule: "revoke", reason: "REVOKE takes away a privilege the running version may use." }];
    case "DeleteStmt":
      return deleteAll(body, created);
    case "TruncateStmt": {
      const tables = ((body.relations as Node[] | undefined) ?? []).map((r) => rangeName((r as { RangeVar?: unknown }).RangeVar));
      const existing = tables.filter((t) => !created.has("table", t));
      return existing.length === 0 ? [] : [{ rule: "delete-all-rows", reason: `TRUNCATE empties ${existing.map(show).join(", ")} under the running version.` }];
    }
    case "DropStmt":
      return drop(body, created);
    case "RenameStmt":
      return rename(body, created);
    case "AlterObjectSchemaStmt": {
      const kind = KIND[String(body.objectType)];
      const name = rangeName(body.relation) ?? objectName(body.object);
      if (kind && created.has(kind, name)) return [];
      return [{ rule: "rename-type", reason: `Moving ${show(name)} to schema "${body.newschema}": the running version looks for it where it was.` }];
    }
    case "AlterTableStmt":
      return alterTable(body, created);
    case "AlterDomainStmt": {
      const name = listName(body.typeName);
      if (created.has("type", name)) return [];
      const sub = String(body.subtype);
      if (sub === "C" || sub === "O" || (sub === "T" && body.def === undefined)) {
        return [{ rule: "alter-domain", reason: `This change to domain ${show(name)} can make the running version's writes fail.` }];
      }
      return [];
    }
    case "DoStmt":
      return doBlock(text(), created);
    default:
      return [{ rule: "unknown-statement", reason: `pgstack does not classify ${type.replace(/Stmt$/, "")} statements: assumed to break the running version.` }];
  }
}

function createIndex(body: Rec, created: Created): Break[] {
  const table = rangeName(body.relation);
  const idx = body.idxname ? { name: String(body.idxname), schema: table?.schema } : undefined;
  if (!body.if_not_exists) created.add("index", idx);
  if (!body.unique || created.has("table", table)) return [];
  const columns = ((body.indexParams as Node[] | undefined) ?? []).map((p) => (p as { IndexElem?: { name?: string } }).IndexElem?.name);
  if (table && !body.nulls_not_distinct && uniqueOnNewColumns(table, columns, created)) return [];
  return [{ rule: "add-unique", reason: `The unique index ${show(idx)} on ${show(table)} rejects the running version's writes that duplicate a value.` }];
}

/** Unique over columns this migration added, each NULL for the running version's inserts (or a per-row default). */
function uniqueOnNewColumns(table: Name, columns: (string | undefined)[], created: Created): boolean {
  return columns.length > 0 && columns.every((c) => {
    const state = created.column(table, c);
    return state !== undefined && (!state.hasDefault || state.uniqueDefault);
  });
}

function drop(body: Rec, created: Created): Break[] {
  const removeType = String(body.removeType);
  const kind = KIND[removeType];
  const objects = (body.objects as unknown[] | undefined) ?? [];
  const names = objects.map(objectName);
  const existing = names.filter((n) => !(kind && (created.has(kind, n) || created.renamedAway.some((r) => r.kind === kind && same(r.name, created.q(n!))))));
  for (const n of names) if (kind && n) created.remove(kind, n);
  if (existing.length === 0) return [];
  const list = existing.map(show).join(", ");
  switch (removeType) {
    case "OBJECT_TABLE":
    case "OBJECT_MATVIEW":
    case "OBJECT_FOREIGN_TABLE":
      return [{ rule: "drop-table", reason: `Dropping ${list}: the running version's queries on it fail.` }];
    case "OBJECT_INDEX": {
      // Prisma names a plain index <table>_<columns>_idx (before 3.0: <table>.<columns>_index); people often idx_<...>.
      const unique = existing.filter((n) => !/(^|[_.])(idx|index)($|_)/i.test(n?.name ?? ""));
      return unique.length === 0
        ? []
        : [{ rule: "drop-unique-index", reason: `Dropping index ${unique.map(show).join(", ")}: if it is unique, an upsert (INSERT ... ON CONFLICT) of the running version on its columns fails.` }];
    }
    case "OBJECT_TYPE":
    case "OBJECT_DOMAIN":
    case "OBJECT_SEQUENCE":
      // Without CASCADE PostgreSQL refuses to drop a type a column or function uses, or a sequence a
      // default uses: what remains is unused by the running version's tables (raw SQL naming it aside).
      if (body.behavior !== "DROP_CASCADE") return [];
      return existing.map((n) => ({ rule: "drop-object", reason: `Dropping ${removeType === "OBJECT_SEQUENCE" ? "sequence" : "type"} ${show(n)} with CASCADE also drops the columns and defaults that use it.` }));
    case "OBJECT_TRIGGER":
    case "OBJECT_RULE":
    case "OBJECT_STATISTIC_EXT":
    case "OBJECT_CAST":
    case "OBJECT_OPCLASS":
    case "OBJECT_OPFAMILY":
    case "OBJECT_EVENT_TRIGGER":
      return [];
    case "OBJECT_POLICY":
      return [{ rule: "row-security", reason: `Dropping policy ${list}: rows it let the running version see can disappear.` }];
    default: {
      const what = removeType.replace("OBJECT_", "").toLowerCase().replace(/_/g, " ");
      const breaks = existing.map((n) => ({ rule: "drop-object", reason: `Dropping ${what} ${show(n)}: the running version may use it.` }));
      // A function created again later in the migration with the same name and argument types: like CREATE OR REPLACE.
      if (kind === "function") {
        existing.forEach((n, i) => {
          const withArgs = (objects[names.indexOf(n)] as { ObjectWithArgs?: Rec }).ObjectWithArgs;
          const args = withArgs && !withArgs.args_unspecified ? functionArgs(withArgs.objfuncargs) : undefined;
          if (n && args !== undefined) created.droppedObjects.set(`${created.key(n)}(${args})`, breaks[i]);
        });
      }
      return breaks;
    }
  }
}

function recreated(created: Created, name: Name, args: string | undefined): void {
  const dropped = args === undefined ? undefined : created.droppedObjects.get(`${created.key(name)}(${args})`);
  if (dropped) dropped.withdrawn = true;
}

/**
 * A function's input argument types as PostgreSQL identifies it (OUT and TABLE parameters do not count; int and
 * integer are both int4 in the parse tree), or undefined when a parameter's type is unreadable.
 */
function functionArgs(params: unknown): string | undefined {
  const types: string[] = [];
  for (const p of (params as Node[] | undefined) ?? []) {
    const fp = (p as { FunctionParameter?: Rec }).FunctionParameter;
    if (!fp) return undefined;
    const mode = String(fp.mode ?? "FUNC_PARAM_DEFAULT");
    if (mode === "FUNC_PARAM_TABLE" || mode === "FUNC_PARAM_OUT") continue;
    const t = fp.argType as Rec | undefined;
    const name = listName(t?.names)?.name.toLowerCase();
    if (!name || t?.pct_type) return undefined;
    types.push(name + "[]".repeat(((t?.arrayBounds as unknown[] | undefined) ?? []).length));
  }
  return types.join(",");
}

/** Breaks of running the bodies this migration defined for a function name (a call, or a trigger's). */
function callBody(fn: Name, created: Created): Break[] {
  const key = created.key(fn);
  const bodies = created.bodies.get(key);
  if (!bodies || created.calling.has(key)) return [];
  created.calling.add(key);
  try {
    return bodies.flatMap(({ text, body }) => functionBody(text, body, created));
  } finally {
    created.calling.delete(key);
  }
}

/** A function body's statements, classified as if they ran now. */
function functionBody(text: string, body: Rec, created: Created): Break[] {
  const options = ((body.options as Node[] | undefined) ?? []).map((o) => (o as { DefElem?: Rec }).DefElem ?? {});
  const language = String(((options.find((o) => o.defname === "language")?.arg as { String?: Rec } | undefined)?.String?.sval) ?? "sql").toLowerCase();
  const unreadable: Break = { rule: "unknown-statement", reason: `The migration runs function ${show(listName(body.funcname))}, whose body pgstack cannot read: assumed to break the running version.` };
  if (body.sql_body) {
    const stmts = ((body.sql_body as { List?: Rec }).List?.items as Rec[] | undefined ?? []).flatMap((i) => ((i.List as Rec | undefined)?.items as Node[] | undefined) ?? [i as unknown as Node]);
    return stmts.flatMap((st) => classifyStatement(st, created, () => text));
  }
  if (language === "sql") {
    const source = (((options.find((o) => o.defname === "as")?.arg as { List?: Rec } | undefined)?.List?.items as Node[] | undefined) ?? [])[0];
    const sql = source && "String" in source ? source.String.sval : undefined;
    if (sql === undefined) return [unreadable];
    try {
      return (pgQuery.parseSync(sql).stmts ?? []).flatMap((st) => (st.stmt ? classifyStatement(st.stmt, created, () => sql) : []));
    } catch {
      return [unreadable];
    }
  }
  if (language === "plpgsql") return plpgsql(text, created);
  return [unreadable];
}

/** Calls in a statement that run now: setval() (a sequence moved), and functions this migration defines (their body). */
function calls(body: Rec, created: Created): Break[] {
  const breaks: Break[] = [];
  // CALL's funccall is a FuncCall without the node's wrapper.
  const found = [...findNodes(body, "FuncCall").map(({ value }) => value), ...(body.funccall ? [body.funccall as Rec] : [])];
  for (const value of found) {
    const fn = listName(value.funcname);
    if (!fn) continue;
    if (fn.name.toLowerCase() === "setval" && (!fn.schema || fn.schema === "pg_catalog")) {
      const seq = sequenceArg((value.args as Node[] | undefined)?.[0], created);
      if (!seq.created) breaks.push({ rule: "reset-sequence", reason: `setval() moves sequence ${show(seq.name)}: the running version's next inserts may take ids that exist.` });
      continue;
    }
    breaks.push(...callBody(fn, created));
  }
  return breaks;
}

/** The sequence setval() moves: a literal name ('"User_id_seq"', ::regclass), or pg_get_serial_sequence() of a table. */
function sequenceArg(arg: Node | undefined, created: Created): { name?: Name; created: boolean } {
  const literal = (n: unknown): string | undefined => {
    const r = n as Rec | undefined;
    if (r?.TypeCast) return literal((r.TypeCast as Rec).arg);
    return (r?.A_Const as { sval?: { sval?: string } } | undefined)?.sval?.sval;
  };
  const relation = (text: string | undefined): Name | undefined => {
    if (text === undefined) return undefined;
    try {
      return rangeName(findNodes(pgQuery.parseSync(`SELECT FROM ${text}`).stmts?.[0]?.stmt, "RangeVar")[0]?.value);
    } catch {
      return undefined;
    }
  };
  const call = (arg as { FuncCall?: Rec } | undefined)?.FuncCall;
  if (call && listName(call.funcname)?.name.toLowerCase() === "pg_get_serial_sequence") {
    const table = relation(literal((call.args as Node[] | undefined)?.[0]));
    return { name: table, created: created.has("table", table) };
  }
  const name = relation(literal(arg));
  return { name, created: created.has("sequence", name) };
}

/** DELETE statements in a statement's WITH (a data-modifying CTE runs whatever the outer statement is). */
function nestedDeletes(type: string, body: Rec, created: Created): Break[] {
  if (!["SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "CreateTableAsStmt", "ExplainStmt"].includes(type)) return [];
  return findNodes(body, "DeleteStmt").flatMap(({ value }) => deleteAll(value, created));
}

/** DELETE of every row: no WHERE, or one that reads no column (WHERE true, WHERE 1 = 1). */
function deleteAll(body: Rec, created: Created): Break[] {
  const table = rangeName(body.relation);
  if (created.has("table", table)) return [];
  if (body.whereClause !== undefined && findNodes(body.whereClause, "ColumnRef").length > 0) return [];
  return [{ rule: "delete-all-rows", reason: `DELETE ${body.whereClause === undefined ? "without WHERE" : "with a WHERE that reads no column"} empties ${show(table)} under the running version.` }];
}

/** ALTER SEQUENCE options that leave the values nextval() gives as they were. */
const SAFE_SEQUENCE_OPTIONS = new Set(["owned_by", "cache", "start", "as"]);

function rename(body: Rec, created: Created): Break[] {
  const renameType = String(body.renameType);
  const relation = rangeName(body.relation);
  const newname = String(body.newname);
  switch (renameType) {
    case "OBJECT_COLUMN": {
      if (!relation || created.has("table", relation)) return [];
      if (created.column(relation, String(body.subname))) {
        created.renameColumn(relation, String(body.subname), newname);
        return [];
      }
      return [{ rule: "rename-column", reason: `Renaming column "${body.subname}" of ${show(relation)} to "${newname}": the running version still uses "${body.subname}".` }];
    }
    case "OBJECT_TABLE":
    case "OBJECT_VIEW":
    case "OBJECT_MATVIEW":
    case "OBJECT_FOREIGN_TABLE": {
      const kind = renameType === "OBJECT_VIEW" ? "view" : "table";
      if (relation && created.has(kind, relation)) {
        created.rename(kind, relation, newname);
        return [];
      }
      if (relation) created.renamedAway.push({ kind, name: created.q({ schema: relation.schema, name: newname }) });
      return [{ rule: "rename-table", reason: `Renaming ${show(relation)} to "${newname}": the running version still uses ${show(relation)}.` }];
    }
    case "OBJECT_TYPE":
    case "OBJECT_DOMAIN":
    case "OBJECT_FUNCTION":
    case "OBJECT_PROCEDURE":
    case "OBJECT_ROUTINE":
    case "OBJECT_AGGREGATE":
    case "OBJECT_SCHEMA": {
      const kind = KIND[renameType];
      const name = renameType === "OBJECT_SCHEMA" ? { name: String(body.subname) } : objectName(body.object);
      if (name && created.has(kind, name)) {
        created.rename(kind, name, newname);
        if (kind === "type") for (const e of created.enumTypes) if (same(e, created.q(name))) e.name = newname;
        return [];
      }
      if (name) created.renamedAway.push({ kind, name: created.q({ schema: name.schema, name: newname }) });
      return [{ rule: "rename-type", reason: `Renaming ${show(name)} to "${newname}": the running version still uses ${show(name)}.` }];
    }
    // Names the application never writes in its queries.
    case "OBJECT_INDEX":
    case "OBJECT_TABCONSTRAINT":
    case "OBJECT_DOMCONSTRAINT":
    case "OBJECT_SEQUENCE":
    case "OBJECT_TRIGGER":
    case "OBJECT_POLICY":
    case "OBJECT_RULE":
    case "OBJECT_STATISTIC_EXT":
      if (renameType === "OBJECT_INDEX" && relation) created.rename("index", relation, newname);
      if (renameType === "OBJECT_SEQUENCE" && relation) created.rename("sequence", relation, newname);
      return [];
    default:
      return [{ rule: "unknown-statement", reason: `pgstack does not classify renaming a ${renameType.replace("OBJECT_", "").toLowerCase()}: assumed to break the running version.` }];
  }
}

function alterTable(body: Rec, created: Created): Break[] {
  const table = rangeName(body.relation);
  const objtype = String(body.objtype ?? "OBJECT_TABLE");
  // ALTER INDEX / SEQUENCE / VIEW ... SET (...), OWNER, and the like.
  const newTable = created.has("table", table) || (objtype === "OBJECT_VIEW" && created.has("view", table));
  const breaks: Break[] = [];
  for (const c of (body.cmds as Node[] | undefined) ?? []) {
    const cmd = (c as { AlterTableCmd?: Rec }).AlterTableCmd;
    if (!cmd) continue;
    const b = newTable ? trackOnly(cmd, table, created) : alterTableCmd(cmd, table!, created, objtype);
    if (b) breaks.push(b);
  }
  return breaks;
}

/** On a table this migration created nothing breaks; dropped constraints are still remembered. */
function trackOnly(cmd: Rec, table: Name | undefined, created: Created): undefined {
  if (cmd.subtype === "AT_DropConstraint" && cmd.name && table) created.droppedConstraints.add(constraintKey(created, table, String(cmd.name)));
  return undefined;
}

/** Constraint names are per table. */
function constraintKey(created: Created, table: Name, name: string): string {
  return `${created.key(table)}:${name}`;
}

function alterTableCmd(cmd: Rec, table: Name, created: Created, objtype: string): Break | undefined {
  const col = cmd.name === undefined ? undefined : String(cmd.name);
  const newCol = created.column(table, col);
  const where = `${col ? `column "${col}" of ` : ""}${show(table)}`;
  switch (String(cmd.subtype)) {
    case "AT_AddColumn": {
      const def = (cmd.def as { ColumnDef?: Rec } | undefined)?.ColumnDef ?? {};
      const name = String(def.colname);
      const state = columnDefState(def);
      // IF NOT EXISTS may add nothing: the column can be the running version's.
      if (!cmd.missing_ok) created.addColumn(table, name, state);
      if (state.notNull && !state.hasDefault) {
        return { rule: "add-required-column", reason: `The new column "${name}" of ${show(table)} is NOT NULL without a default: the running version's inserts leave it out and fail.` };
      }
      // Constraints declared on the column itself.
      for (const cons of (def.constraints as Node[] | undefined) ?? []) {
        const k = (cons as { Constraint?: Rec }).Constraint ?? {};
        if (k.contype === "CONSTR_NOTNULL") continue; // in the column's state above
        const b = addConstraint({ ...k, keys: [{ String: { sval: name } }], fk_attrs: [{ String: { sval: name } }] }, table, created);
        if (b) return b;
      }
      return undefined;
    }
    case "AT_DropColumn":
      if (newCol) return undefined;
      return { rule: "drop-column", reason: `Dropping ${where}: the running version still selects and writes it.` };
    case "AT_AlterColumnType": {
      if (newCol) return undefined;
      const typeName = listName(((cmd.def as Rec | undefined)?.ColumnDef as Rec | undefined)?.typeName && (((cmd.def as Rec).ColumnDef as Rec).typeName as Rec).names);
      if (typeName && created.isEnum(typeName)) {
        return { rule: "enum-value-removal", reason: `Changing ${where} to the enum ${show(typeName)} created in this migration (how Prisma removes enum values): the running version may still write a removed value.` };
      }
      return { rule: "change-column-type", reason: `Changing the type of ${where}: the running version reads and writes the old type.` };
    }
    case "AT_SetNotNull":
      if (newCol) {
        newCol.notNull = true;
        return newCol.hasDefault
          ? undefined
          : { rule: "add-required-column", reason: `SET NOT NULL on the new ${where}, which has no default: the running version's inserts leave it out and fail.` };
      }
      return { rule: "set-not-null", reason: `SET NOT NULL on ${where}: the running version may write NULL or leave it out.` };
    case "AT_DropNotNull":
      if (newCol) newCol.notNull = false;
      return undefined;
    case "AT_ColumnDefault":
      // SET DEFAULT NULL is DROP DEFAULT.
      if (cmd.def !== undefined && !isNull(cmd.def)) {
        if (newCol) {
          newCol.hasDefault = true;
          newCol.uniqueDefault = isUniqueDefault(cmd.def);
        }
        // Prisma drops a default around a column type change and sets it again: the running version never sees it gone.
        const dropped = created.droppedDefaults.get(`${created.key(table)}.${col}`);
        if (dropped) dropped.withdrawn = true;
        return undefined;
      }
      if (newCol) {
        newCol.hasDefault = false;
        return newCol.notNull ? { rule: "drop-default", reason: `DROP DEFAULT on the new NOT NULL ${where}: the running version's inserts leave it out and fail.` } : undefined;
      }
      {
        const b: Break = { rule: "drop-default", reason: `DROP DEFAULT on ${where}: the running version's inserts may rely on the default.` };
        created.droppedDefaults.set(`${created.key(table)}.${col}`, b);
        return b;
      }
    case "AT_DropIdentity":
      if (newCol) return undefined;
      return { rule: "drop-default", reason: `DROP IDENTITY on ${where}: the running version's inserts rely on the generated value.` };
    case "AT_AddIdentity":
    case "AT_SetIdentity": {
      const always =
        cmd.subtype === "AT_AddIdentity"
          ? ((cmd.def as { Constraint?: Rec } | undefined)?.Constraint?.generated_when === "a")
          : (((cmd.def as { List?: Rec } | undefined)?.List?.items as Node[] | undefined) ?? []).some((o) => {
              const d = (o as { DefElem?: Rec }).DefElem;
              return d?.defname === "generated" && (d.arg as { Integer?: Rec } | undefined)?.Integer?.ival === "a".charCodeAt(0);
            });
      if (newCol || !always) return undefined;
      return { rule: "generated-always", reason: `GENERATED ALWAYS on ${where}: the running version's inserts that give a value are refused.` };
    }
    case "AT_ChangeOwner":
      return { rule: "revoke", reason: `Giving ${show(table)} to another owner takes its privileges from the role that owned it, which the running version may connect as.` };
    case "AT_AddConstraint": {
      const k = (cmd.def as { Constraint?: Rec } | undefined)?.Constraint ?? {};
      return addConstraint(k, table, created);
    }
    case "AT_DropConstraint": {
      const name = String(cmd.name);
      const wasNew = created.has("constraint", { schema: created.key(table), name });
      created.droppedConstraints.add(constraintKey(created, table, name));
      if (wasNew || /(_fkey|_check)$/i.test(name)) return undefined;
      return { rule: "drop-constraint", reason: `Dropping constraint "${name}" of ${show(table)}: if it is a primary key or unique constraint, an upsert (INSERT ... ON CONFLICT) of the running version on its columns fails.` };
    }
    case "AT_EnableRowSecurity":
    case "AT_ForceRowSecurity":
      return { rule: "row-security", reason: `Row level security on ${show(table)} hides every row no policy grants to the running version.` };
    case "AT_AlterConstraint": {
      const alter = (cmd.def as { ATAlterConstraint?: Rec } | undefined)?.ATAlterConstraint ?? {};
      if (!(alter.alterEnforceability && alter.is_enforced)) return undefined; // deferrability, NOT ENFORCED
      return { rule: "add-check", reason: `Making constraint "${alter.conname}" of ${show(table)} ENFORCED: the running version's writes are checked from now on and can violate it.` };
    }
    case "AT_DetachPartition":
    case "AT_DetachPartitionFinalize":
    case "AT_DropInherit":
      return { rule: "detach-partition", reason: `Detaching from ${show(table)}: its rows disappear from the table the running version queries.` };
    // Nothing the running version's queries can notice.
    case "AT_ValidateConstraint": // new writes were already checked since the constraint was added
    case "AT_SetStatistics":
    case "AT_SetStorage":
    case "AT_SetCompression":
    case "AT_SetOptions":
    case "AT_ResetOptions":
    case "AT_SetRelOptions":
    case "AT_ResetRelOptions":
    case "AT_ReplaceRelOptions":
    case "AT_ClusterOn":
    case "AT_DropCluster":
    case "AT_SetLogged":
    case "AT_SetUnLogged":
    case "AT_SetTableSpace":
    case "AT_SetAccessMethod":
    case "AT_ReplicaIdentity":
    case "AT_DisableRowSecurity":
    case "AT_NoForceRowSecurity":
    case "AT_EnableTrig":
    case "AT_EnableAlwaysTrig":
    case "AT_EnableReplicaTrig":
    case "AT_DisableTrig":
    case "AT_EnableTrigAll":
    case "AT_DisableTrigAll":
    case "AT_EnableTrigUser":
    case "AT_DisableTrigUser":
    case "AT_AttachPartition":
    case "AT_AddInherit":
    case "AT_DropExpression":
    case "AT_SetExpression":
    case "AT_AlterColumnGenericOptions":
    case "AT_GenericOptions":
    case "AT_AddIndex":
    case "AT_EnableRule":
    case "AT_EnableAlwaysRule":
    case "AT_EnableReplicaRule":
    case "AT_DisableRule":
      return undefined;
    default:
      return { rule: "unknown-statement", reason: `pgstack does not classify ALTER ${objtype.replace("OBJECT_", "")} ... ${String(cmd.subtype).replace("AT_", "")}: assumed to break the running version.` };
  }
}

function strings(nodes: unknown): string[] {
  return ((nodes as Node[] | undefined) ?? []).map((n) => ("String" in n ? n.String.sval ?? "" : ""));
}

function addConstraint(k: Rec, table: Name, created: Created): Break | undefined {
  if (k.conname) created.add("constraint", { schema: created.key(table), name: String(k.conname) });
  const name = k.conname ? `"${k.conname}" ` : "";
  switch (String(k.contype)) {
    case "CONSTR_UNIQUE": {
      // USING INDEX: the unique index already enforced it.
      if (k.indexname) return undefined;
      if (!k.nulls_not_distinct && uniqueOnNewColumns(table, strings(k.keys), created)) return undefined;
      return { rule: "add-unique", reason: `The UNIQUE constraint ${name}on ${show(table)} rejects the running version's writes that duplicate a value.` };
    }
    case "CONSTR_PRIMARY": {
      const keys = strings(k.keys);
      if (!k.indexname && keys.length > 0 && keys.every((c) => created.column(table, c)?.uniqueDefault)) return undefined;
      return { rule: "add-primary-key", reason: `The PRIMARY KEY ${name}on ${show(table)} rejects the running version's writes that duplicate or leave out a key.` };
    }
    case "CONSTR_CHECK": {
      // NOT ENFORCED (PostgreSQL 18) checks nothing.
      if (k.is_enforced !== true) return undefined;
      // On new columns without a default, a CHECK that is NULL when they are holds for the running version's
      // inserts (they leave them NULL); a default, or an expression such as IS NOT NULL, pgstack does not evaluate.
      const columns = new Set(findNodes(k.raw_expr, "ColumnRef").map(({ value }) => strings(value.fields).pop() ?? ""));
      const fresh = [...columns].every((c) => created.column(table, c) && !created.column(table, c)!.hasDefault);
      if (columns.size > 0 && fresh && nullWhenNull(k.raw_expr, columns)) return undefined;
      return { rule: "add-check", reason: `The CHECK constraint ${name}on ${show(table)} applies to the running version's new writes${k.skip_validation ? " (NOT VALID only skips existing rows)" : ""}, which can violate it.` };
    }
    case "CONSTR_EXCLUSION":
      return { rule: "add-exclude", reason: `The EXCLUDE constraint ${name}on ${show(table)} rejects the running version's conflicting writes.` };
    case "CONSTR_FOREIGN": {
      if (k.is_enforced !== true) return undefined;
      const columns = strings(k.fk_attrs);
      // New columns without a default are NULL in the running version's inserts: a NULL reference is not checked.
      if (columns.length > 0 && columns.every((c) => created.column(table, c) && !created.column(table, c)!.hasDefault)) return undefined;
      // Re-created under its name (Prisma changes actions so): unless its actions never refuse a parent's delete or
      // key update, the old ones may have been more lenient (Cascade -> Restrict makes the running version's deletes fail).
      const lenient = (a: unknown) => a === "c" || a === "n";
      if (k.conname && created.droppedConstraints.has(constraintKey(created, table, String(k.conname))) && lenient(k.fk_del_action ?? "a") && lenient(k.fk_upd_action ?? "a")) return undefined;
      return { rule: "add-foreign-key", reason: `The FOREIGN KEY ${name}on ${show(table)} applies to the running version's new writes${k.skip_validation ? " (NOT VALID only skips existing rows)" : ""}, which can violate it.` };
    }
    case "CONSTR_NOTNULL": {
      // PostgreSQL 18's table constraint NOT NULL "col" is SET NOT NULL.
      for (const c of strings(k.keys)) {
        const col = created.column(table, c);
        if (col) {
          col.notNull = true;
          if (!col.hasDefault) return { rule: "add-required-column", reason: `NOT NULL on the new column "${c}" of ${show(table)}, which has no default: the running version's inserts leave it out and fail.` };
        } else {
          return { rule: "set-not-null", reason: `The NOT NULL constraint ${name}on column "${c}" of ${show(table)}: the running version may write NULL or leave it out.` };
        }
      }
      return undefined;
    }
    default:
      // DEFAULT / identity / generated on ADD COLUMN are handled with the column.
      return undefined;
  }
}

/** Strict operators and functions a CHECK commonly uses: NULL in, NULL out. */
const STRICT_FUNCTIONS = new Set(["length", "char_length", "character_length", "octet_length", "lower", "upper", "btrim", "ltrim", "rtrim", "abs", "round", "trunc", "floor", "ceil", "ceiling"]);

/** Whether `expr` is NULL whenever every column of `columns` is NULL (then a CHECK of it passes); unsure: false. */
function nullWhenNull(expr: unknown, columns: Set<string>): boolean {
  const e = expr as Rec | undefined;
  if (!e) return false;
  const sub = (x: unknown) => nullWhenNull(x, columns);
  if (e.ColumnRef) return columns.has(strings((e.ColumnRef as Rec).fields).pop() ?? "");
  if (e.A_Const) return Boolean((e.A_Const as Rec).isnull);
  if (e.TypeCast) return sub((e.TypeCast as Rec).arg);
  if (e.A_Expr) {
    const a = e.A_Expr as Rec;
    switch (String(a.kind)) {
      case "AEXPR_OP":
      case "AEXPR_LIKE":
      case "AEXPR_ILIKE":
      case "AEXPR_SIMILAR":
        return sub(a.lexpr) || sub(a.rexpr);
      case "AEXPR_OP_ANY":
      case "AEXPR_OP_ALL":
      case "AEXPR_IN":
      case "AEXPR_BETWEEN":
      case "AEXPR_NOT_BETWEEN":
        return sub(a.lexpr);
      default:
        return false;
    }
  }
  if (e.BoolExpr) {
    const args = ((e.BoolExpr as Rec).args as unknown[] | undefined) ?? [];
    return args.length > 0 && args.every(sub);
  }
  if (e.FuncCall) {
    const f = e.FuncCall as Rec;
    return STRICT_FUNCTIONS.has(listName(f.funcname)?.name.toLowerCase() ?? "") && ((f.args as unknown[] | undefined) ?? []).some(sub);
  }
  return false;
}

/**
 * A DO block: its body parsed by PL/pgSQL's own parser, and each SQL statement
 * in it classified as if it ran, in the order written (conditions are not
 * evaluated; an expression is classified as a SELECT of it, for the functions
 * it calls). Dynamic SQL (EXECUTE) is read when it is a constant string, else unknown.
 */
function doBlock(text: string, created: Created): Break[] {
  return plpgsql(text, created);
}

/** The statements of the PL/pgSQL bodies in `text` (a DO block or a CREATE FUNCTION), classified in order. */
function plpgsql(text: string, created: Created): Break[] {
  const unknown: Break = { rule: "unknown-statement", reason: "This PL/pgSQL code runs SQL pgstack cannot read (EXECUTE of a built string, or a body it cannot parse): assumed to break the running version." };
  let tree: unknown;
  try {
    tree = pgQuery.parsePlPgSQLSync(text);
  } catch {
    return [unknown];
  }
  const queries: (string | undefined)[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) {
      for (const v of value) walk(v);
      return;
    }
    if (!value || typeof value !== "object") return;
    for (const [key, child] of Object.entries(value as Rec)) {
      if (key === "PLpgSQL_stmt_dynfors" || key === "dynquery") {
        queries.push(undefined);
      } else if (key === "PLpgSQL_stmt_dynexecute") {
        // EXECUTE of a string constant is as readable as the statement itself; of anything built, it is not.
        const dyn = child as Rec;
        queries.push(stringConstant((dyn.query as { PLpgSQL_expr?: { query?: string } } | undefined)?.PLpgSQL_expr?.query));
        walk(dyn.params);
      } else if (key === "PLpgSQL_expr") {
        const expr = child as { query?: unknown; parseMode?: unknown };
        if (typeof expr.query !== "string") continue;
        // parseMode 0: a whole statement; 2: an expression; 3-5: an assignment `target := expression`.
        const mode = Number(expr.parseMode ?? 0);
        queries.push(mode === 0 ? expr.query : `SELECT ${mode >= 3 ? expr.query.replace(/^[^]*?:=/, "") : expr.query}`);
      } else {
        walk(child);
      }
    }
  };
  walk(tree);
  const breaks: Break[] = [];
  for (const query of queries) {
    if (query === undefined) return [unknown];
    let stmts: { stmt?: Node }[];
    try {
      stmts = pgQuery.parseSync(query).stmts ?? [];
    } catch {
      return [unknown];
    }
    for (const s of stmts) if (s.stmt) breaks.push(...classifyStatement(s.stmt, created, () => query));
  }
  return breaks;
}

/** The value of an expression that is a single string literal ('...' or $$...$$), else undefined. */
function stringConstant(expr: string | undefined): string | undefined {
  if (!expr) return undefined;
  try {
    const target = findNodes(pgQuery.parseSync(`SELECT ${expr}`).stmts?.[0]?.stmt, "ResTarget");
    const val = target.length === 1 ? (target[0].value.val as { A_Const?: { sval?: { sval?: string } } } | undefined) : undefined;
    return val?.A_Const?.sval?.sval;
  } catch {
    return undefined;
  }
}
