import { mkdtempSync, rmSync, statSync, utimesSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { freePort, initCluster, startCluster, stopCluster } from "../../infra/core/cluster/embedded";
import { cloneSupport } from "../../infra/core/db/clone";
import { memoryLogger } from "../../infra/core/logger";
import { createSnapshot, listAllSnapshots } from "../../infra/core/snapshot/store";
import { planRestore, restoreSnapshot } from "../../infra/core/snapshot/restore";
import { verifySnapshot } from "../../infra/core/verify/snapshot";
import { pgstack } from "../support/cli";
import { startMajorCluster, withDb } from "../support/cluster";
import { acceptsConnectionsAt, databasesAt, eventually, tableDigests } from "../support/data";
import { reflinkFolder } from "../support/reflink";
import { expectNoUnreportedLoss, startWriter } from "../support/writer";

/**
 * Copy-on-write snapshots and restores on a real reflink file system: a
 * throwaway PostgreSQL 18 cluster whose data directory is on the loop-mounted
 * XFS image (test/support/reflink.ts; root, as on CI).
 */
jest.setTimeout(300_000);

let folder: { dir: string; remove: () => void };
let dataDir: string;
let admin: string;
const snapshotsDir = mkdtempSync(path.join(os.tmpdir(), "pgstack-clone-snaps-"));

function urlOf(db: string): string {
  const u = new URL(admin);
  u.pathname = `/${db}`;
  return u.toString();
}

async function createDb(name: string, setup: string): Promise<string> {
  await withDb(admin, (c) => c.query(`CREATE DATABASE "${name}"`));
  await withDb(urlOf(name), (c) => c.query(setup));
  return urlOf(name);
}

/** A digest of a big table without building one string of it (string_agg of 1 GiB would not fit). */
async function bigDigest(url: string): Promise<string> {
  return withDb(url, async (c) => (await c.query<{ d: string }>("SELECT count(*) || ':' || md5(string_agg(md5(b::text), '' ORDER BY id)) AS d FROM big b")).rows[0].d);
}

async function smallDigest(url: string): Promise<string> {
  return withDb(url, async (c) => (await c.query<{ d: string }>("SELECT count(*) || ':' || md5(string_agg(s::text, '|' ORDER BY id)) AS d FROM small s")).rows[0].d);
}

/** Rows of `table` in a snapshot, read from a throwaway clone of it. */
async function rowsInSnapshot(snapshotId: string, table: string): Promise<number> {
  const probe = `probe_${Math.random().toString(36).slice(2, 8)}`;
  await withDb(admin, async (c) => {
    await c.query("SET file_copy_method = clone");
    await c.query(`CREATE DATABASE ${probe} TEMPLATE "${snapshotId}" STRATEGY FILE_COPY`);
  });
  try {
    return await withDb(urlOf(probe), async (c) => (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${table}"`)).rows[0].n);
  } finally {
    await withDb(admin, (c) => c.query(`DROP DATABASE ${probe} WITH (FORCE)`));
  }
}

beforeAll(async () => {
  folder = reflinkFolder("clone-test");
  dataDir = path.join(folder.dir, "data");
  const port = await freePort();
  const password = `t${Math.random().toString(36).slice(2)}`;
  await initCluster({ dataDir, port, password });
  await startCluster({ dataDir, port });
  admin = `postgresql://postgres:${password}@127.0.0.1:${port}/postgres`;
  // Autovacuum visits every database with statistics every second, closed or not: a snapshot it would touch shows.
  await withDb(admin, async (c) => {
    await c.query("ALTER SYSTEM SET autovacuum_naptime = 1");
    await c.query("SELECT pg_reload_conf()");
  });
});

afterAll(async () => {
  if (dataDir) await stopCluster(dataDir).catch(() => undefined);
  folder?.remove();
  rmSync(snapshotsDir, { recursive: true, force: true });
});

describe("copy-on-write snapshots on an XFS reflink file system (PostgreSQL 18)", () => {
  it("detects cloning there for real (a reflink in the data directory)", async () => {
    const found = await withDb(admin, (c) => cloneSupport(c));
    expect(found).toEqual({ clone: true, reason: "PostgreSQL 18 with file_copy_method = clone on a file system (xfs) that reflinks: the copy shares the files' blocks" });
  });

  it("PostgreSQL 15 on the same reflink file system: a template copy, and the major is the reason said", async () => {
    const older = reflinkFolder("clone-pg15");
    const cluster = await startMajorCluster("15", older.dir);
    try {
      const u = new URL(cluster.adminUrl);
      await withDb(cluster.adminUrl, (c) => c.query("CREATE DATABASE old15"));
      u.pathname = "/old15";
      await withDb(u.toString(), (c) => c.query("CREATE TABLE t (id int); INSERT INTO t VALUES (1)"));
      const snap = await createSnapshot({ url: u.toString(), stack: "old", log: memoryLogger(), snapshotsDir });
      expect(snap).toMatchObject({ engine: "template", method: "template", methodReason: "no session is connected; the server is PostgreSQL 15; cloning a database needs 18 or newer" });
    } finally {
      await cluster.stop();
      older.remove();
    }
  });

  it("a 1 GiB database snapshots and restores by clone: content digests equal, method and pause in the snapshot's record", async () => {
    // Autovacuum off for the big table (this cluster runs it every second): its first pass over 1 GiB of fresh rows
    // rewrites every page (visibility), which the count must then read, exactly but not in a few hundred blocks.
    const url = await createDb("big", "CREATE TABLE big (id int, pad text) WITH (autovacuum_enabled = false); CREATE TABLE small (id int PRIMARY KEY, v text); INSERT INTO small SELECT g, md5(g::text) FROM generate_series(1, 100) g");
    // ~1 GiB: 1 KiB rows, stored inline (below TOAST's 2 KiB threshold).
    await withDb(url, (c) => c.query("INSERT INTO big SELECT g, repeat(md5(g::text), 31) FROM generate_series(1, 1050000) g"));
    // Settled before the snapshot (hint bits, visibility), as a database that has lived a while is.
    await withDb(url, (c) => c.query("VACUUM (FREEZE) big"));
    const size = await withDb(url, async (c) => Number((await c.query("SELECT pg_database_size('big') AS s")).rows[0].s));
    expect(size).toBeGreaterThan(1024 ** 3);
    const before = await bigDigest(url);
    const smallBefore = await smallDigest(url);
    const t0 = Date.now();

    const log = memoryLogger();
    const snap = await createSnapshot({ url, stack: "big", log, snapshotsDir });
    const t1 = Date.now();
    expect(snap).toMatchObject({ engine: "template", method: "clone", pauseMs: expect.any(Number) });
    expect(snap.methodReason).toMatch(/^no session is connected; PostgreSQL 18 with file_copy_method = clone on a file system \(xfs\) that reflinks/);
    // Read back from the record (the snapshot database's comment).
    const listed = (await listAllSnapshots(url, {}, { snapshotsDir })).find((s) => s.snapshotId === snap.snapshotId);
    expect(listed).toMatchObject({ method: "clone", methodReason: snap.methodReason, pauseMs: snap.pauseMs });

    // Sealed by its files: its rows were not read (that is what grew with the database).
    expect(snap.states).toBeUndefined();
    expect(snap.files).toMatchObject({ digest: expect.stringMatching(/^[0-9a-f]{64}$/), files: expect.any(Number) });
    expect(snap.files!.bytes).toBeGreaterThan(1024 ** 3);
    expect(listed?.files).toEqual(snap.files);

    // Changed after the snapshot: 100 rows of the 1 GiB table (no primary key: each counts as one row gone, one new), and the small one.
    await withDb(url, (c) => c.query("UPDATE big SET pad = 'changed' WHERE id % 10500 = 0; DELETE FROM small WHERE id % 7 = 0; UPDATE small SET v = 'x' WHERE id < 10"));
    expect(await smallDigest(url)).not.toEqual(smallBefore);
    const plan = await planRestore(url, snap.snapshotId, { snapshotsDir });
    expect(plan.byFiles).toBe(true);
    expect(plan.tables).toEqual([
      { table: "public.big", changed: true, inserted: 100, updated: 0, deleted: 100 },
      { table: "public.small", changed: true, inserted: 0, updated: expect.any(Number), deleted: 14 },
    ]);
    const restoreLog = memoryLogger();
    const restored = await restoreSnapshot(url, plan, { log: restoreLog });
    expect(restored).toMatchObject({ method: "clone", pauseMs: expect.any(Number), countMs: expect.any(Number) });
    expect(restoreLog.lines.some((l) => new RegExp(`^info: copied snapshot ${snap.snapshotId} into big_restoring by clone in \\d+ ms`).test(l))).toBe(true);
    expect(restoreLog.lines.some((l) => new RegExp(`^info: big_restoring verified: it is a clone of snapshot ${snap.snapshotId}, whose \\d+ files \\(1\\.\\d\\d GiB\\) are unchanged since it was taken and the copy's schema matches`).test(l))).toBe(true);
    const t2 = Date.now();
    expect(await bigDigest(url)).toBe(before);
    expect(await smallDigest(url)).toEqual(smallBefore);
    expect(restored.discarded).toEqual([
      { table: "public.big", inserted: 100, updated: 0, deleted: 100 },
      { table: "public.small", inserted: 0, updated: expect.any(Number), deleted: 14 },
    ]);
    // Counted by the blocks the two databases do not share: a few hundred of the 1 GiB table's ~131,000.
    expect(restored.countedByBlocks?.tables).toEqual(expect.arrayContaining(["public.big", "public.small"]));
    expect(restored.countedByBlocks!.blocksRead).toBeLessThan(2000);
    process.stderr.write(`1 GiB clone test: snapshot ${t1 - t0} ms (pause ${snap.pauseMs} ms), restore ${t2 - t1} ms (swap paused ${restored.pauseMs} ms, counting ${restored.countMs} ms of it)\n`);
    await withDb(admin, async (c) => {
      await c.query("DROP DATABASE big WITH (FORCE)");
      await c.query(`DROP DATABASE "${snap.snapshotId}"`);
    });
  }, 1_200_000);

  it("`snapshot create --json` prints method, reason and pause; the human line says them truthfully", async () => {
    const url = await createDb("cli", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)");
    const json = await pgstack(["snapshot", "create", "--stack", "cli", "--json", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
    expect(json.stderr).not.toMatch(/error/i);
    const out = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ engine: "template", method: "clone", reason: expect.stringMatching(/reflinks/), pauseMs: expect.any(Number) });
    const human = await pgstack(["snapshot", "create", "--stack", "cli", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
    const taken = /^Snapshot (\S+) taken \(template, clone, paused (\d+) ms, last migration: none\)\.$/m.exec(human.stdout);
    expect(taken).not.toBeNull();
    const listed = await pgstack(["snapshot", "list", "--json", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
    const record = (JSON.parse(listed.stdout) as { snapshots: Record<string, unknown>[] }).snapshots.find((s) => s.snapshotId === taken![1]);
    expect(record).toMatchObject({ method: "clone", pauseMs: Number(taken![2]) });
  });

  it("with an application writing: a clone with a bounded pause, and every acknowledged write is in the database afterwards", async () => {
    const url = await createDb("live", "CREATE TABLE w (tag text PRIMARY KEY)");
    const writer = startWriter(url, "w", 5);
    await eventually(async () => (await withDb(url, (c) => c.query("SELECT count(*)::int AS n FROM w"))).rows[0].n > 20);
    const log = memoryLogger();
    const started = Date.now();
    const snap = await createSnapshot({ url, stack: "live", log, snapshotsDir, maxPauseMs: 1000 });
    const took = Date.now() - started;
    await new Promise((r) => setTimeout(r, 300));
    const written = await writer.stop();
    expect(snap).toMatchObject({ engine: "template", method: "clone" });
    expect(snap.methodReason).toMatch(/^1 session\(s\) connected: a clone with a bounded pause \(PostgreSQL 18/);
    // The pause is bounded by maxPauseMs plus the copy, and lies within the snapshot's own time.
    expect(snap.pauseMs).toBeLessThan(1000 + 2000);
    expect(snap.pauseMs).toBeLessThanOrEqual(took);
    // Ended under it and back after the reopen, through the writer's reconnect.
    expect(written.errors).toBeGreaterThan(0);
    const present = new Set((await withDb(url, (c) => c.query<{ tag: string }>("SELECT tag FROM w"))).rows.map((r) => r.tag));
    expect(written.acked.filter((t) => !present.has(t))).toEqual([]);
    // The snapshot holds a prefix of the acknowledged writes: the ones before the close (read from a clone of it: a session in it would change its files).
    const snapRows = await rowsInSnapshot(snap.snapshotId, "w");
    expect(snapRows).toBeGreaterThan(20);
    expect(snapRows).toBeLessThan(written.acked.length);
  });

  it("restore with the application writing: copied by clone, the swap's pause measured and reported, every acknowledged write restored or counted as discarded", async () => {
    const url = await createDb("swap", "CREATE TABLE ticks (id bigserial PRIMARY KEY, tag text NOT NULL UNIQUE)");
    const snap = await createSnapshot({ url, stack: "swap", log: memoryLogger(), snapshotsDir });
    const writer = startWriter(url, "ticks");
    await new Promise((r) => setTimeout(r, 500));
    const restore = await pgstack(["snapshot", "restore", snap.snapshotId, "--yes", "--json", "--snapshots-dir", snapshotsDir, "--verbose"], { DATABASE_URL: url });
    await new Promise((r) => setTimeout(r, 300));
    const written = await writer.stop();
    expect(restore.code).toBe(0);
    const report = JSON.parse(restore.stdout) as { method: string; pauseMs: number; countMs: number; discarded: { table: string; inserted: number }[] };
    expect(report.method).toBe("clone");
    expect(report.pauseMs).toEqual(expect.any(Number));
    expect(report.countMs).toBeLessThanOrEqual(report.pauseMs);
    expect(report.pauseMs).toBeLessThan(1000 + 3000);
    expect(restore.stderr).toContain(`swap was closed to the application for ${report.pauseMs} ms by the swap (counting what it discards took ${report.countMs} ms of it)`);
    await expectNoUnreportedLoss(url, "ticks", written, report.discarded.find((d) => d.table === "public.ticks")?.inserted ?? 0);
  });

  it("a session still in a transaction at the bound: the database is reopened and the snapshot is a pg_dump, saying so", async () => {
    const url = await createDb("held", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    const holder = new Client({ connectionString: url });
    holder.on("error", () => undefined);
    await holder.connect();
    try {
      await holder.query("BEGIN; INSERT INTO t VALUES (2)");
      const log = memoryLogger();
      const snap = await createSnapshot({ url, stack: "held", log, snapshotsDir, maxPauseMs: 300 });
      expect(snap).toMatchObject({ engine: "dump", method: "dump" });
      expect(snap.methodReason).toMatch(/^1 session\(s\) were still in a transaction after 300 ms, so the database was reopened \(closed for \d+ ms\) and pg_dump took the snapshot instead$/);
      expect(snap.pauseMs).toBeGreaterThanOrEqual(300);
      expect(log.lines).toContain(`warn: ${snap.methodReason}`);
      // The transaction was never touched: it commits.
      await holder.query("COMMIT");
      expect((await withDb(url, (c) => c.query("SELECT count(*)::int AS n FROM t"))).rows[0].n).toBe(2);
      expect(await acceptsConnectionsAt(url, "held")).toBe(true);
    } finally {
      await holder.end().catch(() => undefined);
    }
  });

  it.each(["snapshot:drained", "snapshot:copying"])("killed at %s inside the pause: the guardian reopens the database and the data is exactly as before", async (point) => {
    const db = `kill_${point.split(":")[1]}`;
    const url = await createDb(db, "CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
    const app = new Client({ connectionString: url });
    app.on("error", () => undefined);
    await app.connect();
    try {
      const before = await tableDigests(url);
      const run = await pgstack(["snapshot", "create", "--stack", "kill", "--json", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url, PGSTACK_FAILPOINT: point });
      expect(run.signal).toBe("SIGKILL");
      expect(await eventually(() => acceptsConnectionsAt(url, db), 10_000)).toBe(true);
      expect(await tableDigests(url)).toEqual(before);
      expect(await databasesAt(url, "snap_kill_")).toEqual([]);
    } finally {
      await app.end().catch(() => undefined);
    }
  });
});

describe("a clone snapshot is sealed by its files, and a change to it since is refused", () => {
  const digestOf = (url: string) => tableDigests(url);

  async function fresh(name: string) {
    const url = await createDb(name, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g");
    const snap = await createSnapshot({ url, stack: name, log: memoryLogger(), snapshotsDir });
    expect(snap).toMatchObject({ method: "clone", files: expect.any(Object) });
    await withDb(url, (c) => c.query("UPDATE t SET v = 'after' WHERE id <= 10"));
    return { url, snap, live: await digestOf(url) };
  }

  async function expectRefused(url: string, name: string, snapshotId: string, live: Record<string, string>, phrase: RegExp) {
    const verified = await verifySnapshot(url, snapshotId, { snapshotsDir, log: memoryLogger() });
    expect(verified).toMatchObject({ status: "fail", details: { reason: "changed-since-taken" } });
    expect(verified.sentence).toMatch(phrase);
    const plan = await planRestore(url, snapshotId, { snapshotsDir });
    await expect(restoreSnapshot(url, plan, { log: memoryLogger() })).rejects.toMatchObject({ code: "E_SNAPSHOT", details: { reason: "changed-since-taken" } });
    // Nothing changed: the live data, and no copy left behind.
    expect(await digestOf(url)).toEqual(live);
    expect(await databasesAt(url, `${name}_`)).toEqual([]);
  }

  it("untouched: verified by its files, restored twice (cloning it and previewing a restore change none of its files)", async () => {
    const { url, snap } = await fresh("untouched");
    // Several autovacuum rounds (naptime 1 s): a snapshot with statistics of its own would be visited, and its files changed.
    await new Promise((r) => setTimeout(r, 5000));
    const verified = await verifySnapshot(url, snap.snapshotId, { snapshotsDir, log: memoryLogger() });
    expect(verified).toMatchObject({ status: "pass" });
    expect(verified.sentence).toMatch(/^Snapshot '\S+' \(clone\) verified: its \d+ files \(0\.\d\d GiB\) are unchanged since it was taken \(sealed fingerprint; a clone's rows are not read\)\.$/);
    for (let round = 1; round <= 2; round++) {
      await withDb(url, (c) => c.query("UPDATE t SET v = $1 WHERE id <= 10", [`round ${round}`]));
      const plan = await planRestore(url, snap.snapshotId, { snapshotsDir });
      expect(plan.tables).toEqual([{ table: "public.t", changed: true, inserted: 0, updated: 10, deleted: 0 }]);
      const restored = await restoreSnapshot(url, plan, { log: memoryLogger() });
      expect(restored.discarded).toEqual([{ table: "public.t", inserted: 0, updated: 10, deleted: 0 }]);
      expect((await withDb(url, (c) => c.query("SELECT count(*)::int AS n FROM t WHERE v LIKE 'round%' OR v = 'after'"))).rows[0].n).toBe(0);
    }
    expect(await verifySnapshot(url, snap.snapshotId, { snapshotsDir, log: memoryLogger() })).toMatchObject({ status: "pass" });
  });

  it("opened to connections and changed since: verify fails and the restore is refused, nothing changed", async () => {
    const { url, snap, live } = await fresh("opened");
    await withDb(admin, (c) => c.query(`ALTER DATABASE "${snap.snapshotId}" ALLOW_CONNECTIONS true`));
    await withDb(urlOf(snap.snapshotId), (c) => c.query("UPDATE t SET v = 'forged' WHERE id = 1"));
    await withDb(admin, (c) => c.query(`ALTER DATABASE "${snap.snapshotId}" ALLOW_CONNECTIONS false`));
    await expectRefused(url, "opened", snap.snapshotId, live, /its pg_database row was rewritten since it was taken \(ALTER DATABASE\), and opening it to connections is such a rewrite/);
  });

  it("a file of it written behind PostgreSQL's back (its ctime moves, even with the mtime put back): refused", async () => {
    const { url, snap, live } = await fresh("touched");
    const { oid, rel } = await withDb(admin, async (c) => {
      const { rows } = await c.query<{ oid: number }>("SELECT oid::int AS oid FROM pg_database WHERE datname = $1", [snap.snapshotId]);
      return { oid: rows[0].oid, rel: (await withDb(url, (u) => u.query<{ f: string }>("SELECT pg_relation_filenode('t')::text AS f"))).rows[0].f };
    });
    // The live table's relfilenode is the snapshot's too (FILE_COPY keeps the directory's contents).
    const file = path.join(dataDir, "base", String(oid), rel);
    const stat = statSync(file);
    await new Promise((r) => setTimeout(r, 20));
    utimesSync(file, stat.atime, stat.mtime);
    await expectRefused(url, "touched", snap.snapshotId, live, /a file of it was written since/);
  });
});
