import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { Client } from "pg";
import { withClient } from "../db/client";
import { quoteIdent } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import { readLedger } from "../ledger/ledger";
import { BACKFILL_DIRECTIVE } from "../migrations/backfill";
import { compareMigrationNames, discoverMigrations, findMigration } from "../migrations/discover";
import { computeStatus } from "../migrations/status";
import type { Settings } from "../settings";
import { indexRename, parseSplitInput, type ColumnChange } from "./parse";

/**
 * `pgstack split <migration>`: a column rename or type change, which the
 * running application does not survive, becomes migrations that run around
 * the application rollout:
 *   <name>_1_expand     the new column (nullable, no default yet) and a trigger that keeps old and new in step
 *                       in both directions while both application versions write;
 *   <name>_2_backfill   copies the rows written before (pgstack runs it in batches, see migrations/backfill.ts);
 *   <name>_2_index[_n]  each index or unique constraint of the old column, built CONCURRENTLY on the new one
 *                       (one per folder: Prisma runs a file as one transaction, where CONCURRENTLY is refused);
 *   <name>_3_contract   once every instance runs the new version: NOT NULL without a long lock, the trigger
 *                       and the old column dropped, the default set, the indexes given their final names.
 * The column's current definition (type, NOT NULL, default, indexes) is read from the database the command
 * points at, which must have applied every migration before this one and not this one.
 */
export interface SplitResult {
  original: string;
  migrations: { name: string; part: "expand" | "backfill" | "index" | "contract" }[];
  table: string;
  column: string;
  newColumn: string;
  /** The column the new application version reads and writes (the old name for a type change alone). */
  applicationColumn: string;
  notNull: boolean;
  /** The old column's default (as the database shows it), or null. */
  default: string | null;
}

interface ColumnFacts {
  oid: number;
  attnum: number;
  type: string;
  collation: string | null;
  notNull: boolean;
  default: string | null;
  identity: string;
  generated: string;
  key: { name: string; type: string } | null;
  keyColumns: number;
}

interface IndexFacts {
  name: string;
  unique: boolean;
  method: string;
  columns: { name: string; desc: boolean; nullsFirst: boolean }[];
  hasExpressions: boolean;
  hasPredicate: boolean;
  constraint: string | null;
  constraintType: string | null;
  defaultOpclasses: boolean;
}

const refuse = (message: string, details: Record<string, unknown> = {}) => new PgstackError("E_SPLIT", message, details);

