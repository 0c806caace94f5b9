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
}

export const ALLOW_CONTRACT_PREFIX = "pgstack:allow-contract";

/** Every contract rule: what breaks the version now running. */
export const COMPAT_RULES: Record<string, string> = {
  "drop-table": "DROP TABLE (or materialized view, foreign table): the running version's queries on it fail.",
  "drop-column": "DROP COLUMN: the running version still selects and writes it.",
  "drop-object": "DROP of a view, function, procedure, schema or extension (a view or function created again by the same migration excepted, like CREATE OR REPLACE), or of a type, domain or sequence with CASCADE: the running version may use it.",
  "drop-unique-index": "DROP INDEX of an index not named as a plain one (Prisma: *_idx, *_index; also idx_*): a unique index may be what an upsert (INSERT ... ON CONFLICT) of the running version needs.",
  "drop-constraint": "DROP CONSTRAINT not named as a foreign key or check (Prisma: *_fkey, *_check): a primary key or unique constraint may be what an upsert (ON CONFLICT) needs.",
  "rename-table": "RENAME of a table, view or materialized view: the running version uses the old name.",
  "rename-column": "RENAME COLUMN: the running version uses the old name.",
  "rename-type": "RENAME of a type, domain, function, schema (or SET SCHEMA): Prisma casts enum parameters to the type by name; the running version uses the old name.",
  "rename-enum-value": "ALTER TYPE ... RENAME VALUE: the running version still writes and compares the old value.",
  "change-column-type": "ALTER COLUMN ... TYPE: the running version reads and writes the old type.",
  "enum-value-removal": "ALTER COLUMN ... TYPE to an enum this migration creates (Prisma's way to remove enum values): the running version may write a removed value.",
  "set-not-null": "SET NOT NULL: the running version may write NULL or leave the column out.",
  "add-required-column": "ADD COLUMN NOT NULL without a default (or SET NOT NULL on a new column without one): the running version's inserts leave it out and fail.",
  "drop-default": "DROP DEFAULT (or DROP IDENTITY) on a NOT NULL or existing column: the running version's inserts may rely on the default.",
  "add-unique": "A UNIQUE constraint or unique index on existing columns (or on new ones with a default, or NULLS NOT DISTINCT): the running version's writes can violate it.",
  "add-primary-key": "A PRIMARY KEY on existing columns (or new ones without a generated default): the running version's writes can violate it.",
  "add-check": "A CHECK constraint on existing columns, NOT VALID or not (NOT VALID only skips existing rows; new writes are checked), or ALTER CONSTRAINT ... ENFORCED: the running version's writes can violate it.",
  "add-exclude": "An EXCLUDE constraint on an existing table: the running version's writes can violate it.",
  "add-foreign-key": "A FOREIGN KEY on existing columns, NOT VALID or not (new writes are checked either way), unless it re-creates one of the same name dropped earlier in the migration: the running version's writes can violate it.",
  "delete-all-rows": "TRUNCATE, or DELETE without WHERE, of an existing table: the running version's data disappears under it.",
  "revoke": "REVOKE: the running version may need the privilege.",
  "row-security": "ENABLE/FORCE ROW LEVEL SECURITY, a restrictive policy, or DROP/ALTER POLICY: rows the running version sees can disappear.",
  "detach-partition": "DETACH PARTITION or NO INHERIT: the partition's rows disappear from the table the running version queries.",
  "alter-domain": "ALTER DOMAIN ADD CONSTRAINT / SET NOT NULL / DROP DEFAULT: the running version's writes can violate it.",
  "unknown-statement": "A statement pgstack does not classify (an unlisted statement or ALTER TABLE action, or a DO block that EXECUTEs a string it builds): assumed to break the running version.",
};

type ColumnState = { notNull: boolean; hasDefault: boolean; uniqueDefault: boolean };

interface Name {
  schema?: string;
  name: string;
}

