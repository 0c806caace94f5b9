import type { Node, RangeVar } from "libpg-query";
import { loadSqlParser, SourceFile } from "../lint/source";

/**
 * What the reverted migrations' own statements say a reverse cannot give
 * back, read from PostgreSQL's parse tree (the computed reverse sees only
 * the schemas before and after):
 * - a conditional create (IF NOT EXISTS, OR REPLACE) may have met an object
 *   made before the migration ran (by hand, by another service): the history
 *   replayed into an empty database says the migration made it, so the
 *   reverse would drop it with what it holds;
 * - data changes (INSERT, UPDATE, DELETE, TRUNCATE, MERGE, COPY FROM) are in
 *   no schema: nothing gives back the rows they changed.
 */
export interface ConditionalCreate {
  migration: string;
  /** The report's word: table, column, enum value, function, index, view, ... */
  kind: string;
  /** Unqualified name; `table.column` for a column, `type.value` for an enum value. */
  name: string;
  /** The schema it names, when qualified. */
  schema?: string;
  /** IF NOT EXISTS or OR REPLACE. */
  clause: string;
  line: number;
}

export interface DataChange {
  migration: string;
  /** INSERT INTO, UPDATE, DELETE FROM, TRUNCATE, MERGE INTO, COPY. */
  verb: string;
  tables: Array<{ schema?: string; name: string }>;
  line: number;
}

export interface HistoryStatements {
  conditional: ConditionalCreate[];
  dataChanges: DataChange[];
}

const lastName = (names: Node[] | undefined): { schema?: string; name: string } | undefined => {
  const parts = (names ?? []).map((n) => ("String" in n ? n.String.sval : undefined)).filter((p): p is string => typeof p === "string");
  if (parts.length === 0) return undefined;
  return { name: parts[parts.length - 1], schema: parts.length > 1 ? parts[parts.length - 2] : undefined };
};
type Named = { schema?: string; name: string };
const rel = (rv: RangeVar | undefined): Named | undefined => (rv?.relname ? { name: rv.relname, schema: rv.schemaname || undefined } : undefined);

/** The objects one statement creates only if absent (or replaces), with the report's word for each. */
function conditionalOf(node: Node): Array<{ kind: string; name: string; schema?: string; clause: string }> {
  const replaces = ["CreateFunctionStmt", "ViewStmt", "CreateTrigStmt", "RuleStmt"].some((k) => k in node) || ("DefineStmt" in node && Boolean(node.DefineStmt.replace));
  const clause = replaces ? "OR REPLACE" : "IF NOT EXISTS";
  return conditionalObjects(node).map((o) => ({ ...o, clause }));
}