export async function splitMigration(settings: Settings, ref: string, options: { batch?: number } = {}): Promise<SplitResult> {
  const migrations = await discoverMigrations(settings.migrationsDir).catch((err) => {
    throw err;
  });
  const migration = migrations.find((m) => m.name === ref) ?? (await findFolder(settings.migrationsDir, ref, migrations));
  const extra = (await fs.readdir(migration.dir)).filter((f) => f !== "migration.sql");
  if (extra.length > 0) {
    throw refuse(`Migration folder ${migration.name} holds ${extra.join(", ")} besides migration.sql, which split would not know where to put: move ${extra.length > 1 ? "them" : "it"} out, then split.`);
  }
  const { change, others } = await parseSplitInput(migration.sql, migration.name);
  const batch = options.batch ?? 10_000;

  return withClient(settings.databaseUrl, async (client, db) => {
    const status = computeStatus(migrations, await readLedger(client, db.schema));
    const own = status.find((s) => s.name === migration.name)!;
    if (own.state !== "pending") {
      throw refuse(
        `Migration ${migration.name} is ${own.state === "applied" ? "already applied" : `recorded as ${own.state}`} on database ${db.database}: split rewrites only a migration no database has run; put the change in a new migration instead.`,
      );
    }
    const earlier = status.filter((s) => compareMigrationNames(s.name, migration.name) < 0 && s.state !== "applied");
    if (earlier.length > 0) {
      throw refuse(
        `Database ${db.database} has not applied ${earlier.map((s) => s.name).join(", ")}, which come${earlier.length > 1 ? "" : "s"} before ${migration.name}, so it does not show the column as this migration finds it: run \`pgstack apply --all --to ${earlier[earlier.length - 1].name}\` (or point --url at a database that has), then split.`,
      );
    }
    const schema = change.schema ?? db.schema;
    const facts = await columnFacts(client, schema, change);
    const indexes = await indexFacts(client, facts.oid, facts.attnum);
    await refuseWhatCannotBeCarried(client, change, facts, indexes);
    // The file's own `ALTER INDEX <old column's index> RENAME TO ...` (what Prisma writes with a rename) names the new index.
    const indexNames = new Map<string, string>();
    const rest = others.filter((o) => {
      const renamed = indexRename(o.sql);
      if (!renamed || !indexes.some((ix) => ix.name === renamed.from)) return true;
      indexNames.set(renamed.from, renamed.to);
      return false;
    });
    const plan = await planSql(client, change, facts, indexes, schema, batch, indexNames);
    for (const o of rest) plan.expand.push(o.sql + ";");

    const folder = (suffix: string) => `${migration.name}_${suffix}`;
    const files: { name: string; part: SplitResult["migrations"][number]["part"]; sql: string }[] = [
      { name: folder("1_expand"), part: "expand", sql: plan.expand.join("\n\n") + "\n" },
      { name: folder("2_backfill"), part: "backfill", sql: plan.backfill.join("\n") + "\n" },
      ...plan.indexes.map((sql, i) => ({ name: folder(plan.indexes.length > 1 ? `2_index_${i + 1}` : "2_index"), part: "index" as const, sql: sql + "\n" })),
      { name: folder("3_contract"), part: "contract", sql: plan.contract.join("\n") + "\n" },
    ];
    for (const f of files) {
      if (migrations.some((m) => m.name === f.name)) throw refuse(`A migration folder named ${f.name} already exists: remove it, then split.`);
    }
    // The new folders first, then the original goes: a crash in between leaves both, never neither.
    for (const f of files) {
      await fs.mkdir(path.join(settings.migrationsDir, f.name));
      await fs.writeFile(path.join(settings.migrationsDir, f.name, "migration.sql"), f.sql);
    }
    await fs.rm(migration.dir, { recursive: true });
    return {
      original: migration.name,
      migrations: files.map((f) => ({ name: f.name, part: f.part })),
      table: change.table,
      column: change.column,
      newColumn: plan.newColumn,
      applicationColumn: change.newName,
      notNull: facts.notNull,
      default: facts.default,
    };
  });
}

/** The folder `ref` names (full name or the part after the timestamp), or one sentence. */
async function findFolder(dir: string, ref: string, migrations: Awaited<ReturnType<typeof discoverMigrations>>) {
  try {
    return findMigration(migrations, ref, "Migration");
  } catch (err) {
    throw refuse(`Migration '${ref}' is not a folder of ${dir}: give the name of the migration folder to split (\`pgstack status\` lists them).`, { cause: messageOf(err) });
  }
}

async function columnFacts(client: Client, schema: string, change: ColumnChange): Promise<ColumnFacts> {
  const { rows } = await client.query(
    `SELECT c.oid::int AS oid, a.attnum::int AS attnum, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
            pg_get_expr(d.adbin, d.adrelid) AS "default", a.attidentity AS identity, a.attgenerated AS generated,
            CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $3 AND NOT a.attisdropped AND a.attnum > 0
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
       LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, change.table, change.column],
  );
  if (rows.length === 0) {
    throw refuse(`Table ${change.table} has no column ${change.column} in the database (line ${change.statements[0].line} changes it): point --url at a database with every earlier migration applied.`);
  }
  const keys = await client.query<{ name: string; type: string; n: number }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, array_length(i.indkey::int2[], 1) AS n
       FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE i.indrelid = $1 AND i.indisprimary`,
    [rows[0].oid],
  );
  const key = keys.rows[0];
  return { ...(rows[0] as Omit<ColumnFacts, "key" | "keyColumns">), key: key && key.n === 1 ? { name: key.name, type: key.type } : null, keyColumns: key?.n ?? 0 };
}

