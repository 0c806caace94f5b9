/**
 * A throwaway embedded PostgreSQL cluster per benchmark, made with pgstack's
 * own cluster code (infra/core/cluster/embedded.ts), its data directory under
 * bench/.work so big data never lands in /tmp; stopped and removed afterwards,
 * also on Ctrl-C.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { freePort, initCluster, startCluster, stopCluster, serverUser, binDir } from "../../infra/core/cluster/embedded";
import { libpqEnv } from "../../infra/core/db/url";
import { log, WORK } from "./common";

export interface BenchCluster {
  dataDir: string;
  port: number;
  password: string;
  /** URL of a database on this cluster. */
  url(database?: string): string;
  /** libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) for psql, pg_dump, pgbench. */
  pgEnv(database?: string): NodeJS.ProcessEnv;
  query<R extends Record<string, unknown> = Record<string, unknown>>(sql: string, params?: unknown[], database?: string): Promise<R[]>;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stops the server and deletes the data directory. */
  destroy(): Promise<void>;
}

export interface ClusterSettings {
  /** Extra postgresql.conf lines, e.g. { max_wal_size: "4GB" }. */
  conf?: Record<string, string>;
  /** Folder to make the data directory in (default bench/.work/clusters), e.g. a reflink mount's folder. */
  root?: string;
}

const live = new Set<BenchCluster>();
let hooked = false;

function hookSignals(): void {
  if (hooked) return;
  hooked = true;
  const cleanup = async (signal: NodeJS.Signals) => {
    for (const c of live) await c.destroy().catch(() => undefined);
    process.kill(process.pid, signal);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, (s) => void cleanup(s));
}

export async function startBenchCluster(name: string, settings: ClusterSettings = {}): Promise<BenchCluster> {
  hookSignals();
  const root = settings.root ?? path.join(WORK, "clusters");
  await fs.mkdir(root, { recursive: true });
  const dataDir = await fs.mkdtemp(path.join(root, `${name}-`));
  await fs.rm(dataDir, { recursive: true, force: true }); // initCluster creates it with the server's owner
  const port = await freePort();
  const password = `b${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  await initCluster({ dataDir, port, password });
  if (settings.conf && Object.keys(settings.conf).length > 0) {
    const lines = Object.entries(settings.conf).map(([k, v]) => `${k} = '${v}'`);
    await fs.appendFile(path.join(dataDir, "postgresql.conf"), `\n# bench\n${lines.join("\n")}\n`);
  }
  const url = (database = "postgres") => `postgresql://postgres:${password}@127.0.0.1:${port}/${database}`;
  const cluster: BenchCluster = {
    dataDir,
    port,
    password,
    url,
    pgEnv: (database = "postgres") => ({ ...process.env, ...libpqEnv(url(database)) }),
    async query(sql, params = [], database = "postgres") {
      const client = new Client({ connectionString: url(database) });
      await client.connect();
      try {
        return (await client.query(sql, params)).rows;
      } finally {
        await client.end();
      }
    },
    start: async () => {
      await startCluster({ dataDir, port });
    },
    stop: async () => {
      await stopCluster(dataDir);
    },
    async destroy() {
      live.delete(cluster);
      await stopCluster(dataDir).catch(() => undefined);
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
  live.add(cluster);
  await cluster.start();
  log(`cluster ${path.basename(dataDir)} on port ${port}`);
  return cluster;
}

/** The server user (as root, `postgres`), for files the server must own. */
export { serverUser, binDir };

export async function serverVersion(cluster: BenchCluster): Promise<string> {
  const rows = await cluster.query<{ v: string }>("SELECT version() AS v");
  return rows[0].v.split(" on ")[0];
}
