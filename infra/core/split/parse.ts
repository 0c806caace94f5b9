import { PgstackError } from "../errors";
import { classifyMigration } from "../compat";
import { loadSqlParser, splitStatements, type Statement } from "../migrations/sql";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const pgQuery = require("libpg-query") as typeof import("libpg-query");

/**
 * What `pgstack split` reads in a migration: the one column it turns into an
 * expand/contract pair (renamed, retyped, or both), and the other statements,
 * which go into the expand part when the running application survives them.
 */
export interface ColumnChange {
  /** As written: schema (if qualified) and table. */
  schema?: string;
  table: string;
  /** The column today. */
  column: string;
  /** Its name after the change (the same for a type change alone). */
  newName: string;
  /** The new type as written (`BIGINT`, `VARCHAR(20)`), for a type change. */
  newType?: string;
  /** `COLLATE ...` of the type change, as written. */
  collate?: string;
  /** The USING expression as written, for a type change that has one. */
  using?: string;
  /** The statements that make the change, for messages. */
  statements: Statement[];
}

export interface SplitInput {
  change: ColumnChange;
  /** Statements that stay as they are, in the expand part (in file order). */
  others: Statement[];
}

/** Reads a migration for split; refuses (one sentence) what it cannot turn into a safe pair. */
export async function parseSplitInput(sql: string, migrationName: string): Promise<SplitInput> {
  await loadSqlParser();
  const statements = splitStatements(sql, migrationName);
  const renames: { statement: Statement; schema?: string; table: string; from: string; to: string }[] = [];
  const retypes: { statement: Statement; schema?: string; table: string; column: string; type: string; collate?: string; using?: string }[] = [];
  const others: Statement[] = [];
  for (const statement of statements) {
    const node = firstNode(statement.sql);
    const [type] = Object.keys(node);
    const body = node[type] as Record<string, any>;
    if (type === "RenameStmt" && body.renameType === "OBJECT_COLUMN" && body.relationType === "OBJECT_TABLE") {
      renames.push({ statement, schema: body.relation.schemaname, table: body.relation.relname, from: body.subname, to: body.newname });
      continue;
    }
    if (type === "AlterTableStmt" && (body.objtype ?? "OBJECT_TABLE") === "OBJECT_TABLE") {
      const cmds = (body.cmds ?? []).map((c: any) => c.AlterTableCmd);
      const retype = cmds.filter((c: any) => c.subtype === "AT_AlterColumnType");
      if (retype.length > 0) {
        if (cmds.length > 1) {
          throw new PgstackError(
            "E_SPLIT",
            `Line ${statement.line} of ${migrationName} changes a column's type together with ${cmds.length - 1} other change(s) in one ALTER TABLE: give the type change an ALTER TABLE statement of its own, then split.`,
          );
        }
        const others = [...new Set(columnsRead(retype[0].def?.ColumnDef?.raw_default))].filter((c) => c !== retype[0].name);
        if (others.length > 0) {
          // The sync trigger recomputes the new column when this column is written, not when those are: the
          // old version changing only them would leave the new column holding a value USING never gives.
          throw new PgstackError(
            "E_SPLIT",
            `The USING expression at line ${statement.line} of ${migrationName} reads ${others.length > 1 ? "columns" : "column"} ${others.join(", ")} besides ${retype[0].name}, which split cannot keep in step while the old version writes ${others.length > 1 ? "them" : "it"}: compute the value from ${retype[0].name} alone, or add the new column yourself and move the application over by hand.`,
            { columns: others },
          );
        }
        retypes.push({ statement, schema: body.relation.schemaname, table: body.relation.relname, column: retype[0].name, ...typeClauses(statement.sql) });
        continue;
      }
    }
    others.push(statement);
  }
  if (renames.length === 0 && retypes.length === 0) {
    throw new PgstackError(
      "E_SPLIT",
      `Migration ${migrationName} neither renames a column (ALTER TABLE ... RENAME COLUMN) nor changes a column's type (ALTER COLUMN ... TYPE): split turns only those two into an expand and a contract migration.`,
    );
  }
  if (renames.length > 1 || retypes.length > 1) {
    const extra = (renames.length > 1 ? renames[1] : retypes[1]).statement;
    throw new PgstackError(
      "E_SPLIT",
      `Migration ${migrationName} changes more than one column (again at line ${extra.line}): split turns one column at a time, so move each other change into a migration of its own and split each.`,
    );
  }
  // By what pgstack finds, not a `-- pgstack:expand` declaration (which makes a rename expand without making it safe).
  if ((await classifyMigration(sql)).reasons.length === 0) {
    throw new PgstackError(
      "E_SPLIT",
      `Migration ${migrationName} changes only what it creates itself, so the running application keeps working through it: there is nothing to split, apply it as it is.`,
    );
  }
  const rename = renames[0];
  const retype = retypes[0];
  if (rename && retype) {
    // The type change names the column as it is at that point of the file.
    const retypeFirst = retype.statement.offset < rename.statement.offset;
    const expected = retypeFirst ? rename.from : rename.to;
    if (retype.column !== expected || retype.table !== rename.table || retype.schema !== rename.schema) {
      throw new PgstackError(
        "E_SPLIT",
        `Migration ${migrationName} renames ${rename.table}.${rename.from} but changes the type of another column (line ${retype.statement.line}): split turns one column at a time, so move the other change into a migration of its own.`,
      );
    }
  }
  if (rename && retype?.using && retype.statement.offset > rename.statement.offset) {
    throw new PgstackError(
      "E_SPLIT",
      `Migration ${migrationName} changes the type of ${rename.to} with a USING expression after renaming it (line ${retype.statement.line}): put the type change (USING the old name ${rename.from}) before the rename, then split.`,
    );
  }
  const base = rename ?? { schema: retype.schema, table: retype.table, from: retype.column, to: retype.column };
  const change: ColumnChange = {
    schema: base.schema,
    table: base.table,
    column: base.from,
    newName: base.to,
    ...(retype ? { newType: retype.type, collate: retype.collate, using: retype.using } : {}),
    statements: [rename?.statement, retype?.statement].filter((s): s is Statement => Boolean(s)),
  };
  // The rest of the file as the compat classifier sees it: the split statements blanked, every other
  // statement on its own line, so what the migration itself creates still counts as created.
  let rest = sql;
  for (const st of change.statements) {
    const end = st.offset + st.sql.length;
    const semi = rest.slice(end).match(/^\s*;/)?.[0].length ?? 0;
    rest = rest.slice(0, st.offset) + rest.slice(st.offset, end + semi).replace(/[^\n]/g, " ") + rest.slice(end + semi);
  }
  const { reasons } = await classifyMigration(rest);
  if (reasons.length > 0) {
    const r = reasons[0];
    throw new PgstackError(
      "E_SPLIT",
      `Line ${r.line} of ${migrationName} also breaks the running application (${r.rule}): ${CONTRACT_ADVICE[r.rule] ?? r.reason.replace(/\.$/, "")}; move it out of this migration, then split.`,
      { line: r.line, rule: r.rule },
    );
  }
  return { change, others };
}