function conditionalObjects(node: Node): Array<{ kind: string; name: string; schema?: string }> {
  const one = (kind: string, o: { name: string; schema?: string } | undefined) => (o ? [{ kind, ...o }] : []);
  if ("CreateStmt" in node) return node.CreateStmt.if_not_exists ? one("table", rel(node.CreateStmt.relation)) : [];
  if ("CreateTableAsStmt" in node) {
    const s = node.CreateTableAsStmt;
    return s.if_not_exists ? one(s.objtype === "OBJECT_MATVIEW" ? "materialized view" : "table", rel(s.into?.rel)) : [];
  }
  if ("IndexStmt" in node) {
    const s = node.IndexStmt;
    return s.if_not_exists && s.idxname ? [{ kind: "index", name: s.idxname, schema: s.relation?.schemaname || undefined }] : [];
  }
  if ("CreateFunctionStmt" in node) return node.CreateFunctionStmt.replace ? one(node.CreateFunctionStmt.is_procedure ? "procedure" : "function", lastName(node.CreateFunctionStmt.funcname)) : [];
  if ("ViewStmt" in node) return node.ViewStmt.replace ? one("view", rel(node.ViewStmt.view)) : [];
  if ("CreateSeqStmt" in node) return node.CreateSeqStmt.if_not_exists ? one("sequence", rel(node.CreateSeqStmt.sequence)) : [];
  if ("CreateExtensionStmt" in node) return node.CreateExtensionStmt.if_not_exists && node.CreateExtensionStmt.extname ? [{ kind: "extension", name: node.CreateExtensionStmt.extname }] : [];
  if ("CreateSchemaStmt" in node) return node.CreateSchemaStmt.if_not_exists && node.CreateSchemaStmt.schemaname ? [{ kind: "schema", name: node.CreateSchemaStmt.schemaname }] : [];
  if ("CreateTrigStmt" in node) return node.CreateTrigStmt.replace && node.CreateTrigStmt.trigname ? [{ kind: "trigger", name: node.CreateTrigStmt.trigname, schema: node.CreateTrigStmt.relation?.schemaname || undefined }] : [];
  if ("RuleStmt" in node) return node.RuleStmt.replace && node.RuleStmt.rulename ? [{ kind: "rule", name: node.RuleStmt.rulename }] : [];
  if ("DefineStmt" in node) return node.DefineStmt.replace || node.DefineStmt.if_not_exists ? one(node.DefineStmt.kind === "OBJECT_AGGREGATE" ? "aggregate" : "object", lastName(node.DefineStmt.defnames)) : [];
  if ("CreateStatsStmt" in node) return node.CreateStatsStmt.if_not_exists ? one("statistics", lastName(node.CreateStatsStmt.defnames)) : [];
  if ("CreateForeignTableStmt" in node) return node.CreateForeignTableStmt.base?.if_not_exists ? one("foreign table", rel(node.CreateForeignTableStmt.base.relation)) : [];
  if ("AlterEnumStmt" in node) {
    const s = node.AlterEnumStmt;
    const type = lastName(s.typeName);
    return s.skipIfNewValExists && s.newVal && type ? [{ kind: "enum value", name: `${type.name}.${s.newVal}`, schema: type.schema }] : [];
  }
  if ("AlterTableStmt" in node) {
    const table = rel(node.AlterTableStmt.relation);
    if (!table) return [];
    return (node.AlterTableStmt.cmds ?? []).flatMap((c) => {
      const cmd = "AlterTableCmd" in c ? c.AlterTableCmd : undefined;
      const column = cmd?.def && "ColumnDef" in cmd.def ? cmd.def.ColumnDef.colname : undefined;
      return cmd?.subtype === "AT_AddColumn" && cmd.missing_ok && column ? [{ kind: "column", name: `${table.name}.${column}`, schema: table.schema }] : [];
    });
  }
  return [];
}

/** The rows a statement writes: its verb and tables; undefined for a statement that writes none. */
function dataChangeOf(node: Node): { verb: string; tables: Array<{ schema?: string; name: string }> } | undefined {
  const tables = (...rvs: Array<RangeVar | undefined>) => rvs.map(rel).filter((t): t is Named => t !== undefined);
  if ("InsertStmt" in node) return { verb: "INSERT INTO", tables: tables(node.InsertStmt.relation) };
  if ("UpdateStmt" in node) return { verb: "UPDATE", tables: tables(node.UpdateStmt.relation) };
  if ("DeleteStmt" in node) return { verb: "DELETE FROM", tables: tables(node.DeleteStmt.relation) };
  if ("MergeStmt" in node) return { verb: "MERGE INTO", tables: tables(node.MergeStmt.relation) };
  if ("TruncateStmt" in node) return { verb: "TRUNCATE", tables: tables(...(node.TruncateStmt.relations ?? []).map((r) => ("RangeVar" in r ? r.RangeVar : undefined))) };
  // COPY ... TO only reads.
  if ("CopyStmt" in node) return node.CopyStmt.is_from ? { verb: "COPY", tables: tables(node.CopyStmt.relation) } : undefined;
  // WITH d AS (DELETE ...) SELECT ...: a data-modifying CTE writes too.
  if ("SelectStmt" in node) {
    for (const cte of node.SelectStmt.withClause?.ctes ?? []) {
      const query = "CommonTableExpr" in cte ? cte.CommonTableExpr.ctequery : undefined;
      const inner = query ? dataChangeOf(query) : undefined;
      if (inner) return inner;
    }
  }
  return undefined;
}

