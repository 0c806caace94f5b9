import { createHash } from "node:crypto";
import { createReadStream, existsSync, promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { withClient } from "../db/client";
import { libpqEnv, parseDatabaseUrl, quoteIdent, withDatabase } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import { failpoint, failpointDuring } from "../failpoint";
import type { Logger } from "../logger";
import { checkDumpTool, resolveToolFor, runTool } from "../pgtools";
import { processAlive } from "../process";
import type { CreateOptions, SnapshotEngine } from "./engine";
import { isPostgresSnapshotName, postgresSnapshotName } from "./naming";
import { schemaDigestOn, sealKey, sealKeyIdOf, sealKeyPath, sealOf } from "./seal";
import { tableStatesOn, type TableStates } from "./tables";
import { ledgerState, type SnapshotInfo } from "./template";

/**
 * pg_dump snapshots, for roles that may not create databases: `<id>.dump`
 * (custom format) and `<id>.json` (what SnapshotInfo says, the server it came
 * from and the rows per table at the moment of the dump) in a snapshots folder.
 *
 * The counts are taken in the very transaction snapshot pg_dump dumps
 * (pg_export_snapshot + `pg_dump --snapshot`), so they are exactly the dump's
 * and a restore can be verified against them. The sidecar also records the
 * dump file's SHA-256: a restore refuses a dump file changed since.
 */
export interface DumpEngineOptions {
  /** Folder of the dump files; created on first use. */
  dir: string;
  /** pg_dump to use. Default: $PGSTACK_PG_DUMP, else `pg_dump` on PATH. */
  pgDump?: string;
  env?: NodeJS.ProcessEnv;
}

interface DumpMeta extends SnapshotInfo {
  /** host:port of the server it was dumped from, so listing does not mix servers. */
  server: string;
}

export function serverKey(url: string): string {
  const t = parseDatabaseUrl(url);
  return `${t.host}:${t.port}`;
}







/**
 * `pg_dump --schema-only` of the database of `url`, as text to compare two
 * schemas by: owner and privileges left out, and the per-run `\restrict`
 * key lines newer pg_dump releases write.
 */
export async function dumpSchema(url: string, options: Pick<DumpEngineOptions, "pgDump" | "env"> = {}): Promise<string> {
  const env = options.env ?? process.env;
  const pgDump = await resolveToolFor("pg_dump", url, { pgDump: options.pgDump, env });
  const result = await runTool(pgDump, ["--schema-only", "--no-owner", "--no-privileges", "--no-password"], libpqEnv(url), env);
  if (result.code !== 0) throw new PgstackError("E_SNAPSHOT", `pg_dump could not read the schema of database '${parseDatabaseUrl(url).database}': ${toolError(result.stderr)}.`);
  return result.stdout
    .split("\n")
    .filter((line) => !/^\\(un)?restrict /.test(line))
    .join("\n");
}

/** The first meaningful line of a tool's stderr, without its "pg_dump: error:" prefix. */
function toolError(stderr: string): string {
  const line = stderr.split("\n").find((l) => /error|fatal|denied/i.test(l)) ?? stderr.split("\n").find(Boolean) ?? "no output";
  return line
    .replace(/^\S+:\s*(error:\s*)?/, "")
    .replace(/^error:\s*/, "")
    .replace(/^query failed:\s*(ERROR:\s*)?/, "")
    .replace(/\.$/, "")
    .trim();
}

const INSUFFICIENT_PRIVILEGE = "42501";

/** A permission error while reading the source (the ledger, a table), as one sentence; undefined for any other error. */
function notReadable(err: unknown, url: string, source: string): PgstackError | undefined {
  if ((err as { code?: string }).code !== INSUFFICIENT_PRIVILEGE) return undefined;
  return new PgstackError(
    "E_SNAPSHOT",
    `Role '${parseDatabaseUrl(url).user}' may not read all of database '${source}' (${messageOf(err).split("\n")[0].replace(/\.$/, "")}), so pg_dump cannot snapshot it: use the URL of the database's owner or grant the role SELECT on every table and sequence; nothing was dumped.`,
  );
}


/** SHA-256 of a file, hex, read as a stream (a dump may be large). */
async function fileDigest(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * A dump being written is `<id>.dump.<host>-<pid>.partial`, renamed to
 * `<id>.dump` only when pg_dump succeeded: a process killed mid-dump leaves
 * one behind, which the next pgstack command (and the next `pulumi up`)
 * removes once its owner is gone.
 */
const PARTIAL = /^(.+?)\.dump\.(.+)-(\d+)\.partial$/;

function partialName(dump: string): string {
  return `${dump}.${os.hostname()}-${process.pid}.partial`;
}

/** The snapshot id a file of the snapshots folder belongs to (a dump, its sidecar, a partial dump). Pure. */
export function snapshotIdOfFile(file: string): string | undefined {
  return PARTIAL.exec(file)?.[1] ?? /^(.+)\.(dump|json)$/.exec(file)?.[1];
}

/** Removes partial dumps whose writer (on this machine) is gone; one log line each. */
export async function removeAbandonedPartials(dir: string, log: Logger): Promise<void> {
  for (const file of await fs.readdir(dir).catch(() => [] as string[])) {
    const m = PARTIAL.exec(file);
    if (!m || m[2] !== os.hostname() || processAlive(Number(m[3]))) continue;
    await fs.rm(path.join(dir, file), { force: true });
    log.warn(`removed ${file}: the unfinished dump of a snapshot whose process died (pid ${m[3]})`);
  }
}

export function dumpEngine(options: DumpEngineOptions): SnapshotEngine {
  const env = options.env ?? process.env;
  const files = (id: string) => ({ dump: path.join(options.dir, `${id}.dump`), meta: path.join(options.dir, `${id}.json`) });

  async function readAll(): Promise<DumpMeta[]> {
    let names: string[];
    try {
      names = await fs.readdir(options.dir);
    } catch {
      return [];
    }
    const out: DumpMeta[] = [];
    for (const n of names.filter((f) => f.endsWith(".json"))) {
      try {
        const meta = JSON.parse(await fs.readFile(path.join(options.dir, n), "utf8")) as DumpMeta;
        if (meta.engine === "dump" && existsSync(files(meta.snapshotId).dump)) out.push(meta);
      } catch {
        // not ours
      }
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.snapshotId.localeCompare(b.snapshotId));
  }

  const engine: SnapshotEngine = {
    kind: "dump",

    async create(o: CreateOptions): Promise<SnapshotInfo> {
      const source = parseDatabaseUrl(o.url).database;
      const pgDump = await resolveToolFor("pg_dump", o.url, { pgDump: options.pgDump, env });
      const { lastMigration, clean } = await ledgerState(o.url).catch((err) => {
        throw notReadable(err, o.url, source) ?? err;
      });
      const at = (o.now ?? (() => new Date()))();
      let id = o.name ?? postgresSnapshotName({ stack: o.stack, lastMigration: lastMigration ?? undefined, at });
      if (o.name && !isPostgresSnapshotName(o.name)) {
        throw new PgstackError("E_SNAPSHOT", `Snapshot name '${o.name}' is not one pgstack makes (snap_<stack>_<migration>_<YYYYMMDDHHMMSS>, at most 63 bytes).`);
      }
      const reserved = new Set(o.reserved ?? []);
      const taken = (name: string) => existsSync(files(name).dump) || existsSync(files(name).meta) || reserved.has(name);
      if (taken(id)) {
        if (o.name && reserved.has(id) && !existsSync(files(id).dump) && !existsSync(files(id).meta)) {
          throw new PgstackError("E_SNAPSHOT", `Snapshot name '${id}' is taken by an existing database: choose another name (nothing was dumped).`);
        }
        if (o.name) throw new PgstackError("E_SNAPSHOT", `Snapshot name '${id}' is taken in ${options.dir}: choose another name (nothing was dumped).`);
        const base = id;
        let n = 2;
        while (taken(`${base}_${n}`)) n++;
        id = `${base}_${n}`;
      }
      const { dump, meta } = files(id);
      const partial = partialName(dump);
      await removeAbandonedPartials(options.dir, o.log);

      const { states, schema } = await withClient(
        o.url,
        async (client) => {
          const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
          await checkDumpTool(pgDump, Number(rows[0].v), env);
          // Hold the exported snapshot open while pg_dump reads it.
          await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
          try {
            const { rows: snap } = await client.query<{ id: string }>("SELECT pg_export_snapshot() AS id");
            const states = await tableStatesOn(client);
            const schema = await schemaDigestOn(client);
            // Only now, with pg_dump checked and the data readable: a refused snapshot leaves no folder behind.
            // Private to the owner: a dump holds every row of the database.
            await fs.mkdir(options.dir, { recursive: true, mode: 0o700 });
            await fs.chmod(options.dir, 0o700);
            await fs.writeFile(partial, "", { mode: 0o600 });
            const result = await failpointDuring("dump:dumping", () =>
              runTool(pgDump, ["--format=custom", "--no-password", `--snapshot=${snap[0].id}`, `--file=${partial}`], libpqEnv(o.url), env),
            );
            if (result.code !== 0) {
              throw new PgstackError("E_SNAPSHOT", `pg_dump could not dump database '${source}': ${toolError(result.stderr)}.`);
            }
            return { states, schema };
          } finally {
            await client.query("COMMIT").catch(() => undefined);
          }
        },
        { applicationName: "pgstack snapshot" },
      ).catch(async (err) => {
        await fs.rm(partial, { force: true });
        throw notReadable(err, o.url, source) ?? err;
      });

      const info: DumpMeta = {
        snapshotId: id,
        source,
        stack: o.stack,
        lastMigration,
        createdAt: at.toISOString(),
        key: o.key ?? null,
        engine: "dump",
        clean,
        states,
        schema,
        server: serverKey(o.url),
        method: "dump",
        methodReason: o.chosen?.reason ?? "a pg_dump snapshot was asked for (--engine dump)",
        // A dump closes nothing; a bounded pause that ran out before it (store.ts) is reported as it was.
        pauseMs: o.chosen?.pauseMs ?? 0,
      };
      failpoint("dump:dumped");
      info.fileDigest = await fileDigest(partial);
      // Made (with the folder) only once there is a dump to seal: a refused pg_dump leaves no folder behind.
      const key = await sealKey(o.sealKeyFile ?? sealKeyPath(options.dir));
      info.seal = sealOf(key, info);
      info.sealKeyId = sealKeyIdOf(key);
      // Data first, then the sidecar: a listed snapshot always has a complete dump.
      await fs.chmod(partial, 0o600);
      await fs.rename(partial, dump);
      await fs.writeFile(meta, JSON.stringify(info, null, 2) + "\n", { flag: "wx", mode: 0o600 });
      o.log.info(`snapshot ${id} of ${source} dumped to ${path.relative(process.cwd(), dump) || dump} (last migration: ${lastMigration ?? "none"}; ${info.methodReason})`);
      const { server: _server, ...plain } = info;
      return plain;
    },

    async list(url, filter = {}) {
      const server = serverKey(url);
      return (await readAll())
        .filter((m) => m.server === server && (filter.source === undefined || m.source === filter.source))
        .map(({ server: _s, ...plain }) => plain);
    },

    async tableStates(_url, snapshot): Promise<TableStates> {
      if (snapshot.states) return snapshot.states;
      // Sidecars written before digests: counts only.
      return Object.fromEntries(Object.entries(snapshot.tables ?? {}).map(([t, rows]) => [t, { rows, digest: "" }]));
    },

    async markRestored(_url, snapshot, oid) {
      const file = files(snapshot.snapshotId).meta;
      const meta = JSON.parse(await fs.readFile(file, "utf8")) as DumpMeta;
      meta.restoredInto = [...new Set([...(meta.restoredInto ?? []), oid])];
      await fs.writeFile(`${file}.tmp`, JSON.stringify(meta, null, 2) + "\n", { mode: 0o600 });
      await fs.rename(`${file}.tmp`, file);
    },

    async materialize(url, snapshot, target, log) {
      const pgRestore = await resolveToolFor("pg_restore", url, { pgDump: options.pgDump, env });
      const file = files(snapshot.snapshotId).dump;
      if (snapshot.fileDigest === undefined) {
        log.warn(`snapshot ${snapshot.snapshotId} was dumped by an older pgstack that recorded no digest of its dump file: restored as the file is now`);
      } else if ((await fileDigest(file)) !== snapshot.fileDigest) {
        throw new PgstackError(
          "E_SNAPSHOT",
          `Snapshot '${snapshot.snapshotId}' no longer matches the digest of its dump file recorded when it was taken (${file} was changed since), so it is not restored; nothing was changed.`,
          { snapshotId: snapshot.snapshotId, reason: "changed-since-taken" },
        );
      }
      await withClient(withDatabase(url, "postgres"), (c) => c.query(`CREATE DATABASE ${quoteIdent(target)} TEMPLATE template0`), { applicationName: "pgstack restore" }).catch(
        (err) => {
          if (err instanceof PgstackError) throw err;
          throw new PgstackError("E_SNAPSHOT", `Could not create database '${target}' to restore into: ${messageOf(err).split("\n")[0]} (restoring a dump needs a role that may create databases, such as the server's admin role); nothing was changed.`);
        },
      );
      const result = await runTool(pgRestore, ["--exit-on-error", "--no-password", `--dbname=${target}`, file], { ...libpqEnv(withDatabase(url, target)) }, env);
      if (result.code !== 0) {
        throw new PgstackError("E_SNAPSHOT", `pg_restore could not restore snapshot '${snapshot.snapshotId}' into '${target}': ${toolError(result.stderr)}.`);
      }
      log.info(`restored dump ${snapshot.snapshotId} into ${target}`);
    },

    async remove(_url, snapshot, log) {
      const { dump, meta } = files(snapshot.snapshotId);
      if (!existsSync(meta)) throw new PgstackError("E_SNAPSHOT", `No snapshot '${snapshot.snapshotId}' exists in ${options.dir}: nothing was deleted.`);
      // Sidecar first: a half-deleted snapshot is never listed as restorable.
      await fs.rm(meta, { force: true });
      await fs.rm(dump, { force: true });
      log.info(`snapshot ${snapshot.snapshotId} deleted`);
    },
  };
  return engine;
}

