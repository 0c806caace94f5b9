/**
 * Issue 22, items 4 and 5, with the real CLI against real PostgreSQL:
 *
 *  - a pgstack whose whole process tree is SIGKILLed while the database is
 *    closed (a template snapshot's copy, a restore's swap) leaves it closed no
 *    longer than 5 s: its guardian reopens it, with no pgstack command run by
 *    anyone, and the data is exactly as before;
 *  - the guardian holds no secret in its argv or environment, lives outside
 *    the owner's process group and session, leaves when the owner finishes,
 *    and is harmless when it dies first;
 *  - snapshots refuse connections (a non-superuser role cannot get in to
 *    change one), carry the digests recorded when they were taken, and a
 *    restore of a snapshot (or dump file) changed since refuses, naming it.
 */
import { spawn } from "node:child_process";
import { promises as fs, readFileSync, readdirSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { processAlive } from "../../infra/core/process";
import { resolveSettings } from "../../infra/core/settings";
import { startGuardian } from "../../infra/core/snapshot/guardian";
import { beginOperation, endOperation } from "../../infra/core/snapshot/fence";
import { listSnapshots } from "../../infra/core/snapshot/template";
import { pgstack, type CliResult } from "../support/cli";
import { adminQuery, createTestDatabase, testCluster, withDb } from "../support/cluster";
import { acceptsConnections, databasesLike, eventually, tableDigests } from "../support/data";
import { migrationsDir, REPO_ROOT } from "../support/fixtures";
import { createTestRole, type TestRole } from "../support/roles";
import { withSnapshotOpened } from "../support/snapshots";

jest.setTimeout(300_000);

const BOUND_MS = 5_000;
const MIGRATION = `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL);
INSERT INTO items SELECT g, 'item ' || g, g % 17 FROM generate_series(1, 5000) g;
`;
const password = () => new URL(testCluster().adminUrl).password;

/** pid, ppid, process group and session of every process, from /proc. */
function processTable(): { pid: number; ppid: number; pgrp: number; session: number }[] {
  const out = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.push({ pid: Number(entry), ppid: Number(f[1]), pgrp: Number(f[2]), session: Number(f[3]) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** `pid` and every process below it (the ppid walk a supervisor does). */
function tree(pid: number): number[] {
  const table = processTable();
  const found = [pid];
  for (let i = 0; i < found.length; i++) for (const p of table) if (p.ppid === found[i]) found.push(p.pid);
  return found;
}

/** SIGKILLs the process group of `pid` and everything below it. */
function killTree(pid: number): void {
  const all = tree(pid);
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // the group is empty
  }
  for (const p of all) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** The CLI in its own process group (as a CI runner starts a job), with when it exited and, later, everything it (and its guardian) wrote. */
function spawnCli(args: string[], env: Record<string, string>): { pid: number; exited: Promise<{ signal: NodeJS.Signals | null; at: number }>; closed: Promise<CliResult> } {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, "infra", "bin", "pgstack.js"), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<{ signal: NodeJS.Signals | null; at: number }>((resolve) => child.on("exit", (_code, signal) => resolve({ signal, at: Date.now() })));
  const closed = new Promise<CliResult>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { pid: child.pid!, exited, closed };
}

/** Milliseconds from `since` until `role` (the application) can connect to `db` and read; fails past 3x the bound. */
async function appConnectsAfter(role: TestRole, db: string, since: number): Promise<number> {
  for (;;) {
    const c = new Client({ connectionString: role.urlFor(db) });
    c.on("error", () => undefined);
    try {
      await c.connect();
      await c.query("SELECT count(*) FROM items");
      return Date.now() - since;
    } catch {
      if (Date.now() - since > 3 * BOUND_MS) throw new Error(`${db} still refuses the application ${Date.now() - since} ms after the kill`);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      await c.end().catch(() => undefined);
    }
  }
}

async function commentOf(db: string): Promise<string | null> {
  const { rows } = await adminQuery("SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1", [db]);
  return (rows[0]?.c as string | null) ?? null;
}

describe("a pgstack whose process tree is killed while the database is closed", () => {
  let url: string;
  let db: string;
  let app: TestRole;

  beforeAll(async () => {
    url = await createTestDatabase("guard");
    db = new URL(url).pathname.slice(1);
    await applyMigrations(resolveSettings({ url, dir: await migrationsDir({ "20250101000000_items": MIGRATION }) }), { kind: "all" }, memoryLogger());
    await adminQuery(`COMMENT ON DATABASE "${db}" IS 'the shop'`);
    app = await createTestRole("guard_app");
    await withDb(url, (c) => c.query(`GRANT SELECT, INSERT, UPDATE ON items TO "${app.name}"`));
  });

  afterAll(async () => {
    await app.drop();
    for (const s of await listSnapshots(url, { source: db })) await adminQuery(`DROP DATABASE IF EXISTS "${s.snapshotId}" WITH (FORCE)`);
  });

  /** Kills the CLI's tree at `point`, then, with no pgstack run, waits for the application to get in; returns how long that took and what was said. */
  async function killAt(args: string[], point: string): Promise<{ ms: number; stderr: string }> {
    const run = spawnCli(args, { DATABASE_URL: url, PGSTACK_FAILPOINT: point });
    const { signal, at } = await run.exited;
    expect(signal).toBe("SIGKILL");
    killTree(run.pid);
    const ms = await appConnectsAfter(app, db, at);
    const closed = await run.closed;
    return { ms, stderr: closed.stderr };
  }

  it.each(["snapshot:closed", "snapshot:sessions-ended", "snapshot:copied"])(
    "killed at %s: the application is back within 5 s, with no pgstack command, and the data is exactly as before",
    async (point) => {
      const before = await tableDigests(url);
      const snapshotsBefore = await listSnapshots(url, { source: db });
      const { ms, stderr } = await killAt(["snapshot", "create", "--stack", "guard", "--json"], point);
      expect(ms).toBeLessThan(BOUND_MS);
      expect(stderr).toMatch(new RegExp(`pgstack guardian: warning: repaired database '${db}' after an interrupted pgstack snapshot .*reopened it to connections`));
      expect(await tableDigests(url)).toEqual(before);
      expect(await commentOf(db)).toBe("the shop");
      // The unfinished copy is gone too.
      expect(await listSnapshots(url, { source: db })).toEqual(snapshotsBefore);
      expect(await databasesLike("snap_guard_")).toEqual(snapshotsBefore.map((s) => s.snapshotId).sort());
    },
  );

  it("killed at a random moment while closed (the whole tree, found by process group and ppid walk): back within 5 s, data as before", async () => {
    const before = await tableDigests(url);
    const watcher = new Client({ connectionString: testCluster().adminUrl });
    await watcher.connect();
    try {
      const run = spawnCli(["snapshot", "create", "--stack", "guard", "--json"], { DATABASE_URL: url, PGSTACK_FILE_COPY_MIN_MB: "0" });
      // Poll until the database is closed, then kill everything below the CLI at once.
      let closedAt = 0;
      while (!closedAt) {
        const { rows } = await watcher.query("SELECT datallowconn FROM pg_database WHERE datname = $1", [db]);
        if (rows[0].datallowconn === false) closedAt = Date.now();
      }
      killTree(run.pid);
      const { signal } = await run.exited;
      expect(signal).toBe("SIGKILL");
      expect(await appConnectsAfter(app, db, Date.now())).toBeLessThan(BOUND_MS);
      await run.closed;
      expect(await tableDigests(url)).toEqual(before);
      expect(await commentOf(db)).toBe("the shop");
    } finally {
      await watcher.end();
    }
  });

  describe("restore", () => {
    let snapshotId: string;
    let atSnapshot: Record<string, string>;

    beforeAll(async () => {
      const taken = await pgstack(["snapshot", "create", "--stack", "guard", "--json"], { DATABASE_URL: url });
      expect(taken.code).toBe(0);
      snapshotId = JSON.parse(taken.stdout).snapshotId;
      atSnapshot = await tableDigests(url);
    });

    it.each([
      ["restore:closed", "old"],
      ["restore:counted", "old"],
      ["restore:swapping", "either"],
    ] as const)("killed at %s: the application is back within 5 s, with no pgstack command, on exactly the old or the restored data", async (point, expected) => {
      await withDb(url, (c) => c.query("UPDATE items SET qty = qty + 1 WHERE id <= 100"));
      const current = await tableDigests(url);
      const { ms, stderr } = await killAt(["snapshot", "restore", snapshotId, "--yes"], point);
      expect(ms).toBeLessThan(BOUND_MS);
      expect(stderr).toMatch(/pgstack guardian: warning: repaired database/);
      const now = await tableDigests(url);
      if (expected === "old") expect(now).toEqual(current);
      else expect([current, atSnapshot]).toContainEqual(now);
      expect(await commentOf(db)).toBe("the shop");
      expect((await databasesLike(`${db}_`)).filter((d) => d.endsWith("_restoring") || d.includes("_before_restore_"))).toEqual([]);
    });
  });
});

describe("the guardian process", () => {
  let url: string;
  let db: string;

  beforeAll(async () => {
    url = await createTestDatabase("guardian");
    db = new URL(url).pathname.slice(1);
  });

  it("holds no secret in argv or environment, lives in its own session outside the owner's tree, and leaves when told the operation ended", async () => {
    const started = await startGuardian(url, memoryLogger());
    expect(started).toBeDefined();
    const { guardian, release } = started!;
    // eslint-disable-next-line no-console
    console.log(`guardian startup: ${guardian.startupMs} ms`);
    expect(guardian.startupMs).toBeLessThan(2000);
    const argv = readFileSync(`/proc/${guardian.pid}/cmdline`, "utf8");
    const environ = readFileSync(`/proc/${guardian.pid}/environ`, "utf8");
    expect(argv).toContain("guardian-process.js");
    expect(argv + environ).not.toContain(password());
    const table = processTable();
    const me = table.find((p) => p.pid === process.pid)!;
    const it = table.find((p) => p.pid === guardian.pid)!;
    expect(it.session).toBe(guardian.pid);
    expect(it.pgrp).not.toBe(me.pgrp);
    expect(tree(process.pid)).not.toContain(guardian.pid);
    // It stays for as long as the owner lives (its pipe must not end when the first stage exits).
    await new Promise((r) => setTimeout(r, 1500));
    expect(processAlive(guardian.pid)).toBe(true);
    release();
    expect(await eventually(async () => !processAlive(guardian.pid), 5000)).toBe(true);
  });

  it("never reopens a database whose operation is alive, and is harmless when it dies first", async () => {
    const admin = new Client({ connectionString: testCluster().adminUrl });
    await admin.connect();
    try {
      const started = (await startGuardian(url, memoryLogger()))!;
      await beginOperation(admin, db, { op: "snapshot", copy: `${db}_nothing` }, { close: true });
      // Killed first: the operation goes on, the database stays closed until it ends, then opens.
      process.kill(started.guardian.pid, "SIGKILL");
      await new Promise((r) => setTimeout(r, 500));
      expect(await acceptsConnections(db)).toBe(false);
      started.release();
      await endOperation(admin, db);
      expect(await acceptsConnections(db)).toBe(true);
    } finally {
      await admin.end();
    }
  });
});

describe("snapshots cannot be changed after they were taken", () => {
  let url: string;
  let db: string;
  let role: TestRole;
  let dir: string;

  beforeAll(async () => {
    url = await createTestDatabase("sealed");
    db = new URL(url).pathname.slice(1);
    await applyMigrations(resolveSettings({ url, dir: await migrationsDir({ "20250101000000_items": MIGRATION }) }), { kind: "all" }, memoryLogger());
    role = await createTestRole("sealed_app");
    await withDb(url, (c) => c.query(`GRANT SELECT, INSERT ON items TO "${role.name}"`));
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-sealed-"));
  });

  afterAll(async () => {
    await role.drop();
    for (const s of await listSnapshots(url, { source: db })) await adminQuery(`DROP DATABASE IF EXISTS "${s.snapshotId}" WITH (FORCE)`);
    await fs.rm(dir, { recursive: true, force: true });
  });

  const cli = (args: string[]) => pgstack(args, { DATABASE_URL: url });

  async function take(engine: "template" | "dump"): Promise<string> {
    const taken = await cli(["snapshot", "create", "--stack", "sealed", "--engine", engine, "--snapshots-dir", dir, "--json"]);
    expect(taken.code).toBe(0);
    return JSON.parse(taken.stdout).snapshotId;
  }

  it("a non-superuser role cannot connect to a snapshot to change it, not even when it is opened", async () => {
    const id = await take("template");
    const intruder = new Client({ connectionString: role.urlFor(id) });
    intruder.on("error", () => undefined);
    await expect(intruder.connect()).rejects.toMatchObject({ code: "55000" });
    await intruder.end().catch(() => undefined);
    await withSnapshotOpened(id, async () => {
      const again = new Client({ connectionString: role.urlFor(id) });
      again.on("error", () => undefined);
      await expect(again.connect()).rejects.toMatchObject({ code: "42501" });
      await again.end().catch(() => undefined);
    });
    // And `snapshot list` still lists it.
    const listed = await cli(["snapshot", "list", "--json"]);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).snapshots.map((s: { snapshotId: string }) => s.snapshotId)).toContain(id);
  });

  it("a snapshot changed since it was taken (by a superuser) is refused, naming it, and the database is unchanged", async () => {
    const id = await take("template");
    await withDb(url, (c) => c.query("UPDATE items SET qty = 0 WHERE id = 1"));
    const before = await tableDigests(url);
    await withSnapshotOpened(id, () => withDb(new URL(url.replace(`/${db}`, `/${id}`)).toString(), (c) => c.query("INSERT INTO items VALUES (999999, 'planted', 1)")));
    const restored = await cli(["snapshot", "restore", id, "--yes"]);
    expect(restored.code).not.toBe(0);
    expect(restored.stderr).toContain(`Snapshot '${id}' no longer matches the content digests recorded when it was taken`);
    expect(restored.stdout).not.toContain("Restored");
    expect(await tableDigests(url)).toEqual(before);
    expect(await acceptsConnections(db)).toBe(true);
    expect((await databasesLike(`${db}_`)).filter((d) => d.endsWith("_restoring"))).toEqual([]);
  });

  it("a snapshot taken by an older pgstack (open, no recorded digest) still restores, saying it could not be verified against one", async () => {
    const id = await take("template");
    const comment = JSON.parse((await commentOf(id))!);
    // An older pgstack wrote no digests, schema digest or seal.
    delete comment.states;
    delete comment.schema;
    delete comment.seal;
    await adminQuery(`COMMENT ON DATABASE "${id}" IS '${JSON.stringify(comment).replace(/'/g, "''")}'`);
    await adminQuery(`ALTER DATABASE "${id}" ALLOW_CONNECTIONS true`);
    const atSnapshot = await tableDigests(url.replace(`/${db}`, `/${id}`));
    await withDb(url, (c) => c.query("UPDATE items SET qty = 1 WHERE id = 2"));
    const restored = await cli(["snapshot", "restore", id, "--yes"]);
    expect(restored.code).toBe(0);
    expect(restored.stderr).toContain("recorded no content digest");
    expect(restored.stderr).not.toMatch(/verified/);
    expect(await tableDigests(url)).toEqual(atSnapshot);
  });

  it("a dump file changed since it was taken is refused, naming the snapshot, and the database is unchanged", async () => {
    const id = await take("dump");
    await withDb(url, (c) => c.query("UPDATE items SET qty = 5 WHERE id = 3"));
    const before = await tableDigests(url);
    await fs.appendFile(path.join(dir, `${id}.dump`), Buffer.from([0]));
    const restored = await cli(["snapshot", "restore", id, "--yes", "--snapshots-dir", dir]);
    expect(restored.code).not.toBe(0);
    expect(restored.stderr).toContain(`Snapshot '${id}' no longer matches the digest of its dump file recorded when it was taken`);
    expect(await tableDigests(url)).toEqual(before);
    expect((await databasesLike(`${db}_`)).filter((d) => d.endsWith("_restoring"))).toEqual([]);
  });
});