/** What this migration has created so far: acting on those cannot break the running version. */
class Created {
  private readonly objects: { kind: string; name: Name }[] = [];
  /** Columns added to tables that existed before, by table name. */
  private readonly columns = new Map<string, Map<string, ColumnState>>();
  readonly droppedConstraints = new Set<string>();
  readonly enumTypes: Name[] = [];
  /** Existing objects renamed by this migration, under their new name: the rename was the break. */
  readonly renamedAway: { kind: string; name: Name }[] = [];
  /** Existing views and functions dropped, by kind:name: creating them again in the migration withdraws the drop. */
  readonly droppedObjects = new Map<string, Break>();
  /** DROP DEFAULT on an existing column, by "table.column": a later SET DEFAULT in the migration withdraws it. */
  readonly droppedDefaults = new Map<string, Break>();

  add(kind: string, name: Name | undefined): void {
    if (name) this.objects.push({ kind, name });
  }
  has(kind: string, name: Name | undefined): boolean {
    return Boolean(name) && this.objects.some((o) => o.kind === kind && same(o.name, name!));
  }
  rename(kind: string, from: Name, to: string): void {
    for (const o of this.objects) if (o.kind === kind && same(o.name, from)) o.name = { schema: o.name.schema, name: to };
    if (kind === "table") {
      const cols = this.columns.get(from.name);
      if (cols) {
        this.columns.delete(from.name);
        this.columns.set(to, cols);
      }
    }
  }
  remove(kind: string, name: Name): void {
    const i = this.objects.findIndex((o) => o.kind === kind && same(o.name, name));
    if (i >= 0) this.objects.splice(i, 1);
  }
  addColumn(table: Name, column: string, state: ColumnState): void {
    let cols = this.columns.get(table.name);
    if (!cols) this.columns.set(table.name, (cols = new Map()));
    cols.set(column, state);
  }
  column(table: Name, column: string | undefined): ColumnState | undefined {
    return column === undefined ? undefined : this.columns.get(table.name)?.get(column);
  }
  renameColumn(table: Name, from: string, to: string): void {
    const cols = this.columns.get(table.name);
    const state = cols?.get(from);
    if (cols && state) {
      cols.delete(from);
      cols.set(to, state);
    }
  }
}

function same(a: Name, b: Name): boolean {
  return a.name === b.name && (a.schema === undefined || b.schema === undefined || a.schema === b.schema);
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
    const acknowledged = acknowledgement(sql, []);
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
  const acknowledged = acknowledgement(sql, parsed.map((p) => p.statement));
  return { compatibility: reasons.length > 0 ? "contract" : "expand", reasons, ...(acknowledged ? { acknowledged } : {}) };
}

const ALLOW_CONTRACT_LINE = /^[ \t]*--[ \t]*pgstack:allow-contract(?:[ \t]+([^\r\n]*))?[ \t]*\r?$/gm;

/**
 * The reasons of every `-- pgstack:allow-contract <why>` line (one without a
 * reason acknowledges nothing). Between statements a line starting with `--` is
 * a comment; inside one (a string or a function body) it is checked with
 * PostgreSQL's scanner.
 */
