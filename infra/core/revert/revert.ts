import { randomBytes } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import type { Client } from "pg";
import { createClient } from "@pgkit/client";
import { Migration as MigraMigration } from "@pgkit/migra";
import { sleep, withClient } from "../db/client";
import { withAdvisoryLock } from "../db/deployers";
import { parseDatabaseUrl, quoteIdent, withDatabase } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import { failpoint } from "../failpoint";
import { ledgerExists, ledgerTable, readLedger } from "../ledger/ledger";
import type { Logger } from "../logger";
import { discoverMigrations, type Migration } from "../migrations/discover";
import { applyMigrations } from "../migrations/runner";
import { errorLine, isTransactionControl, loadSqlParser, splitStatements } from "../migrations/sql";
import { copyForRehearsal } from "../rehearsal/rehearse";
import type { Settings } from "../settings";
import { dumpSchema } from "../snapshot/dump";
import { recordRollbackIntent } from "../snapshot/intent";

/**
 * A data-keeping rollback: instead of restoring a snapshot (and discarding
 * every write since), run the reverse of the migrations applied after
 * `target`, computed as the difference from the schema now to the schema the
 * migrations up to `target` build (a throwaway database they are replayed
 * into), unless every reverted migration has a hand-written `down.sql`.
 *
 * Before anything runs the plan names what the reverse drops (with the rows
 * or values it holds now) and what it cannot give back (data of tables and
 * columns the reverted migrations dropped, values a type change rewrote);
 * the latter needs `acceptLoss`. The reverse is rehearsed on a throwaway copy
 * first and must leave it with the target's schema (`pg_dump -s` equal); then
 * it runs on the database in one transaction with the ledger rows marked
 * rolled back, under the deployer lock.
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
  /** `pg_dump -s` of the schema at the target (the replayed throwaway database): what the rehearsal must end with. */
  targetSchema: string;
}

