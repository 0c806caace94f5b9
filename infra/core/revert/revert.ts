import { randomBytes } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import type { Client } from "pg";
import { createClient } from "@pgkit/client";
import { Migration as MigraMigration, PostgreSQL as Inspected } from "@pgkit/migra";
import { endPgkitClient, sleep, withClient } from "../db/client";
import { withAdvisoryLock } from "../db/deployers";
import { parseDatabaseUrl, quoteIdent, withDatabase } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import { failpoint } from "../failpoint";
import { ensureLedger, ledgerExists, ledgerTable, readLedger } from "../ledger/ledger";
import type { Logger } from "../logger";
import { discoverMigrations, type Migration } from "../migrations/discover";
import { applyMigrations } from "../migrations/runner";
import { errorLine, isTransactionControl, loadSqlParser, splitStatements } from "../migrations/sql";
import { copyForRehearsal } from "../rehearsal/rehearse";
import { historyLosses, readHistoryStatements } from "./history";
import type { Settings } from "../settings";
import { dumpSchema } from "../snapshot/dump";
import { recordRollbackIntent } from "../snapshot/intent";

/**
 * A data-keeping rollback: instead of restoring a snapshot (and discarding
 * every write since), run the reverse of the migrations applied after
 * `target`, computed from the history's own schemas: the migrations are
 * replayed once into a throwaway database, its schema captured at `target`
 * and at the newest reverted migration (the head), and migra's difference
 * head -> target is the reverse (unless every reverted migration has a
 * hand-written `down.sql`). Objects the history never made (a hand-made
 * table, another service's, a view or index added by hand) are in neither capture, so
 * the reverse never touches them: they are reported as drift. An object the
 * reverse must change that differs in the database from the replayed head is
 * refused, naming it.
 *
 * Before anything runs the plan names what the reverse drops (with the rows
 * or values it holds now) and what it cannot give back (data of tables and
 * columns the reverted migrations dropped, values a type change rewrote);
 * the latter needs `acceptLoss`. The reverse is rehearsed on a throwaway copy
 * first and must leave it with the target's schema plus whatever the copy had
 * outside the history (`pg_dump -s` compared); then it runs on the database
 * in one transaction with the ledger rows marked rolled back, under the
 * deployer lock.
 */
export interface DroppedObject {
  kind: "table" | "column" | "enum value" | "constraint";
  /** `table`, `table.column`, `type.value`, or the constraint's name. */
  name: string;
  /** Rows (table, enum value) or non-null values (column) it holds now; undefined for constraints. */
  holds?: number;
}

export interface RevertPlan {
  database: string;
  /** The last migration kept; null reverts every applied one. */
  target: string | null;
  /** The migrations reverted, newest first. */
  reverted: string[];
  /** The reverse SQL. */
  sql: string;
  source: "down.sql" | "computed";
  /** Created by the reverted migrations; the reverse drops them with what they hold. Reported, not refused. */
  drops: DroppedObject[];
  /** What the reverse cannot give back, one sentence each; refused without acceptLoss. */
  losses: string[];
  /** Objects of the database the history does not make as they are (made by hand, by another service, changed since): left as they are. */
  drift: string[];
  /** `pg_dump -s` of the history replayed up to the target: what the rehearsal must end with (plus the drift). */
  targetSchema: string;
  /** `pg_dump -s` of the history replayed up to the newest reverted migration. */
  headSchema: string;
}

export interface RevertOptions {
  /** Keep migrations up to and including this one; revert the applied ones after it. */
  to: string | null;
  log: Logger;
  /** Called with each phase's duration (the benchmark's breakdown). */
  onPhase?: (phase: string, ms: number) => void;
}

interface Catalog {
  tables: Set<string>;
  columns: Map<string, string>; // "table.column" -> type
  enumValues: Set<string>; // "type.value"
  constraints: Map<string, string>; // name -> table
}

async function readCatalog(client: Client, schema: string): Promise<Catalog> {
  const columns = await client.query<{ t: string; c: string; type: string }>(
    `SELECT cl.relname AS t, a.attname AS c, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a JOIN pg_class cl ON cl.oid = a.attrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
      WHERE n.nspname = $1 AND cl.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND cl.relname <> '_prisma_migrations'`,
    [schema],
  );
  const enums = await client.query<{ v: string }>(
    `SELECT t.typname || '.' || e.enumlabel AS v FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1`,
    [schema],
  );
  const constraints = await client.query<{ name: string; t: string }>(
    `SELECT c.conname AS name, cl.relname AS t FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
      WHERE n.nspname = $1 AND c.contype IN ('c', 'f', 'u', 'x') AND cl.relname <> '_prisma_migrations'`,
    [schema],
  );
  return {
    tables: new Set(columns.rows.map((r) => r.t)),
    columns: new Map(columns.rows.map((r) => [`${r.t}.${r.c}`, r.type])),
    enumValues: new Set(enums.rows.map((r) => r.v)),
    constraints: new Map(constraints.rows.map((r) => [r.name, r.t])),
  };
}

