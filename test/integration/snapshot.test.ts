import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { createSnapshot, listAllSnapshots } from "../../infra/core/snapshot/store";
import { MIGRATION_LOCK_KEY } from "../../infra/core/db/deployers";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { databaseIdentity } from "../../infra/core/snapshot/identity";
import { copyStrategy } from "../../infra/core/db/copy";
import { createTemplateSnapshot, lastAppliedMigration, listSnapshots, templateEngine } from "../../infra/core/snapshot/template";
import { adminQuery, createTestDatabase, urlFor, withDb } from "../support/cluster";
import { fingerprint, migrationsDir } from "../support/fixtures";
import { withSnapshotOpened } from "../support/snapshots";
import { tableStates } from "../../infra/core/snapshot/tables";

describe("template-copy snapshots (embedded engine)", () => {
  let url: string;
  let database: string;

  beforeAll(async () => {
    url = await createTestDatabase("snap");
    database = new URL(url).pathname.slice(1);
    const dir = await migrationsDir({
      "20250101000000_widgets": "CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL);\n",
      "20250102000000_seed_widgets": "INSERT INTO widgets VALUES (1, 'one'), (2, 'two');\n",
    });
    await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  });

  it("copies the database as it is, named after the stack, the last migration and the time", async () => {
    const log = memoryLogger();
    const info = await createTemplateSnapshot({ url, stack: "dev", key: "aaaaaaaaaaaaaaaa", log, now: () => new Date("2025-11-22T00:30:15Z") });
    expect(info).toMatchObject({
      snapshotId: "snap_dev_20250102000000_seed_widgets_20251122003015",
      source: database,
      stack: "dev",
      lastMigration: "20250102000000_seed_widgets",
      key: "aaaaaaaaaaaaaaaa",
    });
    // Closed to everyone, and its digests recorded.
    expect((await adminQuery("SELECT datallowconn FROM pg_database WHERE datname = $1", [info.snapshotId])).rows[0].datallowconn).toBe(false);
    expect(info.states).toEqual(await tableStates(url));
    expect(await withSnapshotOpened(info.snapshotId, () => fingerprint(urlFor(info.snapshotId)))).toBe(await fingerprint(url));
    const rows = await withSnapshotOpened(info.snapshotId, () => withDb(urlFor(info.snapshotId), (c) => c.query("SELECT id, name FROM widgets ORDER BY id")));
    expect(rows.rows).toEqual([
      { id: 1, name: "one" },
      { id: 2, name: "two" },
    ]);
    expect(log.lines.join("\n")).not.toMatch(/postgresql:\/\//);
    // The source accepts connections again.
    expect((await adminQuery("SELECT datallowconn FROM pg_database WHERE datname = $1", [database])).rows[0].datallowconn).toBe(true);
  });

  it("takes a new copy every time, even in the same second, and lists them with what they record", async () => {
    const again = await createTemplateSnapshot({ url, stack: "dev", key: "aaaaaaaaaaaaaaaa", log: memoryLogger(), now: () => new Date("2025-11-22T00:30:15Z") });
    expect(again.snapshotId).toBe("snap_dev_20250102000000_seed_widgets_20251122003015_2");
    const listed = await listSnapshots(url, { source: database });
    expect(listed.map((s) => s.snapshotId)).toEqual(["snap_dev_20250102000000_seed_widgets_20251122003015", "snap_dev_20250102000000_seed_widgets_20251122003015_2"]);
    expect(listed[0]).toEqual({
      snapshotId: "snap_dev_20250102000000_seed_widgets_20251122003015",
      source: database,
      stack: "dev",
      lastMigration: "20250102000000_seed_widgets",
      createdAt: "2025-11-22T00:30:15.000Z",
      key: "aaaaaaaaaaaaaaaa",
      engine: "template",
      clean: true,
      states: await tableStates(url),
      schema: expect.stringMatching(/^[0-9a-f]{32}$/),
      seal: expect.stringMatching(/^[0-9a-f]{64}$/),
      sealKeyId: expect.stringMatching(/^[0-9a-f]{16}$/),
      // The test cluster's data directory is on /tmp (ext4): a full copy, and the record says why.
      method: "template",
      methodReason: expect.stringMatching(/^the data directory's file system \(ext4\) cannot reflink \(E[A-Z]+\)$/),
      pauseMs: expect.any(Number),
    });
  });

  it("ends sessions left open in the source, and only those", async () => {
    const straggler = new Client({ connectionString: url });
    straggler.on("error", () => undefined);
    await straggler.connect();
    const bystanderUrl = await createTestDatabase("bystander");
    const bystander = new Client({ connectionString: bystanderUrl });
    await bystander.connect();
    try {
      const log = memoryLogger();
      await createTemplateSnapshot({ url, stack: "dev", key: "bbbbbbbbbbbbbbbb", log });
      expect(log.lines).toContain(`warn: ended 1 session(s) still connected to ${database} so it could be copied`);
      await expect(straggler.query("SELECT 1")).rejects.toThrow();
      await expect(bystander.query("SELECT 1 AS ok")).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    } finally {
      await straggler.end().catch(() => undefined);
      await bystander.end();
    }
  });

  it("refuses, naming it, while a deployer holds the migration lock, and leaves the source open", async () => {
    const deployer = new Client({ connectionString: url, application_name: "pgstack apply" });
    await deployer.connect();
    await deployer.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    try {
      await expect(createTemplateSnapshot({ url, stack: "dev", key: "cccccccccccccccc", log: memoryLogger(), drainTimeoutMs: 2000 })).rejects.toThrow(
        new RegExp(`^Cannot snapshot '${database}' while a deployer holds its migration lock \\(pid \\d+, application_name 'pgstack apply'\\): let it finish and run again\\.$`),
      );
      await expect(deployer.query("SELECT 1 AS ok")).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    } finally {
      await deployer.end();
    }
    expect((await adminQuery("SELECT datallowconn FROM pg_database WHERE datname = $1", [database])).rows[0].datallowconn).toBe(true);
  });

  it("says `empty` for a database with no migration, and reads identities", async () => {
    const fresh = await createTestDatabase("fresh");
    expect(await lastAppliedMigration(fresh)).toBeNull();
    const a = await databaseIdentity(url);
    const b = await databaseIdentity(fresh);
    expect(a.systemIdentifier).toMatch(/^\d+$/);
    expect(b.systemIdentifier).toBe(a.systemIdentifier);
    expect(a.identity).not.toBe(b.identity);
    expect(a.identity).toBe(`${a.systemIdentifier}/${database}/${a.databaseOid}`);
  });

  it("copies large databases with STRATEGY = FILE_COPY (threshold from PGSTACK_FILE_COPY_MIN_MB), and the copy is exact", async () => {
    await withDb(url, async (c) => {
      expect(await copyStrategy(c, database, {})).toBe("");
      expect(await copyStrategy(c, database, { PGSTACK_FILE_COPY_MIN_MB: "0" })).toBe(" STRATEGY = FILE_COPY");
    });
    const saved = process.env.PGSTACK_FILE_COPY_MIN_MB;
    process.env.PGSTACK_FILE_COPY_MIN_MB = "0";
    try {
      const log = memoryLogger();
      const info = await createTemplateSnapshot({ url, stack: "fc", key: "cccccccccccccccc", log });
      expect(await withSnapshotOpened(info.snapshotId, () => fingerprint(urlFor(info.snapshotId)))).toEqual(await fingerprint(url));
      const target = `${database}_fc_restored`;
      await templateEngine.materialize(url, info, target, log);
      const rows = (u: string) => withDb(u, (c) => c.query("SELECT * FROM widgets ORDER BY id").then((r) => r.rows));
      expect(await rows(urlFor(target))).toEqual(await rows(url));
      await adminQuery(`DROP DATABASE "${target}"`);
    } finally {
      if (saved === undefined) delete process.env.PGSTACK_FILE_COPY_MIN_MB;
      else process.env.PGSTACK_FILE_COPY_MIN_MB = saved;
    }
  });

  it("on ext4 with the application connected, auto takes a pg_dump and says why (cloning is not possible there)", async () => {
    const snapshotsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-ext4-dump-"));
    const app = new Client({ connectionString: url });
    await app.connect();
    try {
      const info = await createSnapshot({ url, stack: "ext4", log: memoryLogger(), snapshotsDir });
      expect(info).toMatchObject({ engine: "dump", method: "dump", pauseMs: 0 });
      expect(info.methodReason).toMatch(/^1 session\(s\) connected and cloning is not possible here \(the data directory's file system \(ext4\) cannot reflink \(E[A-Z]+\)\): pg_dump ends none$/);
      // The sidecar records it too.
      expect((await listAllSnapshots(url, { stack: "ext4" }, { snapshotsDir }))[0]).toMatchObject({ method: "dump", methodReason: info.methodReason, pauseMs: 0 });
      await expect(app.query("SELECT 1 AS ok")).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    } finally {
      await app.end();
      await fs.rm(snapshotsDir, { recursive: true, force: true });
    }
  });
});