async function indexFacts(client: Client, oid: number, attnum: number): Promise<IndexFacts[]> {
  const { rows } = await client.query(
    `SELECT ic.relname AS name, i.indisunique AS unique, am.amname AS method, i.indexprs IS NOT NULL AS "hasExpressions", i.indpred IS NOT NULL AS "hasPredicate",
            con.conname AS constraint, con.contype AS "constraintType",
            (SELECT coalesce(bool_and(oc.opcdefault), true) FROM unnest(i.indclass::oid[]) AS x(opc) JOIN pg_opclass oc ON oc.oid = x.opc) AS "defaultOpclasses",
            (SELECT json_agg(json_build_object('name', a.attname, 'desc', (o.opt & 1) = 1, 'nullsFirst', (o.opt & 2) = 2) ORDER BY k.ord)
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(att, ord)
               JOIN unnest(i.indoption::int2[]) WITH ORDINALITY AS o(opt, ord) ON o.ord = k.ord
               LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att) AS columns
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
       LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
      WHERE i.indrelid = $1 AND ($2 = ANY(i.indkey::int2[])
            OR EXISTS (SELECT 1 FROM pg_depend dp WHERE dp.classid = 'pg_class'::regclass AND dp.objid = i.indexrelid AND dp.refobjid = $1 AND dp.refobjsubid = $2))
      ORDER BY ic.relname`,
    [oid, attnum],
  );
  return rows as IndexFacts[];
}