/** What the reverse drops and what it cannot give back, from the catalogs now and at the target. Pure. */
export function compareCatalogs(now: Catalog, before: Catalog): { drops: DroppedObject[]; losses: string[] } {
  const drops: DroppedObject[] = [];
  const losses: string[] = [];
  for (const t of [...now.tables].sort()) if (!before.tables.has(t)) drops.push({ kind: "table", name: t });
  for (const [col, type] of [...now.columns].sort()) {
    const table = col.slice(0, col.indexOf("."));
    if (!before.tables.has(table)) continue;
    const was = before.columns.get(col);
    if (was === undefined) drops.push({ kind: "column", name: col });
    else if (was !== type) losses.push(`column ${col} was changed from ${was} to ${type}: converting it back may not give back the values it held`);
  }
  for (const v of [...now.enumValues].sort()) {
    const type = v.slice(0, v.indexOf("."));
    if ([...before.enumValues].some((b) => b.startsWith(`${type}.`)) && !before.enumValues.has(v)) drops.push({ kind: "enum value", name: v });
  }
  // Indexes hold no data of their own: the reverse drops them without a word here.
  for (const [name, table] of [...now.constraints].sort()) if (before.tables.has(table) && !before.constraints.has(name)) drops.push({ kind: "constraint", name });
  for (const t of [...before.tables].sort()) if (!now.tables.has(t)) losses.push(`table ${t} was dropped by a reverted migration: the reverse recreates it empty`);
  for (const col of [...before.columns.keys()].sort()) {
    const table = col.slice(0, col.indexOf("."));
    if (now.tables.has(table) && !now.columns.has(col)) losses.push(`column ${col} was dropped by a reverted migration: the reverse recreates it without the values it held`);
  }
  for (const v of [...before.enumValues].sort()) {
    const type = v.slice(0, v.indexOf("."));
    if ([...now.enumValues].some((n) => n.startsWith(`${type}.`)) && !now.enumValues.has(v)) losses.push(`enum value ${v} was removed by a reverted migration: rows that held it were changed and stay so`);
  }
  return { drops, losses };
}