/** The conditional creates and data changes of the migrations, in order. Statements on temporary tables are left out. */
export async function readHistoryStatements(migrations: Array<{ name: string; sql: string }>): Promise<HistoryStatements> {
  await loadSqlParser();
  const out: HistoryStatements = { conditional: [], dataChanges: [] };
  for (const m of migrations) {
    const file = new SourceFile(m.sql);
    // A temporary table goes with the session: what is written into it is nobody's data.
    const temporary = new Set<string>();
    for (const s of file.statements) {
      const line = file.position(s.start).line;
      if ("CreateStmt" in s.node && s.node.CreateStmt.relation?.relpersistence === "t") {
        temporary.add(s.node.CreateStmt.relation.relname ?? "");
        continue;
      }
      for (const c of conditionalOf(s.node)) out.conditional.push({ migration: m.name, line, ...c });
      const change = dataChangeOf(s.node);
      if (change) {
        const tables = change.tables.filter((t) => t.schema !== undefined || !temporary.has(t.name));
        if (tables.length > 0) out.dataChanges.push({ migration: m.name, line, verb: change.verb, tables });
      }
    }
  }
  return out;
}

/**
 * The losses those statements mean for a reverse, and the drops left once the
 * conditionally created objects are taken out of them (the reverted
 * migrations are not known to have created those). `reverseDrops(kind,
 * name)` says whether the reverse removes an object of another kind than the
 * dropped ones; `droppedTables` are the tables the reverse drops, whose rows
 * the reverted migrations' own writes go with (already reported). Pure.
 */
export function historyLosses<D extends { kind: string; name: string; holds?: number }>(
  statements: HistoryStatements,
  schema: string,
  drops: D[],
  reverseDrops: (kind: string, name: string) => boolean,
): { drops: D[]; losses: string[] } {
  const ours = (s: string | undefined) => s === undefined || s === schema;
  const losses: string[] = [];
  const adopted = new Set<string>();
  const dropKinds = new Set(["table", "column", "enum value"]);
  for (const c of statements.conditional) {
    // Another schema's objects are outside what the reverse computes; this one's schema is there before any migration.
    if (c.kind === "schema" || !ours(c.schema)) continue;
    let holds: string | undefined;
    if (dropKinds.has(c.kind)) {
      const d = drops.find((x) => x.kind === c.kind && x.name === c.name);
      if (!d) continue;
      adopted.add(`${d.kind} ${d.name}`);
      holds = d.holds === undefined ? undefined : `${d.holds} ${d.kind === "column" ? "non-null values" : "rows"}`;
    } else if (!reverseDrops(c.kind, c.name)) continue;
    const it = `${c.kind} ${c.name}`;
    if (losses.some((l) => l.startsWith(`${it} may have existed before ${c.migration} `))) continue;
    losses.push(`${it} may have existed before ${c.migration} ran (${c.clause}, line ${c.line}): the reverse would drop it${holds ? ` with its ${holds}` : ""}`);
  }
  const dropped = new Set(drops.filter((d) => d.kind === "table" && !adopted.has(`table ${d.name}`)).map((d) => d.name));
  for (const d of statements.dataChanges) {
    const kept = d.tables.filter((t) => !(ours(t.schema) && dropped.has(t.name)));
    if (kept.length === 0) continue;
    const names = kept.map((t) => (t.schema ? `${t.schema}.${t.name}` : t.name)).join(", ");
    losses.push(`${d.migration} changes data (${d.verb} ${names}, line ${d.line}): the reverse does not give back the rows it changed`);
  }
  return { drops: drops.filter((d) => !adopted.has(`${d.kind} ${d.name}`)), losses };
}