/** The column names an expression's parse tree reads (the last part of each reference; `*` for a whole row). */
function columnsRead(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) {
    for (const n of node) columnsRead(n, out);
  } else if (node && typeof node === "object") {
    const ref = (node as Record<string, any>).ColumnRef;
    if (ref) {
      const last = ref.fields?.[ref.fields.length - 1];
      out.push(last?.String?.sval ?? last?.String?.str ?? "*");
    } else {
      for (const v of Object.values(node)) columnsRead(v, out);
    }
  }
  return out;
}

function firstNode(sql: string): Record<string, unknown> {
  const parsed = pgQuery.parseSync(sql);
  return ((parsed.stmts ?? [])[0]?.stmt ?? {}) as Record<string, unknown>;
}

/**
 * The type, COLLATE and USING of `ALTER TABLE ... ALTER COLUMN c [SET DATA] TYPE t [COLLATE x] [USING e]`
 * as written: the parse tree has no end offsets, so the statement's tokens are cut at TYPE, COLLATE and USING
 * (outside parentheses).
 */
function typeClauses(sql: string): { type: string; collate?: string; using?: string } {
  const bytes = Buffer.from(sql, "utf8");
  const tokens = pgQuery.scanSync(sql).tokens;
  let depth = 0;
  const marks: { word: string; start: number; end: number }[] = [];
  // Past `ALTER TABLE <t> ALTER [COLUMN] <c>`: a column may be called "type".
  const second = tokens.findIndex((t, i) => i > 0 && t.text.toUpperCase() === "ALTER");
  let from = second + 1;
  if (tokens[from]?.text.toUpperCase() === "COLUMN") from++;
  for (const t of tokens.slice(from + 1)) {
    const word = t.text.toUpperCase();
    if (t.text === "(") depth++;
    else if (t.text === ")") depth--;
    else if (depth === 0 && ["TYPE", "COLLATE", "USING"].includes(word) && !marks.some((m) => m.word === word)) {
      marks.push({ word, start: t.start, end: t.end });
      if (word === "USING") break; // the rest is the expression
    }
  }
  const piece = (word: string) => {
    const i = marks.findIndex((m) => m.word === word);
    if (i < 0) return undefined;
    const end = i + 1 < marks.length ? marks[i + 1].start : bytes.length;
    return bytes.subarray(marks[i].end, end).toString("utf8").trim().replace(/;$/, "").trim();
  };
  return { type: piece("TYPE")!, collate: piece("COLLATE"), using: piece("USING") };
}

/** What to do instead of a contract statement, by the compat rule it breaks (see infra/core/compat). */
export const CONTRACT_ADVICE: Record<string, string> = {
  "drop-column": "ship the application version that no longer reads the column first, then drop it in a later migration",
  "drop-table": "ship the application version that no longer uses the table first, then drop it in a later migration",
  "drop-object": "ship the application version that no longer uses it first, then drop it in a later migration",
  "set-not-null": "add a CHECK (... IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL, once every running version writes the column",
  "add-required-column": "add the column with a default, or nullable, and make it required once every running version writes it",
  "drop-default": "drop the default once no running version relies on it",
  "rename-table": "create the new name beside the old one, move the application over, then drop the old one in a later migration",
  "rename-type": "create the new name beside the old one, move the application over, then drop the old one in a later migration",
  "rename-enum-value": "add the new value (ALTER TYPE ... ADD VALUE), move the application over, then stop using the old one",
  "add-unique": "build the unique index CONCURRENTLY in a migration of its own once the application writes no duplicates",
  "add-check": "add it in a migration of its own once every running version's writes satisfy it (NOT VALID, then VALIDATE in a later migration)",
  "add-foreign-key": "add it in a migration of its own once every running version's writes satisfy it (NOT VALID, then VALIDATE in a later migration)",
  "delete-all-rows": "delete the rows in a migration of its own, once the application no longer uses them",
  "rename-column": "split renames one column at a time: move it into a migration of its own and split that",
  "change-column-type": "split changes one column at a time: move it into a migration of its own and split that",
};

/** `ALTER INDEX a RENAME TO b`: its two names. */
export function indexRename(sql: string): { from: string; to: string } | undefined {
  const node = firstNode(sql).RenameStmt as Record<string, any> | undefined;
  if (!node || node.renameType !== "OBJECT_INDEX") return undefined;
  return { from: node.relation.relname, to: node.newname };
}