/** Rows a dropped table holds, non-null values of a dropped column, rows holding a dropped enum value. */
async function countHeld(client: Client, schema: string, drops: DroppedObject[], now: Catalog): Promise<void> {
  const q = (t: string) => `${quoteIdent(schema)}.${quoteIdent(t)}`;
  for (const d of drops) {
    if (d.kind === "table") d.holds = Number((await client.query(`SELECT count(*) AS n FROM ${q(d.name)}`)).rows[0].n);
    else if (d.kind === "column") {
      const [t, c] = [d.name.slice(0, d.name.indexOf(".")), d.name.slice(d.name.indexOf(".") + 1)];
      d.holds = Number((await client.query(`SELECT count(${quoteIdent(c)}) AS n FROM ${q(t)}`)).rows[0].n);
    } else if (d.kind === "enum value") {
      const [type, value] = [d.name.slice(0, d.name.indexOf(".")), d.name.slice(d.name.indexOf(".") + 1)];
      let n = 0;
      for (const [col, colType] of now.columns) {
        if (colType.replace(/"/g, "") !== type) continue;
        const [t, c] = [col.slice(0, col.indexOf(".")), col.slice(col.indexOf(".") + 1)];
        n += Number((await client.query(`SELECT count(*) AS n FROM ${q(t)} WHERE ${quoteIdent(c)}::text = $1`, [value])).rows[0].n);
      }
      d.holds = n;
    }
  }
}

/** The migrations applied (finished, not rolled back) after `to`, newest first. */
async function appliedAfter(url: string, migrations: Migration[], to: string | null): Promise<string[]> {
  if (to !== null && !migrations.some((m) => m.name === to)) {
    throw new PgstackError("E_USAGE", `Migration '${to}' is not in the migrations folder: name the last migration to keep (see \`pgstack status\`); nothing was changed.`);
  }
  const rows = await withClient(url, (c) => readLedger(c), { applicationName: "pgstack revert" });
  const applied = new Set(rows.filter((r) => r.finishedAt !== null && r.rolledBackAt === null).map((r) => r.migrationName));
  if (to !== null && !applied.has(to)) throw new PgstackError("E_USAGE", `Migration '${to}' is not applied, so there is nothing after it to revert; nothing was changed.`);
  const partial = rows.filter((r) => r.finishedAt === null && r.rolledBackAt === null).map((r) => r.migrationName);
  if (partial.length > 0) {
    throw new PgstackError("E_REVERT", `Migration ${partial[0]} failed part-way and is not resolved: restore the pre-update snapshot instead (npm run rollback), or resolve it first; nothing was changed.`);
  }
  return migrations
    .map((m) => m.name)
    .filter((n) => applied.has(n) && (to === null || n > to))
    .reverse();
}

/** Kinds of schema object migra inspects, with the word the reports use. */
export const OBJECT_KINDS = [
  ["tables", "table"],
  ["views", "view"],
  ["materialized_views", "materialized view"],
  ["functions", "function"],
  ["sequences", "sequence"],
  ["constraints", "constraint"],
  ["indexes", "index"],
  ["enums", "enum"],
  ["domains", "domain"],
  ["composite_types", "type"],
  ["extensions", "extension"],
  ["collations", "collation"],
  ["triggers", "trigger"],
  ["rlspolicies", "policy"],
] as const;

interface SchemaObject {
  schema?: string;
  equals(other: unknown): boolean;
}

/** An inspected schema's objects by "kind name" (the name unquoted), of `schema` only. */
function objectsOf(inspected: Inspected, schema: string): Map<string, SchemaObject> {
  const out = new Map<string, SchemaObject>();
  for (const [prop, kind] of OBJECT_KINDS) {
    const objects = ((inspected as unknown as Record<string, Record<string, SchemaObject> | undefined>)[prop] ?? {}) as Record<string, SchemaObject>;
    for (const [key, o] of Object.entries(objects)) {
      // Extensions are named without a schema; the rest belong to one.
      if (prop !== "extensions" && o.schema !== undefined && o.schema !== schema) continue;
      out.set(`${kind} ${key.replace(/"/g, "")}`, o);
    }
  }
  return out;
}

export interface ObjectComparison {
  /** Objects the reverse changes: made, changed or removed between the target and the head. */
  touched: string[];
  /** Touched objects the database does not hold as the head has them, with why. */
  conflicts: string[];
  /** Objects of the database that the head does not have as they are, with why; the reverse leaves them alone. */
  drift: string[];
}

/** Which objects the reverse changes, which of them the database holds otherwise, and its drift. Pure over the three schemas. */
export function compareObjects(target: Map<string, SchemaObject>, head: Map<string, SchemaObject>, live: Map<string, SchemaObject>): ObjectComparison {
  const touched = [...new Set([...target.keys(), ...head.keys()])].filter((k) => {
    const [t, h] = [target.get(k), head.get(k)];
    return !t || !h || !t.equals(h);
  });
  const touchedSet = new Set(touched);
  const conflicts: string[] = [];
  const drift: string[] = [];
  for (const k of [...new Set([...head.keys(), ...live.keys()])].sort()) {
    const [h, l] = [head.get(k), live.get(k)];
    const why = !l ? "missing from the database" : !h ? "not made by the migration history" : l.equals(h) ? undefined : "changed outside the migrations";
    if (!why) continue;
    if (touchedSet.has(k)) conflicts.push(`${k} (${why})`);
    else drift.push(`${k} (${why})`);
  }
  return { touched: touched.sort(), conflicts, drift };
}

interface Capture {
  inspected: Inspected;
  catalog: Catalog;
  dependents: Dependent[];
  dump?: string;
}

/** An object that PostgreSQL records as depending on a table of the schema (or one of its columns). */
export interface Dependent {
  /** pg_describe_object's words ("trigger users_nick on table users"), a view named for its rule. */
  what: string;
  table: string;
  /** The column depended on; null when on the whole table. */
  column: string | null;
}

async function readDependents(client: Client, schema: string): Promise<Dependent[]> {
  // Normal and automatic dependencies (a trigger, index, constraint, policy, view's rule, default, an
  // SQL-standard function body) on the schema's tables; internal ones (row type, toast) are the table itself.
  const { rows } = await client.query<Dependent>(
    `SELECT DISTINCT
            coalesce(CASE WHEN d.classid = 'pg_rewrite'::regclass
                 THEN (SELECT CASE v.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END || v.relname
                         FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class WHERE r.oid = d.objid AND v.relkind IN ('v', 'm')) END,
                 pg_describe_object(d.classid, d.objid, d.objsubid)) AS what,
            cl.relname AS table, a.attname AS column
       FROM pg_depend d
       JOIN pg_class cl ON d.refclassid = 'pg_class'::regclass AND cl.oid = d.refobjid
       JOIN pg_namespace n ON n.oid = cl.relnamespace
       LEFT JOIN pg_attribute a ON d.refobjsubid > 0 AND a.attrelid = cl.oid AND a.attnum = d.refobjsubid
      WHERE n.nspname = $1 AND cl.relkind IN ('r', 'p') AND d.deptype IN ('n', 'a')`,
    [schema],
  );
  // PostgreSQL records nothing of a PL/pgSQL (or quoted SQL) body: a function whose body names a table as a word counts as depending on it.
  const tables = [...new Set((await client.query<{ t: string }>(
    `SELECT cl.relname AS t FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = $1 AND cl.relkind IN ('r', 'p')`,
    [schema],
  )).rows.map((r) => r.t))];
  const functions = await client.query<{ what: string; body: string }>(
    `SELECT 'function ' || p.oid::regprocedure::text AS what, p.prosrc AS body FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND p.prosrc IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')`,
    [schema],
  );
  for (const f of functions.rows) {
    for (const t of tables) {
      if (new RegExp(`(^|[^\\w$])"?${t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"?($|[^\\w$])`, "i").test(f.body)) rows.push({ what: f.what, table: t, column: null });
    }
  }
  return rows;
}

/**
 * Objects outside the history (the database has them, the replayed head does not) that depend on a
 * table or column the reverse changes: the rehearsal's schema comparison cannot see them break (a
 * trigger writing a column the reverse drops fails every insert afterwards), so they are refused. Pure.
 */
export function dependentConflicts(d: { live: Dependent[]; head: Dependent[]; touchedTables: Set<string>; touchedColumns: Set<string> }): string[] {
  const key = (x: Dependent) => `${x.what}\u0000${x.table}\u0000${x.column ?? ""}`;
  const history = new Set(d.head.map(key));
  const out = new Map<string, string[]>();
  for (const x of d.live) {
    if (history.has(key(x)) || !d.touchedTables.has(x.table)) continue;
    // On a column: only if the reverse changes that column (or makes or drops the whole table); on the table: if it changes the table at all.
    if (x.column !== null && !d.touchedColumns.has(`${x.table}.${x.column}`) && !d.touchedColumns.has(`${x.table}.*`)) continue;
    const on = x.column === null ? `table ${x.table}` : `column ${x.table}.${x.column}`;
    out.set(x.what, [...(out.get(x.what) ?? []), on]);
  }
  return [...out].sort(([a], [b]) => a.localeCompare(b)).map(([what, on]) => `${what} (made outside the migration history; depends on ${[...new Set(on)].join(", ")}, which the reverse changes)`);
}

/** Tables the reverse changes (by migra's comparison), and columns: "t.c", or "t.*" for a table it creates or drops. Pure. */
export function touchedBy(touched: string[], schema: string, head: Catalog, target: Catalog): { tables: Set<string>; columns: Set<string> } {
  const prefix = `table ${schema}.`;
  const tables = new Set(touched.filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)));
  const columns = new Set<string>();
  for (const t of new Set([...head.tables, ...target.tables])) {
    if (head.tables.has(t) !== target.tables.has(t)) {
      tables.add(t);
      columns.add(`${t}.*`);
    }
  }
  for (const c of new Set([...head.columns.keys(), ...target.columns.keys()])) {
    if (head.columns.get(c) !== target.columns.get(c)) {
      columns.add(c);
      tables.add(c.slice(0, c.indexOf(".")));
    }
  }
  return { tables, columns };
}

