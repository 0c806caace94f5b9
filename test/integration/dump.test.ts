/**
 * The dump engine (pg_dump -Fc into a snapshots folder), on real PostgreSQL,
 * for the role it exists for: one that owns its database but may not create
 * databases (so no template copy). Create, list, restore in place (every
 * table identical, compared row by row), delete; and the refusals: a restore
 * by that role itself, a taken name, a pg_dump older than the server.
 */
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { databaseIdentity } from "../../infra/core/snapshot/identity";
import { planRestore, restoredFrom, restoreSnapshot } from "../../infra/core/snapshot/restore";
import { canTemplateCopy, chooseEngine, createSnapshot, deleteSnapshot, listAllSnapshots } from "../../infra/core/snapshot/store";
import type { SnapshotInfo } from "../../infra/core/snapshot/template";
import { SEAL_KEY_FILE } from "../../infra/core/snapshot/seal";
import { pgstack } from "../support/cli";
import { adminQuery, createTestDatabase, testCluster, urlFor, withDb } from "../support/cluster";
import { acceptsConnections, databasesLike, tableDigests } from "../support/data";
import { fingerprint, migrationsDir, writeMigrations } from "../support/fixtures";
import { createDatabaseOwnedBy, createTestRole, type TestRole } from "../support/roles";
import { expectOneSentence } from "../support/sentence";

jest.setTimeout(180_000);

const M1 = "20250101000000_accounts_and_events";
const M2 = "20250102000000_drop_note_and_old_events";
const AT = new Date("2025-11-22T00:30:15Z");
const SNAP_ID = `snap_dev_${M1}_20251122003015`;

const DATA_SQL = `
CREATE TABLE accounts (
  id bigserial PRIMARY KEY, name text NOT NULL, balance numeric(14,4), meta jsonb, created_at timestamptz NOT NULL,
  avatar bytea, note text
);
INSERT INTO accounts (name, balance, meta, created_at, avatar, note)
SELECT 'acct ' || g || ' ünïcødé ''q'' \\ tab	end', (g * 13.37)::numeric(14,4) - 5000,
       CASE WHEN g % 5 = 0 THEN NULL ELSE jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7), 'nested', jsonb_build_object('x', g::text)) END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 minutes 3.25 seconds',
       CASE WHEN g % 3 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') || '\\x00ff'::bytea END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE repeat('note ', g % 20) END
  FROM generate_series(1, 4000) g;
CREATE TABLE events (id int PRIMARY KEY, account_id bigint REFERENCES accounts(id), payload json, at timestamp, amount double precision, ok boolean, tags text[]);
INSERT INTO events SELECT g, 1 + g % 4000, json_build_object('n', g), timestamp '2025-01-01' + g * interval '1 second', g / 7.0, CASE WHEN g % 11 = 0 THEN NULL ELSE g % 2 = 0 END,
       CASE WHEN g % 4 = 0 THEN NULL ELSE ARRAY['x' || g, NULL, ''] END
  FROM generate_series(1, 3000) g;
CREATE TABLE empty_one (id uuid PRIMARY KEY, v numeric);
`;

/** Files in `dir`, sorted; [] when it does not exist. */
/** The snapshots folder's snapshot files (the project's seal key lives there too). */
async function filesIn(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).filter((f) => f !== SEAL_KEY_FILE).sort();
}

