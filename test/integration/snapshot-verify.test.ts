/**
 * `pgstack snapshot verify <id>`: a template snapshot is read in place and a
 * dump restored into a throwaway database; either passes while it holds what
 * was recorded when it was taken, and fails, naming it, once tampered with.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { pgstack } from "../support/cli";
import { adminQuery, createTestDatabase, urlFor, withDb } from "../support/cluster";
import { migrationsDir } from "../support/fixtures";

jest.setTimeout(300_000);

let snapshotsDir: string;

beforeAll(async () => {
  snapshotsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-snapverify-"));
  await fs.chmod(snapshotsDir, 0o700);
});

async function migrated(prefix: string): Promise<string> {
  const url = await createTestDatabase(prefix);
  const dir = await migrationsDir({ "20250101000000_base": "CREATE TABLE t (id int PRIMARY KEY, v text);\n" });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  await withDb(url, (c) => c.query("INSERT INTO t SELECT g, 'x' || g FROM generate_series(1, 20) g"));
  return url;
}

const run = (url: string, ...args: string[]) => pgstack(["snapshot", ...args, "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });

async function take(url: string, engine: "template" | "dump"): Promise<string> {
  const made = await run(url, "create", "--stack", "dev", "--engine", engine, "--json");
  expect(made.code).toBe(0);
  return (JSON.parse(made.stdout) as { snapshotId: string }).snapshotId;
}

test("a template snapshot verifies, then fails once a row of it was changed", async () => {
  const url = await migrated("snapverify_tpl");
  const id = await take(url, "template");
  const ok = await run(url, "verify", id, "--json");
  expect(ok.code).toBe(0);
  const passed = JSON.parse(ok.stdout) as { status: string; details: { sentence: string; engine: string; seal: string } };
  expect(passed).toMatchObject({ status: "pass", details: { engine: "template", seal: "sealed" } });
  expect(passed.details.sentence).toMatch(/read in place\) verified: 2 tables and the schema match the sealed digests/);

  // Its owner reopens it and changes one value.
  await adminQuery(`ALTER DATABASE "${id}" ALLOW_CONNECTIONS true`);
  await withDb(urlFor(id), (c) => c.query("UPDATE t SET v = 'tampered' WHERE id = 7"));
  await adminQuery(`ALTER DATABASE "${id}" ALLOW_CONNECTIONS false`);
  const bad = await run(url, "verify", id);
  expect(bad.code).toBe(1);
  expect(bad.stdout).toMatch(/^FAIL/);
  expect(bad.stderr).toContain(`pgstack: Snapshot '${id}' (read in place) no longer matches the content digests recorded when it was taken (public.t has the expected 20 rows but different contents)`);
});

test("a dump snapshot restores into a throwaway database and verifies, then fails once its file was changed; no database is left behind", async () => {
  const url = await migrated("snapverify_dump");
  const id = await take(url, "dump");
  const before = await adminQuery(`SELECT count(*)::int AS n FROM pg_database`);
  const ok = await run(url, "verify", id, "--json");
  expect(ok.code).toBe(0);
  expect(JSON.parse(ok.stdout)).toMatchObject({ status: "pass", details: { engine: "dump", seal: "sealed" } });
  expect(JSON.parse(ok.stdout).details.sentence).toMatch(/restored into a throwaway database\) verified/);
  expect((await adminQuery(`SELECT count(*)::int AS n FROM pg_database`)).rows[0].n).toBe(before.rows[0].n);

  const files = (await fs.readdir(snapshotsDir)).filter((f) => f.startsWith(id) && !f.endsWith(".json"));
  expect(files.length).toBeGreaterThan(0);
  const file = path.join(snapshotsDir, files[0]);
  const bytes = await fs.readFile(file);
  bytes[bytes.length - 10] ^= 0xff;
  await fs.writeFile(file, bytes);
  const bad = await run(url, "verify", id, "--json");
  expect(bad.code).toBe(1);
  const failed = JSON.parse(bad.stdout.trim().split("\n")[0]) as { status: string; details: { sentence: string } };
  expect(failed.status).toBe("fail");
  expect(failed.details.sentence).toContain(id);
  expect((await adminQuery(`SELECT count(*)::int AS n FROM pg_database`)).rows[0].n).toBe(before.rows[0].n);
});

test("an unknown id fails with one sentence", async () => {
  const url = await migrated("snapverify_unknown");
  const r = await run(url, "verify", "snap_nope");
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/No snapshot 'snap_nope' of database/);
});
