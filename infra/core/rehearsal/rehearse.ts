import { randomBytes } from "node:crypto";
import type { Client } from "pg";
import { withClient } from "../db/client";
import { copyDatabase, recordThrowaway } from "../db/copy";
import { libpqEnv, parseDatabaseUrl, quoteIdent, withDatabase } from "../db/url";
import { isPgstackError, PgstackError, messageOf } from "../errors";
import { failpoint } from "../failpoint";
import type { Logger } from "../logger";
import { applyMigrations } from "../migrations/runner";
import { ledgerExists } from "../ledger/ledger";
import { planMigrations } from "../migrations/plan";
import type { Settings } from "../settings";
import { checkDumpTool, resolveTool, runToolPipe, serverMajor } from "../pgtools";

/** SQLSTATE of CREATE DATABASE without CREATEDB. */
const INSUFFICIENT_PRIVILEGE = "42501";

/** Lock modes from weakest to strongest (PostgreSQL's table-level lock order). */
export const LOCK_MODES = [
  "AccessShareLock",
  "RowShareLock",
  "RowExclusiveLock",
  "ShareUpdateExclusiveLock",
  "ShareLock",
  "ShareRowExclusiveLock",
  "ExclusiveLock",
  "AccessExclusiveLock",
] as const;

export interface TableLock {
  table: string;
  mode: string;
  /** True when the mode blocks the application's reads or writes. */
  blocksWrites: boolean;
  blocksReads: boolean;
}

export interface RehearsedMigration {
  name: string;
  outcome: "applied" | "failed" | "not-run";
  durationMs?: number;
  error?: string;
  line?: number;
  /** Strongest lock the migration held on each table that existed before the rehearsal. */
  locks: TableLock[];
}

export interface Rehearsal {
  /** How the copy was made: with data (template) or schema only. */
  copy: "template" | "schema-only";
  migrations: RehearsedMigration[];
  ok: boolean;
}

/** Strongest mode per table. Pure. */
export function strongestLocks(locks: { table: string; mode: string }[]): TableLock[] {
  const best = new Map<string, string>();
  for (const { table, mode } of locks) {
    const current = best.get(table);
    if (!current || LOCK_MODES.indexOf(mode as never) > LOCK_MODES.indexOf(current as never)) best.set(table, mode);
  }
  return [...best]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([table, mode]) => {
      const rank = LOCK_MODES.indexOf(mode as never);
      return { table, mode, blocksWrites: rank >= LOCK_MODES.indexOf("ShareLock"), blocksReads: mode === "AccessExclusiveLock" };
    });
}

/**
 * Applies the pending migrations to a throwaway copy of the database with the
 * same runner a deploy uses, and reports what happened to each. The copy is
 * dropped afterwards, also on failure and on SIGINT/SIGTERM; the real database
 * is only read.
 */
export interface RehearseOptions {
  /** Runs on the copy once every pending migration applied, before it is dropped (e.g. to check the deploy can be reverted). */
  afterApply?: (copy: Settings) => Promise<void>;
}

