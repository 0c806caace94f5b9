import { promises as fs } from "node:fs";
import * as path from "node:path";
import { withClient } from "../db/client";
import { parseDatabaseUrl } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import type { Logger } from "../logger";
import { checkDumpTool, resolveTool, serverMajor } from "../pgtools";
import { dumpEngine, snapshotIdOfFile } from "./dump";
import type { CreateOptions, SnapshotEngine, SnapshotKind } from "./engine";
import { sealKeyPath } from "./seal";
import { templateEngine, type SnapshotInfo } from "./template";

/**
 * Every snapshot engine of one database together: which one a new snapshot
 * uses, and where an id given by a person lives (it may be either).
 */
export const DEFAULT_SNAPSHOTS_DIR = path.join(".pgstack", "snapshots");

export type EngineChoice = SnapshotKind | "auto";

export interface StoreOptions {
  /** Folder of pg_dump snapshots. Default `.pgstack/snapshots` under the working directory. */
  snapshotsDir?: string;
  /** pg_dump path (default $PGSTACK_PG_DUMP or PATH). */
  pgDump?: string;
  env?: NodeJS.ProcessEnv;
}

/** The project's seal key file (seal.ts): in `.pgstack/`, the snapshots folder's parent. */
export function sealKeyFileOf(options: StoreOptions = {}): string {
  return sealKeyPath(options.snapshotsDir ?? DEFAULT_SNAPSHOTS_DIR);
}

export function enginesFor(options: StoreOptions = {}): Record<SnapshotKind, SnapshotEngine> {
  return {
    template: templateEngine,
    dump: dumpEngine({ dir: path.resolve(options.snapshotsDir ?? DEFAULT_SNAPSHOTS_DIR), pgDump: options.pgDump, env: options.env }),
  };
}

/**
 * Whether the role of `url` may take template copies of its database: a
 * superuser may; otherwise it needs CREATEDB and to own the source (PostgreSQL
 * copies only a template or a database one owns, and closing the source to
 * new sessions is an owner's ALTER DATABASE).
 */
export async function canTemplateCopy(url: string): Promise<{ ok: boolean; why: string }> {
  return withClient(
    url,
    async (client) => {
      const { rows } = await client.query<{ superuser: boolean; createdb: boolean; owner: boolean }>(
        `SELECT r.rolsuper AS superuser, r.rolcreatedb AS createdb,
                pg_has_role(current_user, d.datdba, 'USAGE') AS owner
           FROM pg_roles r, pg_database d
          WHERE r.rolname = current_user AND d.datname = current_database()`,
      );
      const r = rows[0];
      if (!r) return { ok: false, why: "the role is not in pg_roles" };
      if (r.superuser) return { ok: true, why: "superuser" };
      if (!r.createdb) return { ok: false, why: `role '${parseDatabaseUrl(url).user}' may not create databases` };
      if (!r.owner) return { ok: false, why: `role '${parseDatabaseUrl(url).user}' does not own the database` };
      return { ok: true, why: "creates databases and owns the source" };
    },
    { applicationName: "pgstack snapshot" },
  );
}

/**
 * `auto`: a template copy where the role may make one and nobody else is
 * connected; with application sessions connected, a pg_dump snapshot, which
 * reads an MVCC snapshot beside them instead of ending them (a template copy
 * must: PostgreSQL copies a database only while nobody uses it). Without a
 * usable pg_dump the template copy is taken anyway, saying so.
 */
export async function chooseEngine(url: string, choice: EngineChoice, options: StoreOptions = {}, log?: Logger): Promise<SnapshotEngine> {
  const engines = enginesFor(options);
  if (choice === "dump") return engines.dump;
  const copy = await canTemplateCopy(url);
  if (choice === "template" && !copy.ok) {
    throw new PgstackError("E_SNAPSHOT", `A template-copy snapshot is not possible here (${copy.why}): use --engine dump (pg_dump) or a role that may create databases.`);
  }
  if (!copy.ok) return engines.dump;
  if (choice === "template") return engines.template;
  const { sessions, versionNum } = await withClient(
    url,
    async (client) => {
      const { rows } = await client.query<{ sessions: number; v: string }>(
        `SELECT (SELECT count(*)::int FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend') AS sessions,
                current_setting('server_version_num') AS v`,
      );
      return { sessions: rows[0].sessions, versionNum: Number(rows[0].v) };
    },
    { applicationName: "pgstack snapshot" },
  );
  if (sessions === 0) return engines.template;
  try {
    await checkDumpTool(await resolveTool("pg_dump", { serverMajor: serverMajor(versionNum), pgDump: options.pgDump, env: options.env }), versionNum, options.env);
  } catch (err) {
    log?.warn(`${sessions} session(s) are connected and a template copy ends them; no usable pg_dump to avoid it (${messageOf(err)})`);
    return engines.template;
  }
  log?.info(`${sessions} session(s) connected to the database: taking a pg_dump snapshot, which ends none of them`);
  return engines.dump;
}