export interface RevertOptions {
  /** Keep migrations up to and including this one; revert the applied ones after it. */
  to: string | null;
  log: Logger;
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

/**
 * Builds the plan: reads only the database; makes and drops one throwaway
 * database (the schema at `to`).
 */
export async function planRevert(settings: Settings, options: RevertOptions): Promise<RevertPlan> {
  const url = settings.databaseUrl;
  const target = parseDatabaseUrl(url);
  const migrations = await discoverMigrations(settings.migrationsDir, (note) => options.log.warn(note));
  const reverted = await appliedAfter(url, migrations, options.to);
  if (reverted.length === 0) {
    throw new PgstackError("E_USAGE", `No migration is applied after ${options.to ?? "the start"}: there is nothing to revert; nothing was changed.`);
  }
  const beforeName = `pgstack_revert_${randomBytes(5).toString("hex")}`;
  const beforeUrl = withDatabase(url, beforeName);
  const admin = withDatabase(url, "postgres");
  await withClient(admin, (c) => c.query(`CREATE DATABASE ${quoteIdent(beforeName)}`), { applicationName: "pgstack revert" });
  try {
    if (options.to !== null) {
      await applyMigrations({ ...settings, databaseUrl: beforeUrl, lockWaitSeconds: 0 }, { kind: "all", to: options.to }, { ...options.log, info: () => undefined });
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
      sql = await computeReverse(url, beforeUrl, target.schema);
      source = "computed";
    }
    const [now, before, targetSchema] = await Promise.all([
      withClient(url, (c) => readCatalog(c, target.schema), { applicationName: "pgstack revert" }),
      withClient(beforeUrl, (c) => readCatalog(c, target.schema), { applicationName: "pgstack revert" }),
      dumpSchema(beforeUrl),
    ]);
    const { drops, losses } = compareCatalogs(now, before);
    await withClient(url, (c) => countHeld(c, target.schema, drops, now), { applicationName: "pgstack revert" });
    return { database: target.database, target: options.to, reverted, sql, source, drops, losses, targetSchema };
  } finally {
    await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(beforeName)} WITH (FORCE)`), { applicationName: "pgstack revert" }).catch((err) =>
      options.log.warn(`could not drop the throwaway database ${beforeName}: ${messageOf(err)}`),
    );
  }
}

/** migra's difference from the schema at `fromUrl` to the one at `toUrl`, destructive statements included. */
async function computeReverse(fromUrl: string, toUrl: string, schema: string): Promise<string> {
  const from = createClient(fromUrl);
  const to = createClient(toUrl);
  try {
    const m = await MigraMigration.create(from, to, { schema });
    m.set_safety(false);
    m.add_all_changes();
    return m.sql;
  } finally {
    await Promise.all([from.end().catch(() => undefined), to.end().catch(() => undefined)]);
  }
}

export interface RevertResult {
  plan: RevertPlan;
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
export async function executeRevert(settings: Settings, plan: RevertPlan, options: { acceptLoss: boolean; log: Logger }): Promise<RevertResult> {
  if (plan.losses.length > 0 && !options.acceptLoss) {
    throw new PgstackError(
      "E_REVERT",
      `Reverting ${plan.reverted.join(", ")} cannot give back what they removed: ${plan.losses.join("; ")}. Pass --accept-loss to revert anyway, or restore the pre-update snapshot (npm run rollback); nothing was changed.`,
      { losses: plan.losses },
    );
  }
  const url = settings.databaseUrl;
  const target = parseDatabaseUrl(url);
  const started = Date.now();
  const rehearsedOn = await rehearseRevert(settings, plan, options.log);
  failpoint("revert:rehearsed");
  await withClient(
    url,
    (client, db) =>
      withAdvisoryLock(client, db, { waitSeconds: settings.lockWaitSeconds }, async () => {
        for (let attempt = 0; ; attempt++) {
          try {
            await runReverse(client, target.schema, settings, plan, true);
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
  options.log.info(`reverted ${plan.reverted.join(", ")} on ${plan.database}; the ledger marks them rolled back`);
  return { plan, rehearsedOn, durationMs: Date.now() - started };
}

/** BEGIN; the reverse; the ledger rows rolled back; COMMIT (or ROLLBACK on any error). */
async function runReverse(client: Client, schema: string, settings: Settings, plan: RevertPlan, markLedger: boolean): Promise<void> {
  await loadSqlParser();
  await client.query("BEGIN");
  try {
    await client.query(`SET LOCAL lock_timeout = ${Math.trunc(settings.lockTimeoutMs)}; SET LOCAL statement_timeout = ${Math.trunc(settings.statementTimeoutMs)}`);
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

async function rehearseRevert(settings: Settings, plan: RevertPlan, log: Logger): Promise<RevertResult["rehearsedOn"]> {
  const url = settings.databaseUrl;
  const source = parseDatabaseUrl(url);
  const copyName = `pgstack_rehearsal_${randomBytes(5).toString("hex")}`;
  const admin = withDatabase(url, "postgres");
  const drop = (db: string) => withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`), { applicationName: "pgstack revert" });
  try {
    const copied = await copyForRehearsal(url, admin, source.database, copyName, log);
    const copyUrl = withDatabase(url, copyName);
    await withClient(copyUrl, (c) => runReverse(c, source.schema, settings, plan, false), { applicationName: "pgstack revert" }).catch((err) => {
      throw reverseError(err, plan, "the rehearsal copy");
    });
    // Compared with the schema the plan's replay of the history up to the target built.
    const difference = firstDifference(await dumpSchema(copyUrl), plan.targetSchema);
    if (difference) {
      throw new PgstackError(
        "E_REVERT",
        `Rehearsed on a copy, the reverse of ${plan.reverted.join(", ")} does not give back the schema of ${plan.target ?? "an empty database"} (pg_dump -s differs: ${difference}); nothing was changed on '${plan.database}'.`,
      );
    }
    log.info(`rehearsed on a ${copied === "template" ? "copy with data" : "schema-only copy"}: the schema after the reverse equals ${plan.target ?? "the empty schema"}'s`);
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

/** The first line where two schema dumps differ, as "got ... where ... was expected"; undefined when equal. Pure. */
export function firstDifference(got: string, expected: string): string | undefined {
  const a = comparableSchema(got);
  const b = comparableSchema(expected);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `'${(a[i] ?? "(end)").trim()}' where '${(b[i] ?? "(end)").trim()}' was expected`;
  }
  return undefined;
}

