import { promises as fs } from "node:fs";
import * as path from "node:path";
import { withClient } from "../db/client";
import { decideCopy, type CopyMethod } from "../db/copy";
import { parseDatabaseUrl, withDatabase } from "../db/url";
import { PgstackError, isPgstackError, messageOf } from "../errors";
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

/** What the store decided for one snapshot: the engine, why, and (template) the copy decision already made. */
export interface EngineChosen {
  engine: SnapshotEngine;
  chosen: NonNullable<CreateOptions["chosen"]>;
  /** Template with sessions connected: fall back to a dump when they outlast the bounded pause. */
  giveUpAtBound: boolean;
}

/**
 * `auto`: a template copy where the role may make one and nobody else is
 * connected (a clone where the server can: db/clone.ts). With application
 * sessions connected: a clone with a bounded pause where cloning works (the
 * source closed, each session ended once its transaction is over, at most
 * maxPauseMs; see template.ts), else a pg_dump snapshot, which reads an MVCC
 * snapshot beside them instead of ending them (a full template copy would
 * close the database for as long as it copies). Without a usable pg_dump the
 * template copy is taken anyway, saying so.
 */
export async function chooseSnapshotEngine(url: string, choice: EngineChoice, options: StoreOptions & { copyMethod?: CopyMethod } = {}, log?: Logger): Promise<EngineChosen> {
  const engines = enginesFor(options);
  if (choice === "dump") return { engine: engines.dump, chosen: { reason: "a pg_dump snapshot was asked for (--engine dump)" }, giveUpAtBound: false };
  const copy = await canTemplateCopy(url);
  if (choice === "template" && !copy.ok) {
    throw new PgstackError("E_SNAPSHOT", `A template-copy snapshot is not possible here (${copy.why}): use --engine dump (pg_dump) or a role that may create databases.`);
  }
  if (!copy.ok) return { engine: engines.dump, chosen: { reason: `a server-side copy is not possible here (${copy.why}): pg_dump reads the database instead` }, giveUpAtBound: false };
  const { sessions, versionNum, how } = await withClient(
    withDatabase(url, "postgres"),
    async (client) => {
      const { rows } = await client.query<{ sessions: number; v: string }>(
        `SELECT (SELECT count(*)::int FROM pg_stat_activity
                  WHERE datname = $1 AND backend_type = 'client backend') AS sessions,
                current_setting('server_version_num') AS v`,
        [parseDatabaseUrl(url).database],
      );
      return { sessions: rows[0].sessions, versionNum: Number(rows[0].v), how: await decideCopy(client, options.copyMethod) };
    },
    { applicationName: "pgstack snapshot" },
  );
  if (choice === "template") return { engine: engines.template, chosen: { reason: how.reason, how, sessions }, giveUpAtBound: false };
  if (sessions === 0) return { engine: engines.template, chosen: { reason: `no session is connected; ${how.reason}`, how, sessions }, giveUpAtBound: false };
  // Why no pg_dump can be used here, or undefined when one can.
  const dumpTool = await Promise.resolve()
    .then(async () => checkDumpTool(await resolveTool("pg_dump", { serverMajor: serverMajor(versionNum), pgDump: options.pgDump, env: options.env }), versionNum, options.env))
    .then(
    () => undefined,
    (err: unknown) => messageOf(err),
  );
  if (how.clone) {
    log?.info(`${sessions} session(s) connected to the database and cloning works here: a clone with a bounded pause`);
    // Without a usable pg_dump to fall back on, sessions still in a transaction at the bound are ended (as a template copy does).
    const fallback = dumpTool === undefined ? "" : `; no usable pg_dump to fall back on, so sessions still in a transaction at the bound are ended (${dumpTool})`;
    return { engine: engines.template, chosen: { reason: `${sessions} session(s) connected: a clone with a bounded pause (${how.reason})${fallback}`, how, sessions }, giveUpAtBound: dumpTool === undefined };
  }
  const dumpReason = `${sessions} session(s) connected and cloning is not possible here (${how.reason}): pg_dump ends none`;
  if (dumpTool !== undefined) {
    log?.warn(`${sessions} session(s) are connected and a template copy ends them; no usable pg_dump to avoid it (${dumpTool})`);
    return {
      engine: engines.template,
      chosen: { reason: `${sessions} session(s) connected, cloning is not possible here (${how.reason}) and no usable pg_dump: a template copy, ending them`, how, sessions },
      giveUpAtBound: false,
    };
  }
  log?.info(`${sessions} session(s) connected to the database: taking a pg_dump snapshot, which ends none of them`);
  return { engine: engines.dump, chosen: { reason: dumpReason, sessions }, giveUpAtBound: false };
}

/** The engine `auto` (or `choice`) takes for the database of `url` (see chooseSnapshotEngine). */
export async function chooseEngine(url: string, choice: EngineChoice, options: StoreOptions = {}, log?: Logger): Promise<SnapshotEngine> {
  return (await chooseSnapshotEngine(url, choice, options, log)).engine;
}

/**
 * Takes a snapshot with the engine the store chooses. A clone whose sessions
 * were still in a transaction at the bound reopened the database without a
 * copy: then a pg_dump is taken instead, saying so (nothing was lost: the
 * database was only closed to new sessions meanwhile).
 */
export async function createSnapshot(options: CreateOptions & StoreOptions & { engine?: EngineChoice }): Promise<SnapshotInfo> {
  const picked = await chooseSnapshotEngine(options.url, options.engine ?? "auto", options, options.log);
  const reserved = async () => [...(options.reserved ?? []), ...(await idsInUse(options.url, options))];
  const base = { ...options, sealKeyFile: options.sealKeyFile ?? sealKeyFileOf(options) };
  try {
    return await picked.engine.create({ ...base, chosen: picked.chosen, giveUpAtBound: picked.giveUpAtBound, reserved: await reserved() });
  } catch (err) {
    if (!(picked.giveUpAtBound && isPgstackError(err) && err.details.reason === "pause-exceeded")) throw err;
    const reason = `${err.details.busy} session(s) were still in a transaction after ${err.details.maxPauseMs} ms, so the database was reopened (closed for ${err.details.pauseMs} ms) and pg_dump took the snapshot instead`;
    options.log.warn(reason);
    return enginesFor(options).dump.create({ ...base, chosen: { reason, pauseMs: Number(err.details.pauseMs), sessions: picked.chosen.sessions }, reserved: await reserved() });
  }
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