export async function createSnapshot(options: CreateOptions & StoreOptions & { engine?: EngineChoice }): Promise<SnapshotInfo> {
  const engine = await chooseEngine(options.url, options.engine ?? "auto", options, options.log);
  return engine.create({ ...options, sealKeyFile: options.sealKeyFile ?? sealKeyFileOf(options), reserved: [...(options.reserved ?? []), ...(await idsInUse(options.url, options))] });
}

/**
 * Every id either engine could collide with: the server's database names
 * (template snapshots) and the snapshots folder's file names (dumps). Without
 * it a template copy and a dump taken in the same second got the same id, and
 * restore/delete/prune of that id acted on the wrong one.
 */
async function idsInUse(url: string, options: StoreOptions): Promise<string[]> {
  const databases = await withClient(url, (c) => c.query<{ datname: string }>("SELECT datname FROM pg_database"), { applicationName: "pgstack snapshot" });
  const files = await fs.readdir(path.resolve(options.snapshotsDir ?? DEFAULT_SNAPSHOTS_DIR)).catch(() => [] as string[]);
  const dumps = files.map(snapshotIdOfFile).filter((id): id is string => id !== undefined);
  return [...new Set([...databases.rows.map((r) => r.datname), ...dumps])];
}

/** Template snapshots need the `postgres` database; a role that cannot reach it simply has none. */
async function listSafe(engine: SnapshotEngine, url: string, source?: string): Promise<SnapshotInfo[]> {
  try {
    return await engine.list(url, { source });
  } catch (err) {
    if (engine.kind === "template" && err instanceof PgstackError && (err.code === "E_DB_MISSING" || err.code === "E_DB_AUTH")) return [];
    throw err;
  }
}

/** Every snapshot of the database of `url` (both engines), oldest first; `stack` filters. */
export async function listAllSnapshots(url: string, filter: { stack?: string } = {}, options: StoreOptions = {}): Promise<SnapshotInfo[]> {
  const source = parseDatabaseUrl(url).database;
  const engines = enginesFor(options);
  const all = [...(await listSafe(engines.template, url, source)), ...(await listSafe(engines.dump, url, source))];
  return all
    .filter((s) => filter.stack === undefined || s.stack === filter.stack)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.snapshotId.localeCompare(b.snapshotId));
}

/** The snapshot `id` of the database of `url`, with its engine; an unknown id is one sentence. */
export async function findSnapshot(url: string, id: string, options: StoreOptions = {}): Promise<{ engine: SnapshotEngine; snapshot: SnapshotInfo }> {
  const source = parseDatabaseUrl(url).database;
  const engines = enginesFor(options);
  for (const engine of [engines.template, engines.dump]) {
    const found = (await listSafe(engine, url, source)).find((s) => s.snapshotId === id);
    if (found) return { engine, snapshot: found };
  }
  throw new PgstackError("E_SNAPSHOT", `No snapshot '${id}' of database '${source}' exists (see \`pgstack snapshot list\`): nothing was changed.`, { snapshotId: id, reason: "unknown" });
}

export async function deleteSnapshot(url: string, id: string, log: Logger, options: StoreOptions = {}): Promise<SnapshotInfo> {
  const { engine, snapshot } = await findSnapshot(url, id, options).catch((err) => {
    throw err instanceof PgstackError ? new PgstackError(err.code, err.message.replace("nothing was changed", "nothing was deleted"), err.details) : new PgstackError("E_SNAPSHOT", messageOf(err));
  });
  await engine.remove(url, snapshot, log);
  return snapshot;
}