function acknowledgement(sql: string, statements: Statement[]): string | undefined {
  const whys: string[] = [];
  for (const match of sql.matchAll(ALLOW_CONTRACT_LINE)) {
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
  const dflt = constraints.find((c) => c.contype === "CONSTR_DEFAULT");
  const uniqueDefault = serial || identity || (dflt !== undefined && isUniqueDefault(dflt.raw_expr));
  return {
    notNull: serial || identity || constraints.some((c) => c.contype === "CONSTR_NOTNULL" || c.contype === "CONSTR_PRIMARY"),
    hasDefault: serial || identity || generated || dflt !== undefined,
    uniqueDefault,
  };
}

function isUniqueDefault(expr: unknown): boolean {
  return findNodes(expr, "FuncCall").some(({ value }) => UNIQUE_DEFAULTS.has(listName(value.funcname)?.name.toLowerCase() ?? ""));
}

/** The breaking actions of one statement, given what the migration created before it (updated). */
function classifyStatement(node: Node, created: Created, text: () => string): Break[] {
  const [type] = Object.keys(node);
  const body = (node as unknown as Record<string, Rec>)[type] ?? {};
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
      recreated(created, "view", rangeName(body.view));
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
      if (name) created.enumTypes.push(name);
      return [];
    }
    case "CompositeTypeStmt":
      created.add("type", rangeName(body.typevar));
      return [];
    case "CreateDomainStmt":
    case "CreateRangeStmt":
      created.add("type", listName(body.domainname ?? body.typeName));
      return [];
    case "CreateFunctionStmt":
      recreated(created, "function", listName(body.funcname));
      if (!body.replace) created.add("function", listName(body.funcname));
      return [];
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
    case "CreateTrigStmt":
    case "CreateEventTrigStmt":
    case "DefineStmt":
    case "CommentStmt":
    case "AlterDefaultPrivilegesStmt":
    case "AlterOwnerStmt":
    case "AlterSeqStmt":
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
    case "VariableSetStmt":
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
    case "DeleteStmt": {
      const table = rangeName(body.relation);
      if (body.whereClause !== undefined || created.has("table", table)) return [];
      return [{ rule: "delete-all-rows", reason: `DELETE without WHERE empties ${show(table)} under the running version.` }];
    }
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
  const names = ((body.objects as unknown[] | undefined) ?? []).map(objectName);
  const existing = names.filter((n) => !(kind && (created.has(kind, n) || created.renamedAway.some((r) => r.kind === kind && same(r.name, n!)))));
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
      // A view or function created again under the same name later in the migration: like CREATE OR REPLACE.
      if (kind === "view" || kind === "function") existing.forEach((n, i) => n && created.droppedObjects.set(`${kind}:${n.name}`, breaks[i]));
      return breaks;
    }
  }
}