/** migra's inspection, the catalog, and (unless live) `pg_dump -s` of one database, concurrently. */
async function capture(url: string, schema: string, dump: boolean): Promise<Capture> {
  const inspect = async () => {
    const client = createClient(url);
    try {
      const inspected = await Inspected.create(client);
      inspected.one_schema(schema);
      return inspected;
    } finally {
      await endPgkitClient(client);
    }
  };
  const [inspected, [catalog, dependents], text] = await Promise.all([
    inspect(),
    withClient(url, async (c) => [await readCatalog(c, schema), await readDependents(c, schema)] as const, { applicationName: "pgstack revert" }),
    dump ? dumpSchema(url) : Promise.resolve(undefined),
  ]);
  return { inspected, catalog, dependents, dump: text };
}

/**
 * Builds the plan: reads only the database; makes and drops one throwaway
 * database, into which the history is replayed once, captured at the target
 * and at the head.
 */
export async function planRevert(settings: Settings, options: RevertOptions): Promise<RevertPlan> {
  const phase = timer(options.onPhase);
  const url = settings.databaseUrl;
  const target = parseDatabaseUrl(url);
  // The database is inspected meanwhile, from the start (read only).
  const liveCapture = capture(url, target.schema, false);
  liveCapture.catch(() => undefined);
  const migrations = await discoverMigrations(settings.migrationsDir, (note) => options.log.warn(note));
  const reverted = await appliedAfter(url, migrations, options.to);
  if (reverted.length === 0) {
    throw new PgstackError("E_USAGE", `No migration is applied after ${options.to ?? "the start"}: there is nothing to revert; nothing was changed.`);
  }
  const replayName = `pgstack_revert_${randomBytes(5).toString("hex")}`;
  const replayUrl = withDatabase(url, replayName);
  const admin = withDatabase(url, "postgres");
  // Nothing in the throwaway database needs to survive a crash: its commits need not wait for the disk.
  await withClient(
    admin,
    async (c) => {
      await c.query(`CREATE DATABASE ${quoteIdent(replayName)}`);
      await c.query(`ALTER DATABASE ${quoteIdent(replayName)} SET synchronous_commit = off`);
    },
    { applicationName: "pgstack revert" },
  );
  phase("plan: throwaway database created");
  const dropReplay = () =>
    withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(replayName)} WITH (FORCE)`), { applicationName: "pgstack revert" }).then(
      () => undefined,
      (err) => options.log.warn(`could not drop the throwaway database ${replayName}: ${messageOf(err)}`),
    );
  let dropping: Promise<void> | undefined;
  try {
    const replay = { ...settings, databaseUrl: replayUrl, lockWaitSeconds: 0 };
    const quiet = { ...options.log, info: () => undefined };
    // The ledger is in both captures, so the reverse leaves it alone (the run marks its rows).
    if (options.to !== null) await applyMigrations(replay, { kind: "all", to: options.to }, quiet);
    else await withClient(replayUrl, (c) => ensureLedger(c, target.schema), { applicationName: "pgstack revert" });
    phase("plan: history replayed up to the target");
    const atTarget = await capture(replayUrl, target.schema, true);
    phase("plan: schema captured at the target");
    await applyMigrations(replay, { kind: "all", to: reverted[0] }, quiet);
    phase("plan: history replayed on up to the head");
    const [atHead, live] = await Promise.all([capture(replayUrl, target.schema, true), liveCapture]);
    phase("plan: schema captured at the head (and the database's)");
    // Everything is captured: the throwaway database goes meanwhile.
    dropping = dropReplay();

    const objects = compareObjects(objectsOf(atTarget.inspected, target.schema), objectsOf(atHead.inspected, target.schema), objectsOf(live.inspected, target.schema));
    if (objects.conflicts.length > 0) {
      throw new PgstackError(
        "E_REVERT",
        `Reverting ${reverted.join(", ")} must change ${objects.conflicts.join(", ")}, which database '${target.database}' does not hold as the migration history builds it, so the reverse cannot be trusted there: bring it back to what the migrations made or restore the pre-update snapshot (npm run rollback); nothing was changed.`,
        { objects: objects.conflicts },
      );
    }

    const touched = touchedBy(objects.touched, target.schema, atHead.catalog, atTarget.catalog);
    const dependents = dependentConflicts({ live: live.dependents, head: atHead.dependents, touchedTables: touched.tables, touchedColumns: touched.columns });
    if (dependents.length > 0) {
      throw new PgstackError(
        "E_REVERT",
        `Reverting ${reverted.join(", ")} changes what ${dependents.join(", ")} in database '${target.database}' ${dependents.length === 1 ? "relies" : "rely"} on, and neither the reverse nor its rehearsal can tell whether ${dependents.length === 1 ? "it works" : "they work"} after it: drop or change ${dependents.length === 1 ? "it" : "them"} first, or restore the pre-update snapshot (npm run rollback); nothing was changed.`,
        { objects: dependents },
      );
    }

    const byName = new Map(migrations.map((m) => [m.name, m]));
    // Read only for the reverted migrations: discovery does not look for down.sql.
    const downs = reverted.map((n) => {
      const folder = byName.get(n)?.dir;
      return folder && existsSync(path.join(folder, "down.sql")) ? path.join(folder, "down.sql") : undefined;
    });
    let sql: string;
    let source: RevertPlan["source"];
    if (downs.every((d): d is string => d !== undefined)) {
      const texts = await Promise.all(downs.map((d) => fs.readFile(d, "utf8")));
      await loadSqlParser();
      texts.forEach((text, i) => {
        const control = splitStatements(text, `${reverted[i]}/down.sql`).find(isTransactionControl);
        if (control) {
          throw new PgstackError("E_REVERT", `${reverted[i]}/down.sql has its own transaction control at line ${control.line}: pgstack runs the whole reverse in one transaction, so remove it; nothing was changed.`);
        }
      });
      sql = texts.join("\n");
      source = "down.sql";
    } else {
      if (downs.some((d) => d !== undefined)) options.log.warn("some reverted migrations have a down.sql and some do not: the reverse is computed for all of them");
      sql = await reverseOf(atHead.inspected, atTarget.inspected, target.schema);
      source = "computed";
    }
    // What the reverted migrations made and removed, from the history's schemas; what it holds, from the database.
    const compared = compareCatalogs(atHead.catalog, atTarget.catalog);
    await withClient(url, (c) => countHeld(c, target.schema, compared.drops, live.catalog), { applicationName: "pgstack revert" });
    const { drops, losses } = await withStatementLosses(compared, reverted.map((n) => byName.get(n)!).reverse(), target.schema, atTarget.inspected, atHead.inspected);
    phase("plan: reverse computed, what it drops counted");
    return {
      database: target.database,
      target: options.to,
      reverted,
      sql,
      source,
      drops,
      losses,
      drift: objects.drift,
      targetSchema: atTarget.dump!,
      headSchema: atHead.dump!,
    };
  } finally {
    await (dropping ?? dropReplay());
    phase("plan: throwaway database dropped");
  }
}

/** Word of the report (history.ts) -> migra's word (OBJECT_KINDS), where they differ. */
const INSPECTED_KIND: Record<string, string> = { procedure: "function" };

/**
 * The catalogs' drops and losses, with what the reverted migrations'
 * statements add (history.ts): conditionally created objects the reverse
 * would drop become losses, not drops; data changes become losses.
 */
async function withStatementLosses(
  compared: { drops: DroppedObject[]; losses: string[] },
  reverted: Migration[],
  schema: string,
  atTarget: Inspected,
  atHead: Inspected,
): Promise<{ drops: DroppedObject[]; losses: string[] }> {
  const statements = await readHistoryStatements(reverted);
  const [before, after] = [objectsOf(atTarget, schema), objectsOf(atHead, schema)];
  const kinds = new Set<string>(OBJECT_KINDS.map(([, k]) => k));
  const has = (objects: Map<string, SchemaObject>, kind: string, name: string) =>
    [...objects.keys()].some((k) => {
      if (!k.startsWith(`${kind} `)) return false;
      const qualified = k.slice(kind.length + 1).replace(/\(.*\)$/, "");
      return qualified === name || qualified.endsWith(`.${name}`);
    });
  const reverseDrops = (kind: string, name: string) => {
    const k = INSPECTED_KIND[kind] ?? kind;
    // A kind migra does not inspect: not known to survive the reverse.
    if (!kinds.has(k)) return true;
    return has(after, k, name) && !has(before, k, name);
  };
  const fromStatements = historyLosses(statements, schema, compared.drops, reverseDrops);
  return { drops: fromStatements.drops, losses: [...compared.losses, ...fromStatements.losses] };
}

/** migra's difference from the head's schema to the target's, destructive statements included. */
async function reverseOf(head: Inspected, target: Inspected, schema: string): Promise<string> {
  const m = await MigraMigration.create(head, target, { schema });
  m.set_safety(false);
  m.add_all_changes();
  return m.sql;
}

/** Reports the time since the previous call under a phase's name. */
function timer(onPhase: RevertOptions["onPhase"]): (name: string) => void {
  let last = Date.now();
  return (name) => {
    const now = Date.now();
    onPhase?.(name, now - last);
    last = now;
  };
}

export interface RevertResult {
  plan: RevertPlan;
  /** What the reverse dropped, counted in its transaction under its locks (the plan's `holds` were counted earlier). */
  dropped: DroppedObject[];
  /** How the rehearsal copy was made. */
  rehearsedOn: "template" | "schema-only";
  durationMs: number;
}

const LOCK_NOT_AVAILABLE = "55P03";

/**
 * Rehearses the plan on a throwaway copy (it must end with the target's
 * schema), then runs it on the database in one transaction with the ledger
 * rows marked rolled back. Any failure leaves the database as it was.
 */
export async function executeRevert(settings: Settings, plan: RevertPlan, options: { acceptLoss: boolean; log: Logger; onPhase?: RevertOptions["onPhase"] }): Promise<RevertResult> {
  if (plan.losses.length > 0 && !options.acceptLoss) {
    throw new PgstackError(
      "E_REVERT",
      `Reverting ${plan.reverted.join(", ")} cannot give back everything: ${plan.losses.join("; ")}. Pass --accept-loss to revert anyway, or restore the pre-update snapshot (npm run rollback); nothing was changed.`,
      { losses: plan.losses },
    );
  }
  const url = settings.databaseUrl;
  const target = parseDatabaseUrl(url);
  const started = Date.now();
  const phase = timer(options.onPhase);
  const rehearsedOn = await rehearseRevert(settings, plan, options.log, phase);
  failpoint("revert:rehearsed");
  let dropped: DroppedObject[] = [];
  await withClient(
    url,
    (client, db) =>
      withAdvisoryLock(client, db, { waitSeconds: settings.lockWaitSeconds }, async () => {
        for (let attempt = 0; ; attempt++) {
          try {
            dropped = await runReverse(client, target.schema, settings, plan, true);
            return;
          } catch (err) {
            if ((err as { code?: string }).code === LOCK_NOT_AVAILABLE && attempt < settings.retries) {
              const wait = settings.retryDelayMs * 2 ** attempt;
              options.log.warn(`the reverse waited longer than lock_timeout for a lock; nothing was changed, trying again in ${wait} ms`);
              await sleep(wait);
              continue;
            }
            throw reverseError(err, plan, `database '${plan.database}'`);
          }
        }
      }),
    { applicationName: "pgstack revert" },
  );
  phase("run: reverse committed on the database");
  const counted = dropped.filter((d) => d.holds !== undefined).map((d) => `${d.kind} ${d.name} with ${d.holds} ${d.kind === "column" ? "non-null values" : "rows"}`);
  options.log.info(
    `reverted ${plan.reverted.join(", ")} on ${plan.database}; the ledger marks them rolled back${counted.length > 0 ? `; dropped ${counted.join(", ")} (counted under the reverse's locks)` : ""}`,
  );
  return { plan, dropped, rehearsedOn, durationMs: Date.now() - started };
}

/**
 * In the reverse's transaction, before it runs: locks every table whose rows or values the reverse drops
 * (ACCESS EXCLUSIVE, as the drop would, so no write lands after the count), then counts what they hold.
 */
async function lockAndCount(client: Client, schema: string, drops: DroppedObject[]): Promise<DroppedObject[]> {
  const now = await readCatalog(client, schema);
  const tables = new Set<string>();
  for (const d of drops) {
    if (d.kind === "table") tables.add(d.name);
    else if (d.kind === "column") tables.add(d.name.slice(0, d.name.indexOf(".")));
    else if (d.kind === "enum value") {
      const type = d.name.slice(0, d.name.indexOf("."));
      for (const [col, colType] of now.columns) if (colType.replace(/"/g, "") === type) tables.add(col.slice(0, col.indexOf(".")));
    }
  }
  const present = [...tables].filter((t) => now.tables.has(t)).sort();
  if (present.length > 0) await client.query(`LOCK TABLE ${present.map((t) => `${quoteIdent(schema)}.${quoteIdent(t)}`).join(", ")} IN ACCESS EXCLUSIVE MODE`);
  const counted = drops.map((d) => ({ ...d, holds: undefined as number | undefined }));
  await countHeld(client, schema, counted.filter((d) => d.kind !== "constraint" && (d.kind !== "table" || now.tables.has(d.name))), now);
  return counted;
}

/** BEGIN; (in the real run, what it drops locked and counted); the reverse; the ledger rows rolled back; COMMIT (or ROLLBACK on any error). */
async function runReverse(client: Client, schema: string, settings: Settings, plan: RevertPlan, markLedger: boolean): Promise<DroppedObject[]> {
  await loadSqlParser();
  await client.query("BEGIN");
  try {
    await client.query(`SET LOCAL lock_timeout = ${Math.trunc(settings.lockTimeoutMs)}; SET LOCAL statement_timeout = ${Math.trunc(settings.statementTimeoutMs)}`);
    const dropped = markLedger ? await lockAndCount(client, schema, plan.drops) : plan.drops;
    for (const statement of splitStatements(plan.sql, "the reverse")) {
      try {
        await client.query(statement.sql);
      } catch (err) {
        throw Object.assign(err as object, { reverseLine: errorLine(plan.sql, statement, Number((err as { position?: string }).position) || undefined) });
      }
    }
    if (markLedger && (await ledgerExists(client, schema))) {
      await client.query(
        `UPDATE ${ledgerTable(schema)} SET rolled_back_at = now() WHERE migration_name = ANY($1::text[]) AND finished_at IS NOT NULL AND rolled_back_at IS NULL`,
        [plan.reverted],
      );
    }
    // The point of no return: what the stack is to be pinned at commits with the reverse (snapshot/intent.ts),
    // so a revert killed after it, or run by hand, is finished by `npm run rollback` and not undone by the next up.
    if (markLedger && plan.target !== null) {
      await recordRollbackIntent(client, plan.database, { op: "revert", pin: plan.target, removed: [...plan.reverted].sort(), at: new Date().toISOString() });
    }
    // Only in the real run: a kill here must leave the database as it was.
    if (markLedger) failpoint("revert:before-commit");
    await client.query("COMMIT");
    if (markLedger) failpoint("revert:committed");
    return dropped;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

function reverseError(err: unknown, plan: RevertPlan, where: string): PgstackError {
  const line = (err as { reverseLine?: number }).reverseLine;
  return new PgstackError(
    "E_REVERT",
    `The reverse of ${plan.reverted.join(", ")} (${plan.source}) failed on ${where}${line ? ` at line ${line}` : ""}: ${messageOf(err).split("\n")[0]}; nothing was changed.`,
    { line },
  );
}

async function rehearseRevert(settings: Settings, plan: RevertPlan, log: Logger, phase: (name: string) => void): Promise<RevertResult["rehearsedOn"]> {
  const url = settings.databaseUrl;
  const source = parseDatabaseUrl(url);
  const copyName = `pgstack_rehearsal_${randomBytes(5).toString("hex")}`;
  const admin = withDatabase(url, "postgres");
  const drop = (db: string) => withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`), { applicationName: "pgstack revert" });
  try {
    const copied = await copyForRehearsal(url, admin, source.database, copyName, log);
    phase("rehearsal: copy made");
    const copyUrl = withDatabase(url, copyName);
    const before = await dumpSchema(copyUrl);
    phase("rehearsal: copy's schema dumped");
    await withClient(copyUrl, (c) => runReverse(c, source.schema, settings, plan, false), { applicationName: "pgstack revert" }).catch((err) => {
      throw reverseError(err, plan, "the rehearsal copy");
    });
    phase("rehearsal: reverse run on the copy");
    const difference = rehearsalDifference({ after: await dumpSchema(copyUrl), before, head: plan.headSchema, target: plan.targetSchema });
    phase("rehearsal: schemas compared");
    if (difference) {
      throw new PgstackError(
        "E_REVERT",
        `Rehearsed on a copy, the reverse of ${plan.reverted.join(", ")} does not give back the schema of ${plan.target ?? "an empty database"} (pg_dump -s differs: ${difference}); nothing was changed on '${plan.database}'.`,
      );
    }
    log.info(
      `rehearsed on a ${copied === "template" ? "copy with data" : "schema-only copy"}: the schema after the reverse equals ${plan.target ?? "the empty schema"}'s${plan.drift.length > 0 ? ", with what the history did not make left as it was" : ""}`,
    );
    return copied;
  } finally {
    await drop(copyName).catch((err) => log.warn(`could not drop the throwaway database ${copyName}: ${messageOf(err)}`));
  }
}

