/**
 * A restore says "verified" only against digests whose seal (seal.ts) it
 * checked with the project's key; without the key (a snapshot taken on
 * another machine) it restores, saying it could not verify them and why.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { pgstack } from "../support/cli";
import { adminQuery, createTestDatabase } from "../support/cluster";
import { migrationsDir } from "../support/fixtures";

jest.setTimeout(300_000);

async function snapshotOf(url: string): Promise<string> {
  const made = await pgstack(["snapshot", "create", "--stack", "dev", "--engine", "template", "--json"], { DATABASE_URL: url });
  expect(made.code).toBe(0);
  const db = new URL(url).pathname.slice(1);
  const { rows } = await adminQuery(
    `SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE '%"source":"${db}"%' AND datname LIKE 'snap_%' ORDER BY oid DESC LIMIT 1`,
  );
  return String(rows[0].datname);
}

it("says verified with the project's key, and 'could not be verified' naming the missing key without it", async () => {
  const url = await createTestDatabase("seal_key");
  const dir = await migrationsDir({ "20250101000000_base": "CREATE TABLE t (id int PRIMARY KEY, v text);\n" });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  const c = new Client({ connectionString: url });
  await c.connect();
  await c.query("INSERT INTO t SELECT g, 'x' || g FROM generate_series(1, 20) g");
  await c.end();

  const snap = await snapshotOf(url);
  const withKey = await pgstack(["snapshot", "restore", snap, "--yes", "-v"], { DATABASE_URL: url });
  expect(withKey.code).toBe(0);
  expect(withKey.stderr).toMatch(/verified: \d+ table\(s\) and the schema match the sealed digests/);

  // Another machine: a project folder without the key.
  const elsewhere = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-seal-"));
  const missing = path.join(elsewhere, ".pgstack", "snapshots", "snapshot-seal.key");
  const noKey = await pgstack(["snapshot", "restore", snap, "--yes", "-v", "--snapshots-dir", path.join(elsewhere, ".pgstack", "snapshots")], { DATABASE_URL: url });
  expect(noKey.code).toBe(0);
  expect(noKey.stderr).not.toMatch(/verified:/);
  expect(noKey.stderr).toContain("could not be verified");
  expect(noKey.stderr).toContain(missing);
  await fs.rm(elsewhere, { recursive: true, force: true });
});
