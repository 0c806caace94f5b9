import { existsSync, readFileSync, rmSync, mkdtempSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePort, initCluster, startCluster, stopCluster } from "../../infra/core/cluster/embedded";
import { memoryLogger } from "../../infra/core/logger";
import { createSnapshot } from "../../infra/core/snapshot/store";
import { planRestore, restoreSnapshot } from "../../infra/core/snapshot/restore";
import { verifySnapshot } from "../../infra/core/verify/snapshot";
import { Client } from "pg";
import { pgstack } from "../support/cli";
import { withDb } from "../support/cluster";
import { databasesAt, eventually, tableDigests } from "../support/data";
import { reflinkFolder } from "../support/reflink";

/** Adversarial tests of clone snapshots sealed by their files (issue 26), on the XFS reflink image (root). */
jest.setTimeout(300_000);

let folder: { dir: string; remove: () => void };
let dataDir: string;
let port: number;
let admin: string;
const snapshotsDir = mkdtempSync(path.join(os.tmpdir(), "pgstack-adv26-snaps-"));

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

async function fresh(name: string, extra = "") {
  const url = await createDb(name, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g; ${extra}`);
  const at = await tableDigests(url);
  const snap = await createSnapshot({ url, stack: name, log: memoryLogger(), snapshotsDir });
  expect(snap).toMatchObject({ method: "clone", files: expect.any(Object) });
  await withDb(url, (c) => c.query("UPDATE t SET v = 'after' WHERE id <= 10"));
  return { url, snap, at };
}

async function restoresExactly(url: string, name: string, snapshotId: string, at: Record<string, string>, options: Parameters<typeof restoreSnapshot>[2] = { log: memoryLogger() }) {
  const verified = await verifySnapshot(url, snapshotId, { snapshotsDir, log: memoryLogger() });
  expect({ status: verified.status, sentence: verified.sentence }).toMatchObject({ status: "pass" });
  const plan = await planRestore(url, snapshotId, { snapshotsDir });
  await restoreSnapshot(url, plan, options);
  expect(await tableDigests(url)).toEqual(at);
  expect((await databasesAt(url, `${name}_`)).filter((d) => !d.startsWith(`${name}_before`))).toEqual([]);
}

async function crash(): Promise<void> {
  const pid = Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  process.kill(pid, "SIGQUIT"); // pg_ctl stop -m immediate
  expect(await eventually(async () => !existsSync(path.join(dataDir, "postmaster.pid")), 30_000)).toBe(true);
}

beforeAll(async () => {
  folder = reflinkFolder("adv26");
  dataDir = path.join(folder.dir, "data");
  port = await freePort();
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

describe("adversary: clone snapshots sealed by their files", () => {
  it("restored by a full copy (copyMethod copy) and again by clone, --keep-old: the snapshot stays verified", async () => {
    const { url, snap, at } = await fresh("fullcopy");
    await restoresExactly(url, "fullcopy", snap.snapshotId, at, { log: memoryLogger(), copyMethod: "copy" });
    await restoresExactly(url, "fullcopy", snap.snapshotId, at, { log: memoryLogger(), keepOld: true });
    await restoresExactly(url, "fullcopy", snap.snapshotId, at, { log: memoryLogger() });
  });

  it("a plan killed right after it cloned the snapshot (restore:plan-copied): the next pgstack command leaves no <db>_plan_* behind", async () => {
    const { url, snap, at } = await fresh("plankill");
    const run = await pgstack(["snapshot", "restore", snap.snapshotId, "--snapshots-dir", snapshotsDir], { DATABASE_URL: url, PGSTACK_FAILPOINT: "restore:plan-copied" });
    expect(`${run.signal} ${run.code} ${run.stderr}`).toMatch(/^SIGKILL/);
    const list = await pgstack(["snapshot", "list", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
    expect(list.code).toBe(0);
    expect(await eventually(async () => (await databasesAt(url, "plankill_plan_")).length === 0, 5_000)).toBe(true);
    await restoresExactly(url, "plankill", snap.snapshotId, at);
  });

  it("the owner (not a superuser) racing into the snapshot while pgstack opens it for the schema digest: the forged row is never sealed nor restored", async () => {
    await withDb(admin, (c) => c.query("CREATE ROLE owner26 LOGIN PASSWORD 'pw26' CREATEDB; GRANT pg_checkpoint, pg_read_all_settings TO owner26"));
    await withDb(admin, (c) => c.query("CREATE DATABASE race OWNER owner26"));
    const as = (db: string) => {
      const u = new URL(urlOf(db));
      u.username = "owner26";
      u.password = "pw26";
      return u.toString();
    };
    const url = as("race");
    await withDb(url, (c) => c.query("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g"));
    const at = await tableDigests(url);
    let forgedSealed = 0;
    for (let round = 0; round < 6 && forgedSealed === 0; round++) {
      let stop = false;
      let forged = 0;
      const watcher = new Client({ connectionString: as("postgres") });
      await watcher.connect();
      const attack = async () => {
        let name: string | undefined;
        while (!stop && !name) {
          name = (await watcher.query<{ d: string }>("SELECT datname AS d FROM pg_database WHERE datname LIKE 'snap\\_race%' ORDER BY oid DESC LIMIT 1")).rows[0]?.d;
          if (name && round > 0 && name.endsWith(`_r${round - 1}`)) name = undefined;
        }
        const attackers = Array.from({ length: 6 }, async () => {
          while (!stop && forged === 0) {
            const c = new Client({ connectionString: as(name!) });
            c.on("error", () => undefined);
            try {
              await c.connect();
              await c.query("UPDATE t SET v = 'forged' WHERE id = 1");
              forged++;
            } catch {
              /* closed: try again */
            } finally {
              await c.end().catch(() => undefined);
            }
          }
        });
        await Promise.all(attackers);
      };
      const attacking = attack();
      const snap = await createSnapshot({ url, stack: "race", log: memoryLogger(), snapshotsDir }).catch(() => undefined);
      stop = true;
      await attacking;
      await watcher.end();
      if (!snap) continue;
      if (forged === 0) {
        await withDb(admin, (c) => c.query(`DROP DATABASE "${snap.snapshotId}"`));
        continue;
      }
      // The forged row is in the snapshot: pgstack must not call it verified, nor restore it.
      const verified = await verifySnapshot(url, snap.snapshotId, { snapshotsDir, log: memoryLogger() });
      const plan = await planRestore(urlOf("race"), snap.snapshotId, { snapshotsDir });
      const restored = await restoreSnapshot(urlOf("race"), plan, { log: memoryLogger() }).then(() => true, () => false);
      if (verified.status === "pass" || (restored && JSON.stringify(await tableDigests(url)) !== JSON.stringify(at))) forgedSealed++;
      await withDb(admin, (c) => c.query(`DROP DATABASE IF EXISTS "${snap.snapshotId}"`));
    }
    expect(forgedSealed).toBe(0);
  });

  it("killed with the schema digest's throwaway clone on disk (snapshot:probe-copied): repaired, no snapshot nor clone left, the data exactly as before", async () => {
    const url = await createDb("probekill", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g");
    const before = await tableDigests(url);
    const run = await pgstack(["snapshot", "create", "--stack", "probekill", "--json", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url, PGSTACK_FAILPOINT: "snapshot:probe-copied" });
    expect(`${run.signal} ${run.code} ${run.stderr}`).toMatch(/^SIGKILL/);
    const list = await pgstack(["snapshot", "list", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
    expect(list.code).toBe(0);
    expect(await eventually(async () => (await databasesAt(url, "snap_probekill")).length === 0, 10_000)).toBe(true);
    expect(await tableDigests(url)).toEqual(before);
  });

  it("its pg_database row rewritten without opening it (CONNECTION LIMIT): refused, and the sentences never claim it was opened or changed", async () => {
    const { url, snap } = await fresh("rewritten");
    const live = await tableDigests(url);
    await withDb(admin, (c) => c.query(`ALTER DATABASE "${snap.snapshotId}" CONNECTION LIMIT 3`));
    const verified = await verifySnapshot(url, snap.snapshotId, { snapshotsDir, log: memoryLogger() });
    expect(verified).toMatchObject({ status: "fail", details: { reason: "changed-since-taken" } });
    expect(verified.sentence).toMatch(/pg_database row was rewritten since it was taken \(ALTER DATABASE\)/);
    expect(verified.sentence).not.toMatch(/it was opened to connections|it was opened or changed since/);
    const plan = await planRestore(url, snap.snapshotId, { snapshotsDir });
    const refused = await restoreSnapshot(url, plan, { log: memoryLogger() }).then(
      () => undefined,
      (err: { code?: string; message: string; details?: { reason?: string } }) => err,
    );
    expect(refused).toMatchObject({ code: "E_SNAPSHOT", details: { reason: "changed-since-taken" } });
    expect(refused!.message).not.toMatch(/it was opened to connections|it was opened or changed since/);
    expect(await tableDigests(url)).toEqual(live);
    expect(await databasesAt(url, "rewritten_")).toEqual([]);
  });

  it("pgstack run as the database's owner (not a superuser; pg_checkpoint, pg_read_all_settings): a clone sealed by its files, verified, restored exactly", async () => {
    await withDb(admin, (c) => c.query("CREATE ROLE deployer26 LOGIN PASSWORD 'pw26d' CREATEDB; GRANT pg_checkpoint, pg_read_all_settings TO deployer26"));
    await withDb(admin, (c) => c.query("CREATE DATABASE owned OWNER deployer26"));
    const u = new URL(urlOf("owned"));
    u.username = "deployer26";
    u.password = "pw26d";
    const url = u.toString();
    await withDb(url, (c) => c.query("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g"));
    const at = await tableDigests(url);
    const snap = await createSnapshot({ url, stack: "owned", log: memoryLogger(), snapshotsDir });
    expect(snap).toMatchObject({ method: "clone", files: expect.any(Object) });
    await withDb(url, (c) => c.query("UPDATE t SET v = 'after' WHERE id <= 10"));
    await restoresExactly(url, "owned", snap.snapshotId, at);
  });

  it("the application's role (not a superuser, CONNECT through PUBLIC) racing into <db>_restoring before it is closed: its row is never restored as the snapshot's", async () => {
    await withDb(admin, (c) => c.query("CREATE ROLE heist26 LOGIN PASSWORD 'pw26h'"));
    await withDb(admin, (c) => c.query("CREATE DATABASE heist OWNER heist26"));
    const as = (db: string) => {
      const u = new URL(urlOf(db));
      u.username = "heist26";
      u.password = "pw26h";
      return u.toString();
    };
    await withDb(as("heist"), (c) => c.query("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g"));
    const url = urlOf("heist");
    const at = await tableDigests(url);
    const snap = await createSnapshot({ url, stack: "heist", log: memoryLogger(), snapshotsDir });
    let forgedRestored = 0;
    for (let round = 0; round < 3 && forgedRestored === 0; round++) {
      await withDb(url, (c) => c.query("UPDATE t SET v = 'after' WHERE id <= 10"));
      let stop = false;
      let forged = 0;
      const attackers = Array.from({ length: 6 }, async () => {
        while (!stop && forged === 0) {
          const c = new Client({ connectionString: as("heist_restoring") });
          c.on("error", () => undefined);
          try {
            await c.connect();
            await c.query("UPDATE t SET v = 'forged' WHERE id = 1");
            forged++;
          } catch {
            /* not there or closed: again */
          } finally {
            await c.end().catch(() => undefined);
          }
        }
      });
      const plan = await planRestore(url, snap.snapshotId, { snapshotsDir });
      const restored = await restoreSnapshot(url, plan, { log: memoryLogger() }).then(() => true, () => false);
      stop = true;
      await Promise.all(attackers);
      if (restored && JSON.stringify(await tableDigests(url)) !== JSON.stringify(at)) forgedRestored++;
    }
    expect(forgedRestored).toBe(0);
    // The application's role still gets into its restored database (PUBLIC's CONNECT is back).
    expect((await withDb(as("heist"), (c) => c.query("SELECT count(*)::int AS n FROM t"))).rows[0].n).toBe(2000);
  });
});

// Last: a restart gives the server a new start time, which the clone probe compares (db/clone.ts).
describe("adversary: clone snapshots sealed by their files, across server restarts", () => {
  it("a clean server restart between the snapshot and the restore: still verified and restored exactly", async () => {
    const { url, snap, at } = await fresh("restarted");
    await stopCluster(dataDir);
    await startCluster({ dataDir, port });
    await restoresExactly(url, "restarted", snap.snapshotId, at);
  });

  it("a crash (immediate stop) between the snapshot and the restore: still verified and restored exactly", async () => {
    const { url, snap, at } = await fresh("crashed");
    await withDb(url, (c) => c.query("INSERT INTO t SELECT g, 'x' FROM generate_series(3000, 5000) g"));
    await crash();
    await startCluster({ dataDir, port });
    const after = { ...at };
    await restoresExactly(url, "crashed", snap.snapshotId, after);
  });
});