export async function rehearse(settings: Settings, log: Logger, options: RehearseOptions = {}): Promise<Rehearsal> {
  const plan = await planMigrations(settings);
  if (plan.blockers.length > 0) throw new PgstackError(plan.blockers[0].code as never, plan.blockers[0].message);
  const source = parseDatabaseUrl(settings.databaseUrl);
  const copyName = `pgstack_rehearsal_${randomBytes(5).toString("hex")}`;
  const copyUrl = withDatabase(settings.databaseUrl, copyName);
  const maintenanceUrl = withDatabase(settings.databaseUrl, "postgres");

  const drop = () => withClient(maintenanceUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(copyName)} WITH (FORCE)`));
  const onSignal = (signal: NodeJS.Signals) => {
    log.warn(`${signal}: dropping the rehearsal copy ${copyName}`);
    drop()
      .catch(() => undefined)
      .finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const copy = await copyForRehearsal(settings.databaseUrl, maintenanceUrl, source.database, copyName, log);
    const existing = await withClient(copyUrl, (c) => userTables(c));
    const locks = new Map<string, { table: string; mode: string }[]>();
    const results: RehearsedMigration[] = plan.pending.map((p) => ({ name: p.name, outcome: "not-run", locks: [] }));
    const rehearsal: Rehearsal = { copy, migrations: results, ok: true };
    try {
      const applied = await applyMigrations({ ...settings, databaseUrl: copyUrl }, { kind: "all" }, log, {
        beforeCommit: async (client, migration) => {
          const { rows } = await client.query<{ table: string; mode: string }>(
            `SELECT format('%I.%I', n.nspname, c.relname) AS table, l.mode
               FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
                AND c.relkind IN ('r', 'p', 'm') AND c.oid = ANY($1::oid[])`,
            [existing],
          );
          locks.set(migration.name, rows);
        },
      });
      for (const a of applied.applied) {
        const r = results.find((x) => x.name === a.name);
        if (r) Object.assign(r, { outcome: "applied", durationMs: a.durationMs, locks: strongestLocks(locks.get(a.name) ?? []) });
      }
      await options.afterApply?.({ ...settings, databaseUrl: copyUrl });
    } catch (err) {
      if (!isPgstackError(err) || err.code !== "E_MIGRATION_FAILED") throw err;
      rehearsal.ok = false;
      const failed = results.find((x) => x.name === err.details.migration);
      // Everything before the failed migration was applied on the copy.
      for (const r of results) {
        if (r === failed) break;
        if (r.outcome === "not-run") Object.assign(r, { outcome: "applied", locks: strongestLocks(locks.get(r.name) ?? []) });
      }
      if (failed) Object.assign(failed, { outcome: "failed", error: err.details.error as string, line: err.details.line as number });
    }
    return rehearsal;
  } finally {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    await drop().catch((err) => log.warn(`could not drop the rehearsal copy ${copyName}: ${messageOf(err)}`));
  }
}

async function userTables(client: Client): Promise<number[]> {
  const { rows } = await client.query<{ oid: number }>(
    `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
        AND c.relname <> '_prisma_migrations'`,
  );
  return rows.map((r) => r.oid);
}

/**
 * A server-side copy with data when nobody else is connected to the source;
 * otherwise (an application is connected) a schema-only copy through pg_dump,
 * so the rehearsal never disturbs live sessions. Either copy is recorded as
 * this process's throwaway (core/db/copy.ts) as soon as it exists, so a
 * rehearsal killed before its finally drops it is cleaned up by the next
 * pgstack command.
 */
export async function copyForRehearsal(sourceUrl: string, maintenanceUrl: string, source: string, copy: string, log: Logger): Promise<Rehearsal["copy"]> {
  const made = await withClient(
    maintenanceUrl,
    async (c) => {
      let copied: "copied" | "busy";
      try {
        // With other sessions in it, CREATE DATABASE ... TEMPLATE waits 5 s before it gives up: go schema-only at once.
        const others = await c.query(`SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() LIMIT 1`, [source]);
        copied = others.rows.length > 0 ? "busy" : await copyDatabase(c, source, copy, { whenBusy: { mode: "refuse" }, failpoints: "rehearsal" });
      } catch (err) {
        if ((err as { code?: string }).code === INSUFFICIENT_PRIVILEGE) {
          throw new PgstackError("E_SNAPSHOT", `The rehearsal needs to create a copy of '${source}', but the role may not create databases: grant it CREATEDB.`);
        }
        throw err;
      }
      if (copied === "busy") await c.query(`CREATE DATABASE ${quoteIdent(copy)}`);
      await recordThrowaway(c, copy, "rehearsal");
      return copied;
    },
    { applicationName: "pgstack rehearsal" },
  );
  failpoint("rehearsal:copied");
  if (made === "copied") {
    log.info(`rehearsing on ${copy}, a copy of ${source} with its data`);
    return "template";
  }
  log.info(`${source} has other sessions, so the rehearsal copies its schema only (no data)`);
  await pipeSchema(sourceUrl, withDatabase(sourceUrl, copy));
  await copyLedger(sourceUrl, withDatabase(sourceUrl, copy));
  return "schema-only";
}

/** The ledger's rows come along, so the copy has the same pending set as the source. */
async function copyLedger(fromUrl: string, toUrl: string): Promise<void> {
  const rows = await withClient(fromUrl, async (c) => ((await ledgerExists(c)) ? (await c.query(`SELECT * FROM "_prisma_migrations"`)).rows : []));
  if (rows.length === 0) return;
  await withClient(toUrl, (c) =>
    c.query(
      `INSERT INTO "_prisma_migrations" SELECT * FROM json_populate_recordset(NULL::"_prisma_migrations", $1::json)`,
      [JSON.stringify(rows)],
    ),
  );
}

/** The schema of `fromUrl` into `toUrl` with pg_dump | psql, resolved and version-checked like the snapshots' (core/pgtools.ts). */
async function pipeSchema(fromUrl: string, toUrl: string): Promise<void> {
  const version = await withClient(fromUrl, async (c) => Number((await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0].v));
  const pgDump = await resolveTool("pg_dump", { serverMajor: serverMajor(version) });
  const psql = await resolveTool("psql", { serverMajor: serverMajor(version) });
  await checkDumpTool(pgDump, version);
  const { code, stderr } = await runToolPipe(
    { file: pgDump, args: ["--schema-only", "--no-owner", "--no-privileges", "--no-password"], connEnv: libpqEnv(fromUrl) },
    { file: psql, args: ["-q", "-v", "ON_ERROR_STOP=1", "--no-password"], connEnv: libpqEnv(toUrl) },
  );
  if (code !== 0) throw new PgstackError("E_SNAPSHOT", `Copying the schema for the rehearsal failed: ${stderr.trim().split("\n").pop()}.`);
}