function recreated(created: Created, kind: string, name: Name | undefined): void {
  const dropped = name ? created.droppedObjects.get(`${kind}:${name.name}`) : undefined;
  if (dropped) dropped.withdrawn = true;
}

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
      if (relation) created.renamedAway.push({ kind, name: { schema: relation.schema, name: newname } });
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
        if (kind === "type") for (const e of created.enumTypes) if (same(e, name)) e.name = newname;
        return [];
      }
      if (name) created.renamedAway.push({ kind, name: { schema: name.schema, name: newname } });
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
function trackOnly(cmd: Rec, _table: Name | undefined, created: Created): undefined {
  if (cmd.subtype === "AT_DropConstraint" && cmd.name) created.droppedConstraints.add(String(cmd.name));
  return undefined;
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
      created.addColumn(table, name, state);
      if (state.notNull && !state.hasDefault) {
        return { rule: "add-required-column", reason: `The new column "${name}" of ${show(table)} is NOT NULL without a default: the running version's inserts leave it out and fail.` };
      }
      // Constraints declared on the column itself.
      for (const cons of (def.constraints as Node[] | undefined) ?? []) {
        const k = (cons as { Constraint?: Rec }).Constraint ?? {};
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
      if (typeName && created.enumTypes.some((e) => same(e, typeName))) {
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
      if (cmd.def !== undefined) {
        if (newCol) {
          newCol.hasDefault = true;
          newCol.uniqueDefault = isUniqueDefault(cmd.def);
        }
        // Prisma drops a default around a column type change and sets it again: the running version never sees it gone.
        const dropped = created.droppedDefaults.get(`${table.name}.${col}`);
        if (dropped) dropped.withdrawn = true;
        return undefined;
      }
      if (newCol) {
        newCol.hasDefault = false;
        return newCol.notNull ? { rule: "drop-default", reason: `DROP DEFAULT on the new NOT NULL ${where}: the running version's inserts leave it out and fail.` } : undefined;
      }
      {
        const b: Break = { rule: "drop-default", reason: `DROP DEFAULT on ${where}: the running version's inserts may rely on the default.` };
        created.droppedDefaults.set(`${table.name}.${col}`, b);
        return b;
      }
    case "AT_DropIdentity":
      if (newCol) return undefined;
      return { rule: "drop-default", reason: `DROP IDENTITY on ${where}: the running version's inserts rely on the generated value.` };
    case "AT_AddConstraint": {
      const k = (cmd.def as { Constraint?: Rec } | undefined)?.Constraint ?? {};
      return addConstraint(k, table, created);
    }
    case "AT_DropConstraint": {
      const name = String(cmd.name);
      const wasNew = created.has("constraint", { name });
      created.droppedConstraints.add(name);
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
    case "AT_AddIdentity":
    case "AT_SetIdentity":
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
    case "AT_ChangeOwner":
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
  if (k.conname) created.add("constraint", { name: String(k.conname) });
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
      const columns = findNodes(k.raw_expr, "ColumnRef").map(({ value }) => strings(value.fields).pop() ?? "");
      if (columns.length > 0 && columns.every((c) => created.column(table, c))) return undefined;
      return { rule: "add-check", reason: `The CHECK constraint ${name}on ${show(table)} applies to the running version's new writes${k.skip_validation ? " (NOT VALID only skips existing rows)" : ""}, which can violate it.` };
    }
    case "CONSTR_EXCLUSION":
      return { rule: "add-exclude", reason: `The EXCLUDE constraint ${name}on ${show(table)} rejects the running version's conflicting writes.` };
    case "CONSTR_FOREIGN": {
      if (k.is_enforced !== true) return undefined;
      const columns = strings(k.fk_attrs);
      if (columns.length > 0 && columns.every((c) => created.column(table, c))) return undefined;
      if (k.conname && created.droppedConstraints.has(String(k.conname))) return undefined;
      return { rule: "add-foreign-key", reason: `The FOREIGN KEY ${name}on ${show(table)} applies to the running version's new writes${k.skip_validation ? " (NOT VALID only skips existing rows)" : ""}, which can violate it.` };
    }
    default:
      // NOT NULL / DEFAULT / identity / generated on ADD COLUMN are handled with the column.
      return undefined;
  }
}

/**
 * A DO block: its body parsed by PL/pgSQL's own parser, and each SQL statement
 * in it classified as if it ran (conditions are not evaluated). Dynamic SQL
 * (EXECUTE) cannot be read: unknown.
 */
function doBlock(text: string, created: Created): Break[] {
  const unknown: Break = { rule: "unknown-statement", reason: "This DO block runs SQL pgstack cannot read (EXECUTE of a built string, or a body it cannot parse): assumed to break the running version." };
  let tree: unknown;
  try {
    tree = pgQuery.parsePlPgSQLSync(text);
  } catch {
    return [unknown];
  }
  if (findNodes(tree, "PLpgSQL_stmt_dynfors").length > 0) return [unknown];
  const queries: string[] = [];
  // EXECUTE of a string constant is as readable as the statement itself; of anything built, it is not.
  for (const { value } of findNodes(tree, "PLpgSQL_stmt_dynexecute")) {
    const constant = stringConstant((value.query as { PLpgSQL_expr?: { query?: string } } | undefined)?.PLpgSQL_expr?.query);
    if (constant === undefined) return [unknown];
    queries.push(constant);
  }
  // parseMode 0: a whole statement (the others are expressions, e.g. an IF's condition or EXECUTE's string).
  for (const { value } of findNodes(tree, "PLpgSQL_expr")) {
    if (Number(value.parseMode ?? 0) === 0 && typeof value.query === "string") queries.push(value.query);
  }
  const breaks: Break[] = [];
  for (const query of queries) {
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
