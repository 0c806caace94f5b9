/**
 * The embedded engine's cluster, as the `Database` component's command
 * resource drives it through `pgstack cluster up|down` (and `npm run dev`
 * restarts it with clusterResume).
 *
 * `up` is idempotent: it creates the cluster if the data dir has none (with a
 * superuser password it generates and keeps in `<dir>.password`, mode 0600,
 * next to the data dir), starts the server (restarting it if it runs on another
 * port) and creates the database if missing. Nothing secret is returned: the
 * password stays in its file, which the Pulumi program reads to build the
 * (secret) connection URL.
 */
import { randomBytes } from "node:crypto";
import { existsSync, promises as fs, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { withClient } from "../db/client";
import { localServerUrl, quoteIdent } from "../db/url";
import { PgstackError } from "../errors";
import type { Logger } from "../logger";
import { databaseIdentity } from "../snapshot/identity";
import { dataDirMajor, initCluster, isRunning, majorMismatch, serverUser, startCluster, stopCluster } from "./embedded";

/** The embedded cluster's superuser. */
export const EMBEDDED_SUPERUSER = "postgres";

/** Where the superuser password of the cluster in `dataDir` is kept: `<dataDir>.password`. */
export function passwordFileFor(dataDir: string): string {
  return `${dataDir.replace(/[\\/]+$/, "")}.password`;
}

/** The URL of `database` on the embedded cluster. */
export function embeddedUrl(password: string, port: number, database: string): string {
  return localServerUrl(EMBEDDED_SUPERUSER, password, port, database);
}

/** The port in postmaster.pid (running server) or postmaster.opts (last start), if any. */
export function recordedPort(dataDir: string, file: "postmaster.pid" | "postmaster.opts"): number | undefined {
  try {
    const text = readFileSync(path.join(dataDir, file), "utf8");
    if (file === "postmaster.pid") {
      const port = Number(text.split("\n")[3]);
      return Number.isInteger(port) && port > 0 ? port : undefined;
    }
    const m = /"-p"\s+"(\d+)"|-p\s+(\d+)/.exec(text);
    return m ? Number(m[1] ?? m[2]) : undefined;
  } catch {
    return undefined;
  }
}

/** As root the server runs as `postgres`, which must be able to reach the data dir. */
function assertReachable(dataDir: string): void {
  if (serverUser().uid === undefined) return;
  let dir = path.dirname(path.resolve(dataDir));
  for (;;) {
    if (existsSync(dir) && (statSync(dir).mode & 0o001) === 0) {
      throw new PgstackError(
        "E_CLUSTER",
        `The postgres user cannot reach ${path.resolve(dataDir)} because ${dir} is not searchable by others: run \`chmod o+x ${dir}\` or put the project elsewhere.`,
      );
    }
    const parent = path.dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

async function readOrCreatePassword(dataDir: string): Promise<string> {
  const file = passwordFileFor(dataDir);
  const initialized = existsSync(path.join(dataDir, "PG_VERSION"));
  if (existsSync(file)) return (await fs.readFile(file, "utf8")).trim();
  if (initialized) {
    throw new PgstackError(
      "E_CLUSTER",
      `The cluster in ${dataDir} exists but its password file ${file} is missing: restore it, or remove the data dir to start afresh.`,
    );
  }
  const password = randomBytes(24).toString("hex");
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, password + "\n", { mode: 0o600 });
  await fs.rename(tmp, file);
  return password;
}

export interface ClusterUpResult {
  identity: string;
  systemIdentifier: string | null;
  database: string;
  port: number;
}

export async function clusterUp(opts: { dataDir: string; port: number; database: string; major?: string }, log: Logger): Promise<ClusterUpResult> {
  // pg_ctl gets absolute paths (the server runs in its data dir); messages keep the relative one.
  const dataDir = path.resolve(opts.dataDir);
  refuseOtherMajor(opts.dataDir, opts.major);
  assertReachable(dataDir);
  await fs.mkdir(path.dirname(dataDir), { recursive: true, mode: 0o755 });
  const password = await readOrCreatePassword(dataDir);
  const { created } = await initCluster({ dataDir, port: opts.port, user: EMBEDDED_SUPERUSER, password, major: opts.major });
  if (created) log.info(`created the embedded PostgreSQL cluster in ${opts.dataDir}`);
  if (await isRunning(dataDir)) {
    const running = recordedPort(dataDir, "postmaster.pid");
    if (running !== undefined && running !== opts.port) {
      log.info(`restarting the embedded PostgreSQL: it runs on port ${running}, the stack says ${opts.port}`);
      await stopCluster(dataDir);
    }
  }
  const { started } = await startCluster({ dataDir, port: opts.port, major: opts.major });
  if (started) log.info(`started the embedded PostgreSQL on 127.0.0.1:${opts.port}`);
  await withClient(embeddedUrl(password, opts.port, "postgres"), async (client) => {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [opts.database]);
    if (!rowCount) {
      await client.query(`CREATE DATABASE ${quoteIdent(opts.database)}`);
      log.info(`created database ${opts.database}`);
    }
  });
  const id = await databaseIdentity(embeddedUrl(password, opts.port, opts.database));
  return { identity: `embedded:${id.identity}`, systemIdentifier: id.systemIdentifier, database: id.database, port: opts.port };
}

/** Stops the server; removes the data dir and its password file only with `removeData`. */
export async function clusterDown(opts: { dataDir: string; removeData: boolean }, log: Logger): Promise<void> {
  const dataDir = path.resolve(opts.dataDir);
  const { stopped } = await stopCluster(dataDir);
  log.info(stopped ? `stopped the embedded PostgreSQL in ${opts.dataDir}` : `the embedded PostgreSQL in ${opts.dataDir} was not running`);
  if (opts.removeData) {
    await fs.rm(dataDir, { recursive: true, force: true });
    await fs.rm(passwordFileFor(dataDir), { force: true });
    log.info(`removed ${opts.dataDir} and its password file`);
  } else if (existsSync(dataDir)) {
    log.info(`kept the data in ${opts.dataDir} (npm run destroy -- --remove-data deletes it)`);
  }
}

/** A data dir made by another major than `major` is refused before anything is done (nothing installed, started or changed). */
function refuseOtherMajor(dataDir: string, major: string | undefined): void {
  const made = dataDirMajor(path.resolve(dataDir));
  if (major !== undefined && made !== undefined && made !== major) throw majorMismatch(dataDir, made, major);
}

/** Starts a stopped cluster on the port it last ran on; a no-op when running or absent. Refuses a data dir of another major than `major`. */
export async function clusterResume(opts: { dataDir: string; major?: string }): Promise<{ started: boolean }> {
  refuseOtherMajor(opts.dataDir, opts.major);
  const dataDir = path.resolve(opts.dataDir);
  if (!existsSync(path.join(dataDir, "PG_VERSION")) || (await isRunning(dataDir))) return { started: false };
  const port = recordedPort(dataDir, "postmaster.opts");
  if (port === undefined) return { started: false };
  return startCluster({ dataDir, port, major: opts.major });
}