/** Everything split would have to carry over and cannot: one sentence naming it and what to do. */
async function refuseWhatCannotBeCarried(client: Client, change: ColumnChange, facts: ColumnFacts, indexes: IndexFacts[]): Promise<void> {
  const col = `${change.table}.${change.column}`;
  if (facts.identity || facts.generated) {
    throw refuse(`Column ${col} is ${facts.identity ? "an identity" : "a generated"} column, which split cannot keep in step with a copy: change it by hand in a maintenance window, or add a new plain column.`);
  }
  if (!facts.key) {
    throw refuse(
      `Table ${change.table} has ${facts.keyColumns > 1 ? "a primary key of several columns" : "no primary key"}, and the backfill copies rows in batches by a single-column primary key: add one, then split.`,
    );
  }
  if (facts.key.name === change.column) {
    throw refuse(`Column ${col} is the table's primary key, which split cannot move to a new column: keep the key and change the columns that reference it instead.`);
  }
  if (change.newName !== change.column) {
    const taken = await client.query(`SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped`, [facts.oid, change.newName]);
    if (taken.rows.length > 0) throw refuse(`Table ${change.table} already has a column ${change.newName}: rename to a name that is free.`);
  }
  for (const ix of indexes) {
    if (ix.constraintType === "p") continue; // the key: refused above
    if (ix.hasExpressions || ix.hasPredicate || !ix.defaultOpclasses || ix.constraintType === "x") {
      throw refuse(
        `Index ${ix.name} uses ${col} ${ix.hasExpressions ? "in an expression" : ix.hasPredicate ? "in its WHERE clause" : ix.constraintType === "x" ? "in an exclusion constraint" : "with a non-default operator class"}, which split cannot rebuild on the new column: drop it in an earlier migration and create it for the new column after the split.`,
      );
    }
  }
  // A generated column computed from this one: dropping the old column in the contract part would fail
  // after the rollout (the expression names it), so nothing is written.
  const generated = await client.query<{ name: string }>(
    `SELECT DISTINCT a.attname AS name FROM pg_depend dp
       JOIN pg_attrdef ad ON ad.oid = dp.objid
       JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
      WHERE dp.classid = 'pg_attrdef'::regclass AND dp.refobjid = $1 AND dp.refobjsubid = $2 AND a.attgenerated <> '' AND a.attnum <> $2
      ORDER BY 1`,
    [facts.oid, facts.attnum],
  );
  if (generated.rows.length > 0) {
    const names = generated.rows.map((r) => r.name);
    throw refuse(
      `Generated column${names.length > 1 ? "s" : ""} ${names.map((n) => `${change.table}.${n}`).join(", ")} ${names.length > 1 ? "are" : "is"} computed from ${col}, which split cannot move to the new column (the contract part could not drop ${change.column}): drop ${names.length > 1 ? "them" : "it"} in an earlier migration and add ${names.length > 1 ? "them" : "it"} again from the new column after the split.`,
      { generated: names },
    );
  }
  const constraints = await client.query<{ conname: string; contype: string; own: boolean }>(
    `SELECT conname, contype, conrelid = $1 AS own FROM pg_constraint
      WHERE contype IN ('c', 'f') AND ((conrelid = $1 AND $2 = ANY(conkey)) OR (confrelid = $1 AND $2 = ANY(confkey)))
      ORDER BY conname`,
    [facts.oid, facts.attnum],
  );
  const c = constraints.rows[0];
  if (c) {
    throw refuse(
      c.contype === "f"
        ? `Column ${col} is part of foreign key ${c.conname}${c.own ? "" : " of another table"}, which split cannot move to the new column: drop the foreign key in an earlier migration and add it again (NOT VALID, then VALIDATE) after the split.`
        : `Check constraint ${c.conname} uses ${col}, which split cannot move to the new column: drop it in an earlier migration and add it again for the new column (NOT VALID, then VALIDATE) after the split.`,
    );
  }
  const views = await client.query<{ name: string }>(
    `SELECT DISTINCT r.ev_class::regclass::text AS name FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
      WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1 AND d.refobjsubid = $2 AND r.ev_class <> $1`,
    [facts.oid, facts.attnum],
  );
  if (views.rows.length > 0) {
    throw refuse(`View ${views.rows[0].name} uses ${col}, and dropping the old column would need it dropped too: recreate the view on the new column after the split.`);
  }
  const sequences = await client.query<{ name: string }>(
    `SELECT d.objid::regclass::text AS name FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.refobjid = $1 AND d.refobjsubid = $2 AND d.deptype = 'a'
        AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'`,
    [facts.oid, facts.attnum],
  );
  if (sequences.rows.length > 0) {
    throw refuse(`Column ${col} owns sequence ${sequences.rows[0].name} (a serial column), which dropping the old column would drop: give the sequence to no column (ALTER SEQUENCE ... OWNED BY NONE) in an earlier migration, then split.`);
  }
}

interface SqlPlan {
  newColumn: string;
  expand: string[];
  backfill: string[];
  indexes: string[];
  contract: string[];
}

/** An identifier of at most 63 bytes: `base`, or cut with a short hash to stay unique. */
function identifier(base: string): string {
  if (Buffer.byteLength(base) <= 63) return base;
  const hash = createHash("sha256").update(base).digest("hex").slice(0, 8);
  let cut = base;
  while (Buffer.byteLength(cut) > 54) cut = cut.slice(0, -1);
  return `${cut}_${hash}`;
}