describe("pg_dump snapshots for a role that owns its database but may not create databases", () => {
  let role: TestRole;
  let db: string;
  let url: string;
  let snapshotsDir: string;
  let snap: SnapshotInfo;
  let atSnapshot: Record<string, string>;
  let dir: string;

  beforeAll(async () => {
    role = await createTestRole("dumper");
    ({ name: db, url } = await createDatabaseOwnedBy("dump", role));
    snapshotsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-dumps-"));
    dir = await migrationsDir({ [M1]: DATA_SQL });
    await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  });

  afterAll(async () => {
    for (const name of await databasesLike(db)) await adminQuery(`DROP DATABASE "${name}" WITH (FORCE)`);
    await role.drop();
  });

  it("falls to pg_dump: the role may not take template copies, and says why", async () => {
    expect(await canTemplateCopy(url)).toEqual({ ok: false, why: `role '${role.name}' may not create databases` });
    expect((await chooseEngine(url, "auto", { snapshotsDir })).kind).toBe("dump");
    await expect(chooseEngine(url, "template", { snapshotsDir })).rejects.toThrow(
      `A template-copy snapshot is not possible here (role '${role.name}' may not create databases): use --engine dump (pg_dump) or a role that may create databases.`,
    );
  });

  it("dumps into the snapshots folder under an id carrying the stack, the last migration and the time", async () => {
    const log = memoryLogger();
    const before = await fingerprint(url);
    snap = await createSnapshot({ url, stack: "dev", key: "aaaaaaaaaaaaaaaa", log, now: () => AT, snapshotsDir });
    atSnapshot = await tableDigests(url);
    expect(snap).toEqual({
      snapshotId: SNAP_ID,
      source: db,
      stack: "dev",
      lastMigration: M1,
      createdAt: AT.toISOString(),
      key: "aaaaaaaaaaaaaaaa",
      engine: "dump",
      // How it was made and why: this role may not create databases, so pg_dump; the application was never paused.
      method: "dump",
      methodReason: expect.stringContaining("may not create databases"),
      pauseMs: 0,
      clean: true,
      // Rows and a content digest per table, taken in the snapshot pg_dump reads.
      states: {
        "public._prisma_migrations": { rows: 1, digest: expect.stringMatching(/^[0-9a-f]{32}$/) },
        "public.accounts": { rows: 4000, digest: expect.stringMatching(/^[0-9a-f]{32}$/) },
        "public.empty_one": { rows: 0, digest: "d41d8cd98f00b204e9800998ecf8427e" },
        "public.events": { rows: 3000, digest: expect.stringMatching(/^[0-9a-f]{32}$/) },
      },
      // The dump file's own SHA-256, checked before a restore.
      fileDigest: createHash("sha256").update(await fs.readFile(path.join(snapshotsDir, `${SNAP_ID}.dump`))).digest("hex"),
      // The schema's digest, and a seal over all of them with the project's key (seal.ts).
      schema: expect.stringMatching(/^[0-9a-f]{32}$/),
      seal: expect.stringMatching(/^[0-9a-f]{64}$/),
      sealKeyId: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    expect(await filesIn(snapshotsDir)).toEqual([`${SNAP_ID}.dump`, `${SNAP_ID}.json`]);
    // A real custom-format archive, not an empty placeholder.
    const dump = await fs.readFile(path.join(snapshotsDir, `${SNAP_ID}.dump`));
    expect(dump.subarray(0, 5).toString()).toBe("PGDMP");
    expect(dump.length).toBeGreaterThan(50_000);
    const sidecar = await fs.readFile(path.join(snapshotsDir, `${SNAP_ID}.json`), "utf8");
    expect(sidecar).not.toContain(role.password);
    expect(log.lines.join("\n")).not.toContain(role.password);
    expect(log.lines.join("\n")).not.toMatch(/postgresql:\/\//);
    // No database was created, and the source is untouched and open.
    expect(await databasesLike(db)).toEqual([db]);
    expect(await fingerprint(url)).toBe(before);
    expect(await acceptsConnections(db)).toBe(true);
  });

  it("a second snapshot in the same second gets its own id; an explicit name that is taken is refused", async () => {
    const second = await createSnapshot({ url, stack: "dev", log: memoryLogger(), now: () => AT, snapshotsDir });
    expect(second.snapshotId).toBe(`${SNAP_ID}_2`);
    await expect(createSnapshot({ url, stack: "dev", name: SNAP_ID, log: memoryLogger(), snapshotsDir })).rejects.toThrow(
      `Snapshot name '${SNAP_ID}' is taken in ${snapshotsDir}: choose another name (nothing was dumped).`,
    );
    expect(await filesIn(snapshotsDir)).toEqual([`${SNAP_ID}.dump`, `${SNAP_ID}.json`, `${SNAP_ID}_2.dump`, `${SNAP_ID}_2.json`]);
    await deleteSnapshot(url, second.snapshotId, memoryLogger(), { snapshotsDir });
  });

  it("lists the dump with what it records, for this database only", async () => {
    const listed = await listAllSnapshots(url, {}, { snapshotsDir });
    expect(listed.map(({ states: _t, fileDigest: _f, schema: _c, seal: _s, sealKeyId: _k, ...s }) => s)).toEqual([
      { snapshotId: SNAP_ID, source: db, stack: "dev", lastMigration: M1, createdAt: AT.toISOString(), key: "aaaaaaaaaaaaaaaa", engine: "dump", clean: true,
        method: "dump", methodReason: expect.stringContaining("may not create databases"), pauseMs: 0 },
    ]);
    expect(await listAllSnapshots(url, { stack: "prod" }, { snapshotsDir })).toEqual([]);
    expect(await listAllSnapshots(urlFor("postgres"), {}, { snapshotsDir })).toEqual([]);
    // The CLI says the same, as the role, without its password.
    const cli = await pgstack(["snapshot", "list", "--json", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout).snapshots.map((s: SnapshotInfo) => [s.snapshotId, s.engine])).toEqual([[SNAP_ID, "dump"]]);
    expect(cli.stdout + cli.stderr).not.toContain(role.password);
  });

  describe("after a destructive migration and more writes", () => {
    beforeAll(async () => {
      await writeMigrations(dir, { [M2]: "ALTER TABLE accounts DROP COLUMN note;\nDELETE FROM events WHERE id % 2 = 0;\n" });
      await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
      await withDb(url, async (c) => {
        await c.query("INSERT INTO accounts (name, created_at) SELECT 'late ' || g, now() FROM generate_series(1, 300) g");
        await c.query("UPDATE accounts SET meta = '{\"changed\": true}' WHERE id <= 10");
        await c.query("INSERT INTO empty_one VALUES (gen_random_uuid(), 1)");
      });
      expect(await tableDigests(url)).not.toEqual(atSnapshot);
    });

    it("the role itself cannot restore in place (it may not create <db>_restoring): one sentence, nothing changed", async () => {
      const before = { fp: await fingerprint(url), digests: await tableDigests(url), id: (await databaseIdentity(url)).identity };
      const plan = await planRestore(url, SNAP_ID, { snapshotsDir });
      expect(plan.discardedMigrations).toEqual([M2]);
      await expect(restoreSnapshot(url, plan, { log: memoryLogger() })).rejects.toThrow(
        new RegExp(`^Could not create database '${db}_restoring' to restore into: permission denied to create database .*nothing was changed\\.$`),
      );
      // Through the CLI: the plan, then the refusal as one sentence, exit 1.
      const cli = await pgstack(["snapshot", "restore", SNAP_ID, "--yes", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
      expect(cli.code).toBe(1);
      const refusal = cli.stderr.trim().split("\n").pop()!;
      expectOneSentence(refusal, new RegExp(`Could not create database '${db}_restoring' to restore into: .*may create databases`), [role.password]);
      expect(cli.stderr).not.toContain(role.password);
      expect({ fp: await fingerprint(url), digests: await tableDigests(url), id: (await databaseIdentity(url)).identity }).toEqual(before);
      expect(await databasesLike(db)).toEqual([db]);
      expect(await acceptsConnections(db)).toBe(true);
      expect(await filesIn(snapshotsDir)).toEqual([`${SNAP_ID}.dump`, `${SNAP_ID}.json`]);
    });

    it("a role that may create databases restores it in place: every table identical, the owner and the dump kept", async () => {
      const admin = urlFor(db);
      const idBefore = await databaseIdentity(admin);
      const log = memoryLogger();
      const plan = await planRestore(admin, SNAP_ID, { snapshotsDir });
      expect(plan.tables).toEqual(
        expect.arrayContaining([
          { table: "public.accounts", now: 4300, atSnapshot: 4000, changed: true },
          { table: "public.events", now: 1500, atSnapshot: 3000, changed: true },
          { table: "public.empty_one", now: 1, atSnapshot: 0, changed: true },
        ]),
      );
      const result = await restoreSnapshot(admin, plan, { log });
      // A dump cannot be read in place: the exact count comes from its copy, before the swap.
      expect(result.discarded.find((d) => d.table === "public.empty_one")).toEqual({ table: "public.empty_one", inserted: 1, updated: 0, deleted: 0 });
      expect(result.discarded.find((d) => d.table === "public.events")).toMatchObject({ inserted: 0, deleted: 1500 });
      expect(await tableDigests(url)).toEqual(atSnapshot);
      const note = await withDb(url, (c) => c.query("SELECT 1 FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'note'"));
      expect(note.rowCount).toBe(1);
      expect((await databaseIdentity(url)).databaseOid).not.toBe(idBefore.databaseOid);
      // The role still owns its database and its tables, and can write to them.
      const owners = await adminQuery(
        `SELECT pg_get_userbyid(d.datdba) AS db FROM pg_database d WHERE d.datname = $1`,
        [db],
      );
      expect(owners.rows[0].db).toBe(role.name);
      await withDb(url, (c) => c.query("INSERT INTO empty_one VALUES (gen_random_uuid(), 2)"));
      await withDb(url, (c) => c.query("DELETE FROM empty_one"));
      expect(await restoredFrom(url, { snapshotsDir })).toBe(SNAP_ID);
      expect(await databasesLike(db)).toEqual([db]);
      expect(await filesIn(snapshotsDir)).toEqual([`${SNAP_ID}.dump`, `${SNAP_ID}.json`]);
      expect(log.lines.join("\n")).not.toMatch(/postgresql:\/\//);
    });
  });

  it("delete removes only the dump and its sidecar, never the database restored from it", async () => {
    const other = await createSnapshot({ url, stack: "dev", log: memoryLogger(), snapshotsDir });
    const before = await tableDigests(url);
    await deleteSnapshot(url, SNAP_ID, memoryLogger(), { snapshotsDir });
    expect(await filesIn(snapshotsDir)).toEqual([`${other.snapshotId}.dump`, `${other.snapshotId}.json`]);
    expect(await tableDigests(url)).toEqual(before);
    expect((await listAllSnapshots(url, {}, { snapshotsDir })).map((s) => s.snapshotId)).toEqual([other.snapshotId]);
    await expect(deleteSnapshot(url, SNAP_ID, memoryLogger(), { snapshotsDir })).rejects.toThrow(
      `No snapshot '${SNAP_ID}' of database '${db}' exists (see \`pgstack snapshot list\`): nothing was deleted.`,
    );
  });
});

// An older pg_dump on PATH is no longer refused: pgstack's cached copy of the server's major is used instead
// (test/integration/pgtools.test.ts). PGSTACK_PG_DUMP is the user's explicit choice, so an old one is refused.
describe("a PGSTACK_PG_DUMP older than the server", () => {
  it("is refused with one sentence naming both versions and what to install; nothing is dumped", async () => {
    const role = await createTestRole("olddump");
    const { name: db, url } = await createDatabaseOwnedBy("olddump", role);
    try {
      await withDb(url, (c) => c.query("CREATE TABLE t (id int); INSERT INTO t VALUES (1)"));
      const fakeBin = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-fakebin-"));
      await fs.writeFile(path.join(fakeBin, "pg_dump"), `#!/bin/sh\necho "pg_dump (PostgreSQL) 13.0"\n`, { mode: 0o755 });
      const snapshotsDir = path.join(await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-dumps-")), "snapshots");
      const before = await fingerprint(url);
      const server = Math.floor(Number((await adminQuery("SELECT current_setting('server_version_num') AS v")).rows[0].v) / 10000);

      const result = await pgstack(["snapshot", "create", "--stack", "dev", "--engine", "dump", "--snapshots-dir", snapshotsDir], {
        DATABASE_URL: url,
        PGSTACK_PG_DUMP: path.join(fakeBin, "pg_dump"),
      });
      expect(result.code).toBe(1);
      expectOneSentence(
        result.stderr,
        new RegExp(`^pgstack: The pg_dump at ${fakeBin}/pg_dump is version 13 but the server is PostgreSQL ${server}, .*: install pg_dump ${server} or newer .*; nothing was dumped\\.$`),
        [role.password, new URL(testCluster().adminUrl).password],
      );
      expect(result.stdout).toBe("");
      // Not even the snapshots folder was made.
      await expect(fs.stat(snapshotsDir)).rejects.toThrow(/ENOENT/);
      expect(await fingerprint(url)).toBe(before);
      expect(await databasesLike(db)).toEqual([db]);

      // The same when the engine is left to choose.
      const viaEnv = await pgstack(["snapshot", "create", "--stack", "dev", "--snapshots-dir", snapshotsDir], {
        DATABASE_URL: url,
        PGSTACK_PG_DUMP: path.join(fakeBin, "pg_dump"),
      });
      expect(viaEnv.code).toBe(1);
      expectOneSentence(viaEnv.stderr, /is version 13 but the server is PostgreSQL \d+, .*: install pg_dump \d+ or newer/, [role.password]);
      await expect(fs.stat(snapshotsDir)).rejects.toThrow(/ENOENT/);
      expect(await fingerprint(url)).toBe(before);
    } finally {
      await adminQuery(`DROP DATABASE "${db}" WITH (FORCE)`);
      await role.drop();
    }
  });
});

describe("a template copy and a dump of one database taken in the same second", () => {
  it("get different ids, so restore and delete act on the one named; an explicit name taken by the other engine is refused", async () => {
    const url = await createTestDatabase("sameid");
    const db = new URL(url).pathname.slice(1);
    const snapshotsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-dumps-"));
    await withDb(url, (c) => c.query("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10)"));
    const dump = await createSnapshot({ url, stack: "same", engine: "dump", log: memoryLogger(), now: () => AT, snapshotsDir });
    await withDb(url, (c) => c.query("INSERT INTO t SELECT generate_series(11, 30)"));
    const copy = await createSnapshot({ url, stack: "same", engine: "template", log: memoryLogger(), now: () => AT, snapshotsDir });
    const third = await createSnapshot({ url, stack: "same", engine: "dump", log: memoryLogger(), now: () => AT, snapshotsDir });
    try {
      expect(dump.snapshotId).toBe("snap_same_empty_20251122003015");
      expect(new Set([dump.snapshotId, copy.snapshotId, third.snapshotId]).size).toBe(3);
      expect((await listAllSnapshots(url, {}, { snapshotsDir })).map((s) => [s.snapshotId, s.engine])).toEqual([
        [dump.snapshotId, "dump"],
        [copy.snapshotId, "template"],
        [third.snapshotId, "dump"],
      ]);
      await expect(createSnapshot({ url, stack: "same", engine: "template", name: dump.snapshotId, log: memoryLogger(), snapshotsDir })).rejects.toThrow(
        `Snapshot name '${dump.snapshotId}' is taken by a pg_dump snapshot: choose another name (nothing was copied).`,
      );
      await expect(createSnapshot({ url, stack: "same", engine: "dump", name: copy.snapshotId, log: memoryLogger(), snapshotsDir })).rejects.toThrow(
        `Snapshot name '${copy.snapshotId}' is taken by an existing database: choose another name (nothing was dumped).`,
      );
      // Restoring the dump gives its 10 rows, not the copy's 30.
      await restoreSnapshot(url, await planRestore(url, dump.snapshotId, { snapshotsDir }), { log: memoryLogger() });
      expect((await withDb(url, (c) => c.query("SELECT count(*)::int AS n FROM t"))).rows[0].n).toBe(10);
      await deleteSnapshot(url, dump.snapshotId, memoryLogger(), { snapshotsDir });
      expect((await listAllSnapshots(url, {}, { snapshotsDir })).map((s) => s.snapshotId)).toEqual([copy.snapshotId, third.snapshotId]);
      expect(await databasesLike(copy.snapshotId)).toEqual([copy.snapshotId]);
    } finally {
      await adminQuery(`DROP DATABASE IF EXISTS "${copy.snapshotId}"`);
      await adminQuery(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    }
  });
});
