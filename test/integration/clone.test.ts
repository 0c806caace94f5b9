import { mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { freePort, initCluster, startCluster, stopCluster } from "../../infra/core/cluster/embedded";
import { cloneSupport } from "../../infra/core/db/clone";
import { memoryLogger } from "../../infra/core/logger";
import { createSnapshot, listAllSnapshots } from "../../infra/core/snapshot/store";
import { planRestore, restoreSnapshot } from "../../infra/core/snapshot/restore";
import { pgstack } from "../support/cli";
import { withDb } from "../support/cluster";
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

beforeAll(async () => {
  folder = reflinkFolder("clone-test");
  dataDir = path.join(folder.dir, "data");
  const port = await freePort();
  const password = `t${Math.random().toString(36).slice(2)}`;
  await initCluster({ dataDir, port, password });
  await startCluster({ dataDir, port });
  admin = `postgresql://postgres:${password}@127.0.0.1:${port}/postgres`;
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

  it("a 1 GiB database snapshots and restores by clone: content digests equal, method and pause in the snapshot's record", async () => {
    const url = await createDb("big", "CREATE TABLE big (id int, pad text)");
    // ~1 GiB: 1 KiB rows, stored inline (below TOAST's 2 KiB threshold).
    await withDb(url, (c) => c.query("INSERT INTO big SELECT g, repeat(md5(g::text), 31) FROM generate_series(1, 1050000) g"));
    const size = await withDb(url, async (c) => Number((await c.query("SELECT pg_database_size('big') AS s")).rows[0].s));
    expect(size).toBeGreaterThan(1024 ** 3);
    const before = await bigDigest(url);
    const t0 = Date.now();

    const log = memoryLogger();
    const snap = await createSnapshot({ url, stack: "big", log, snapshotsDir });
    const t1 = Date.now();
    expect(snap).toMatchObject({ engine: "template", method: "clone", pauseMs: expect.any(Number) });
    expect(snap.methodReason).toMatch(/^no session is connected; PostgreSQL 18 with file_copy_method = clone on a file system \(xfs\) that reflinks/);
    // Read back from the record (the snapshot database's comment).
    const listed = (await listAllSnapshots(url, {}, { snapshotsDir })).find((s) => s.snapshotId === snap.snapshotId);
    expect(listed).toMatchObject({ method: "clone", methodReason: snap.methodReason, pauseMs: snap.pauseMs });

    await withDb(url, (c) => c.query("DELETE FROM big WHERE id % 7 = 0; UPDATE big SET pad = 'x' WHERE id < 1000"));
    expect(await bigDigest(url)).not.toBe(before);
    const restoreLog = memoryLogger();
    await restoreSnapshot(url, await planRestore(url, snap.snapshotId, { snapshotsDir }), { log: restoreLog });
    expect(restoreLog.lines.some((l) => new RegExp(`^info: copied snapshot ${snap.snapshotId} into big_restoring by clone in \\d+ ms`).test(l))).toBe(true);
    const t2 = Date.now();
    expect(await bigDigest(url)).toBe(before);
    process.stderr.write(`1 GiB clone test: snapshot ${t1 - t0} ms (pause ${snap.pauseMs} ms), restore ${t2 - t1} ms\n`);
    await withDb(admin, (c) => c.query(`DROP DATABASE big WITH (FORCE); DROP DATABASE "${snap.snapshotId}"`));
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
    // The snapshot holds a prefix of the acknowledged writes: the ones before the close.
    const snapRows = snap.states?.["public.w"]?.rows ?? 0;
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