/**
 * A schema dump's lines to compare: comments and blank lines dropped, and
 * each table's columns in name order (a column a reverse adds back comes
 * last; its position is not part of what a migration history defines for
 * Prisma, whose schema diff ignores it too). Pure.
 */
export function comparableSchema(dump: string): string[] {
  const out: string[] = [];
  let columns: string[] | undefined;
  for (const line of dump.split("\n")) {
    if (line.trim() === "" || line.startsWith("--")) continue;
    if (columns) {
      if (/^\)/.test(line)) {
        out.push(...columns.sort(), line);
        columns = undefined;
      } else columns.push(line.replace(/,$/, ""));
      continue;
    }
    out.push(line);
    if (/^CREATE (UNLOGGED )?TABLE .*\($/.test(line)) columns = [];
  }
  return out;
}

/** A schema dump as statements (comparableSchema's lines, grouped up to each line that ends one). Pure. */
export function schemaStatements(dump: string): string[] {
  const out: string[] = [];
  let current: string[] = [];
  for (const line of comparableSchema(dump)) {
    current.push(line);
    if (/;\s*$/.test(line)) {
      out.push(current.join("\n"));
      current = [];
    }
  }
  if (current.length > 0) out.push(current.join("\n"));
  return out;
}

/**
 * What is wrong with the rehearsal copy's schema after the reverse, or
 * undefined. The copy must hold the target's schema plus exactly what it
 * held outside the history before (drift the reverse must leave alone):
 * when the copy before equals the head, the dumps are compared line by line
 * as they are; otherwise statement by statement, after + head = target +
 * before. Pure.
 */