async function planSql(
  client: Client,
  change: ColumnChange,
  facts: ColumnFacts,
  indexes: IndexFacts[],
  schema: string,
  batch: number,
  indexNames: Map<string, string>,
): Promise<SqlPlan> {
  const retyped = change.newType !== undefined;
  const renamed = change.newName !== change.column;
  const qualify = (name: string) => (change.schema ? `${quoteIdent(change.schema)}.${quoteIdent(name)}` : quoteIdent(name));
  const table = qualify(change.table);
  // A type change alone keeps the name: the new column has a name of its own until the contract renames it.
  const newColumn = renamed ? change.newName : identifier(`${change.column}_pgstack_new`);
  if (!renamed) {
    const taken = await client.query(`SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped`, [facts.oid, newColumn]);
    if (taken.rows.length > 0) throw refuse(`Table ${change.table} already has a column ${newColumn}, the name split gives the new column until the contract step: drop or rename it, then split.`);
  }
  const oldQ = quoteIdent(change.column);
  const newQ = quoteIdent(newColumn);
  const newType = change.newType ?? facts.type;
  const collate = change.collate ? ` COLLATE ${change.collate}` : !retyped && facts.collation ? ` COLLATE ${facts.collation}` : "";

  // f: the new column's value from a row, and back: the old column's from the new one. Both are plain
  // assignments (to the column, or to a PL/pgSQL variable of the new type), converted as ALTER COLUMN ... TYPE
  // converts, with assignment semantics: a value that does not fit (VARCHAR(5) given 10 characters, an
  // integer overflow) is an error, where an explicit cast (`::VARCHAR(5)`) would silently cut it.
  const forwardOf = (row: string) => {
    if (change.using) return `(SELECT (${change.using}) FROM (SELECT ${row}.*) AS ${quoteIdent(change.table)})`;
    return `${row}.${oldQ}`;
  };
  const forwardSql = change.using ? `(${change.using})` : oldQ;
  if (retyped) {
    // The server judges now, as the plain ALTER would: the assignment exists (an INSERT ... SELECT assigns like
    // ALTER COLUMN TYPE does), and the old default, which the contract sets on the new column, fits the new type.
    await client.query("BEGIN");
    try {
      await probe(client, `CREATE TEMPORARY TABLE pgstack_split_probe (${quoteIdent(change.newName)} ${newType})`, (e) =>
        refuse(`The new type ${newType} of ${change.table}.${change.column} is not a type the database knows (${e}): fix the type, then split.`),
      );
      await probe(client, `INSERT INTO pgstack_split_probe SELECT ${forwardSql} FROM ${qualifiedIn(schema, change)} LIMIT 0`, (e) =>
        refuse(`The new type of ${change.table}.${change.column} cannot be computed from the old column (${e}): fix the type or the USING expression, then split.`),
      );
      if (facts.default) {
        await probe(client, `ALTER TABLE pgstack_split_probe ALTER COLUMN ${quoteIdent(change.newName)} SET DEFAULT ${facts.default}`, (e) =>
          refuse(`The default of ${change.table}.${change.column} (${facts.default}) does not fit the new type ${newType} (${e}): change the default in an earlier migration, then split.`),
        );
        // Evaluated for its value (too long, out of range); a sequence's nextval() is not, which no rollback would undo.
        if (!/\bnextval\s*\(/i.test(facts.default)) await probe(client, `INSERT INTO pgstack_split_probe DEFAULT VALUES`, (e) =>
          refuse(`The default of ${change.table}.${change.column} (${facts.default}) does not fit the new type ${newType} (${e}): change the default in an earlier migration, then split.`),
        );
      }
    } finally {
      await client.query("ROLLBACK");
    }
    await probe(client, `SELECT CAST(NULL::${newType} AS ${facts.type})`, (e) =>
      refuse(
        `There is no way back from ${newType} to ${facts.type} (${e}), so the running version's column could not be kept in step with what the new version writes: add a cast, or add the new column under a new name and move the application over by hand.`,
      ),
    );
  }
  const fn = identifier(`pgstack_sync_${change.table}_${newColumn}`);
  const fnQ = qualify(fn);
  const f = forwardOf("NEW");
  // In the function: f as converted (a variable of the new type) for a type change, the old column itself for a rename.
  const fv = retyped ? "f" : f;
  const header = (part: string, what: string) =>
    [`-- pgstack split: ${part}, of the change to ${change.table}.${change.column}${renamed ? ` (renamed to ${change.newName})` : ""}${retyped ? ` (type ${facts.type} -> ${newType})` : ""}.`, ...what.split("\n").map((l) => `-- ${l}`)].join("\n");

  const expand = [
    header("expand (1/3)", `The new column, nullable and without a default until the contract step, and a trigger that keeps\n${change.column} and ${newColumn} in step in both directions while both application versions write.`),
    `ALTER TABLE ${table} ADD COLUMN ${newQ} ${newType}${collate};`,
    `CREATE FUNCTION ${fnQ}() RETURNS trigger LANGUAGE plpgsql AS $pgstack$${retyped ? `
DECLARE
  -- ${change.column} converted to ${newType} by assignment (as ALTER COLUMN TYPE converts): a value that does not fit fails the write.
  f ${newType};` : ""}
BEGIN
  IF TG_OP = 'INSERT' THEN
    -- A write of the version that knows only ${change.column} leaves ${newColumn} NULL; one of the new version sets ${newColumn}.
    IF NEW.${newQ} IS NULL THEN
      NEW.${newQ} := ${f};
    ELSE${retyped ? `
      f := ${f};` : ""}
      IF NEW.${newQ} IS DISTINCT FROM ${fv} THEN
        NEW.${oldQ} := NEW.${newQ};
      END IF;
    END IF;
  ELSIF NEW.${newQ} IS DISTINCT FROM OLD.${newQ} THEN
    -- ${newColumn} was written (by the new version, or the backfill with the value ${change.column} already maps to).${retyped ? `
    f := ${f};` : ""}
    IF NEW.${newQ} IS DISTINCT FROM ${fv} THEN
      NEW.${oldQ} := NEW.${newQ};
    END IF;
  ELSIF NEW.${oldQ} IS DISTINCT FROM OLD.${oldQ} OR NEW.${newQ} IS NULL THEN
    -- ${change.column} was written, or the row predates the trigger and is not backfilled yet.
    NEW.${newQ} := ${f};
  END IF;
  RETURN NEW;
END
$pgstack$;`,
    // For a rename the function runs only for a row whose columns differ (WHEN is evaluated without calling
    // PL/pgSQL): the backfill's own UPDATE, which writes new = old, costs no call. A type change converts by
    // assignment, which only PL/pgSQL does (WHEN would need an explicit cast, which cuts instead of failing):
    // then every write calls the function.
    `CREATE TRIGGER ${quoteIdent(fn)} BEFORE INSERT OR UPDATE ON ${table} FOR EACH ROW${retyped ? "" : ` WHEN (NEW.${newQ} IS DISTINCT FROM ${f})`} EXECUTE FUNCTION ${fnQ}();`,
  ];

  const backfill = [
    `${BACKFILL_DIRECTIVE} key=${quoteIdent(facts.key!.name)} batch=${batch}`,
    header("backfill (2/3)", `Copies ${change.column} into ${newColumn} for the rows written before the expand step. prisma migrate deploy runs\nthis UPDATE as it stands; pgstack runs it in batches of ${batch} rows by ${facts.key!.name}, each its own short transaction,\nand continues from the first row still to copy after an interruption.`),
    // SET assigns (a value that does not fit stops the backfill); the WHERE only picks the rows still to copy, where
    // an explicit cast is enough: a copied row holds a value that fit, which both conversions give alike.
    `UPDATE ${table} SET ${newQ} = ${forwardSql} WHERE ${newQ} IS DISTINCT FROM ${retyped ? `${forwardSql}::${newType}` : forwardSql};`,
  ];

  // Indexes: built CONCURRENTLY on the new column under a name of their own, renamed to their final name in the contract.
  const indexSql: string[] = [];
  const renames: string[] = [];
  const constraints: string[] = [];
  const existing = new Set((await client.query<{ relname: string }>(`SELECT relname FROM pg_class WHERE relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = $1)`, [facts.oid])).rows.map((r) => r.relname));
  for (const ix of indexes) {
    const finalName = indexNames.get(ix.name) ?? (renamed && ix.name.includes(change.column) ? identifier(ix.name.split(change.column).join(change.newName)) : ix.name);
    const buildName = finalName !== ix.name && !existing.has(finalName) ? finalName : identifier(`${ix.name}_pgstack_new`);
    existing.add(buildName);
    const cols = ix.columns
      .map((c) => `${quoteIdent(c.name === change.column ? newColumn : c.name)}${c.desc ? " DESC" : ""}${c.nullsFirst !== c.desc ? (c.nullsFirst ? " NULLS FIRST" : " NULLS LAST") : ""}`)
      .join(", ");
    indexSql.push(
      [
        header("index (between 2/3 and 3/3)", `${ix.name} of ${change.column}, built on ${newColumn} without blocking writes (CONCURRENTLY, so alone in its migration).`),
        // A unique index is a contract change in general (the running version may write duplicates); here the old
        // column's unique index already refuses them through the trigger, and the new version needs it live
        // (INSERT ... ON CONFLICT on the new column): it belongs to the expand phase, before the rollout.
        ...(ix.unique ? [`-- pgstack:expand the old column's unique index ${ix.name} guards the same values through the sync trigger, and the new version's ON CONFLICT needs this one before it goes live`] : []),
        `CREATE ${ix.unique ? "UNIQUE " : ""}INDEX CONCURRENTLY ${quoteIdent(buildName)} ON ${table} USING ${ix.method} (${cols});`,
      ].join("\n"),
    );
    if (buildName !== finalName) renames.push(`ALTER INDEX ${qualify(buildName)} RENAME TO ${quoteIdent(finalName)};`);
    if (ix.constraint && ix.constraintType === "u") {
      const conName = renamed && ix.constraint.includes(change.column) ? identifier(ix.constraint.split(change.column).join(change.newName)) : ix.constraint;
      constraints.push(`ALTER TABLE ${table} ADD CONSTRAINT ${quoteIdent(conName)} UNIQUE USING INDEX ${quoteIdent(finalName)};`);
    }
  }

  const check = identifier(`${change.table}_${change.newName}_pgstack_not_null`);
  const finalQ = quoteIdent(change.newName);
  const contract = [
    header(
      "contract (3/3)",
      `Run once every application instance is the new version. ${facts.notNull ? `NOT NULL comes from a CHECK validated without blocking writes\n(each statement before BEGIN commits on its own); then, in` : "In"} one short transaction: the trigger and the old column go${!renamed ? ",\nthe new column takes the old name" : ""}${facts.default ? ", the default is set" : ""}.`,
    ),
    ...(facts.notNull
      ? [`ALTER TABLE ${table} ADD CONSTRAINT ${quoteIdent(check)} CHECK (${newQ} IS NOT NULL) NOT VALID;`, `ALTER TABLE ${table} VALIDATE CONSTRAINT ${quoteIdent(check)};`]
      : []),
    "BEGIN;",
    `DROP TRIGGER ${quoteIdent(fn)} ON ${table};`,
    `DROP FUNCTION ${fnQ}();`,
    // Lint's ban-drop-column asks for this acceptance: the values live on in the new column, which the new version uses.
    `-- pgstack:allow ban-drop-column its values were copied to ${newColumn}${renamed ? ", which the new application version uses" : ", which takes its name next"}`,
    `ALTER TABLE ${table} DROP COLUMN ${oldQ};`,
    ...(!renamed ? [`ALTER TABLE ${table} RENAME COLUMN ${newQ} TO ${finalQ};`] : []),
    ...(facts.notNull ? [`ALTER TABLE ${table} ALTER COLUMN ${finalQ} SET NOT NULL;`, `ALTER TABLE ${table} DROP CONSTRAINT ${quoteIdent(check)};`] : []),
    ...(facts.default ? [`ALTER TABLE ${table} ALTER COLUMN ${finalQ} SET DEFAULT ${facts.default};`] : []),
    ...renames,
    ...constraints,
    "COMMIT;",
  ];
  return { newColumn, expand, backfill, indexes: indexSql, contract };
}

function qualifiedIn(schema: string, change: ColumnChange): string {
  return `${quoteIdent(schema)}.${quoteIdent(change.table)}`;
}

/** Runs a check query the database itself judges; its error becomes the sentence `refusal` makes. */
async function probe(client: Client, sql: string, refusal: (error: string) => PgstackError): Promise<void> {
  try {
    await client.query(sql);
  } catch (err) {
    throw refusal(messageOf(err).split("\n")[0]);
  }
}