export function rehearsalDifference(d: { after: string; before: string; head: string; target: string }): string | undefined {
  if (firstDifference(d.before, d.head) === undefined) return firstDifference(d.after, d.target);
  const count = new Map<string, number>();
  const add = (dump: string, by: number) => {
    for (const s of schemaStatements(dump)) count.set(s, (count.get(s) ?? 0) + by);
  };
  add(d.after, 1);
  add(d.head, 1);
  add(d.target, -1);
  add(d.before, -1);
  const first = (sign: number) => [...count].find(([, n]) => Math.sign(n) === sign)?.[0];
  const line = (s: string) => s.split("\n")[0].trim();
  const extra = first(1);
  if (extra !== undefined) return `'${line(extra)}' is there, but neither the target nor the copy outside the history has it`;
  const missing = first(-1);
  if (missing !== undefined) return `'${line(missing)}' is missing, which the target or the copy outside the history has`;
  return undefined;
}

/** The first line where two schema dumps differ, as "got ... where ... was expected"; undefined when equal. Pure. */
export function firstDifference(got: string, expected: string): string | undefined {
  const a = comparableSchema(got);
  const b = comparableSchema(expected);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `'${(a[i] ?? "(end)").trim()}' where '${(b[i] ?? "(end)").trim()}' was expected`;
  }
  return undefined;
}

