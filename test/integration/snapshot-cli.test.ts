/**
 * Snapshots as people and the stack take them, on real PostgreSQL:
 *
 *  - the PreUpdateSnapshot command resource's own command text
 *    (templateSnapshotCommandArgs: `node infra/bin/pgstack.js snapshot create
 *    --json ...`, DATABASE_URL in the environment) run by /bin/sh as
 *    pulumi-command does: when it fails (name taken, no pg_dump, no
 *    permission) it exits non-zero with one sentence, so no migration command
 *    (each dependsOn it) runs, and it leaves no snapshot and the database as
 *    it was, open;
 *  - `pgstack snapshot list|create|restore|delete|prune` end to end.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { templateSnapshotCommandArgs } from "../../infra/components/snapshot/snapshot";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { databaseIdentity } from "../../infra/core/snapshot/identity";
import { restoredFrom } from "../../infra/core/snapshot/restore";
import { listAllSnapshots } from "../../infra/core/snapshot/store";
import type { SnapshotInfo } from "../../infra/core/snapshot/template";
import { SEAL_KEY_FILE } from "../../infra/core/snapshot/seal";
import { pgstack } from "../support/cli";
import { adminQuery, createTestDatabase, testCluster, urlFor, withDb } from "../support/cluster";
import { acceptsConnections, databasesLike, tableDigests } from "../support/data";
import { fingerprint, migrationsDir, writeMigrations } from "../support/fixtures";
import { createDatabaseOwnedBy, createTestRole, type TestRole } from "../support/roles";
import { pathWithOnlyNode, runCommandText, scratchProject } from "../support/script";
import { expectOneSentence } from "../support/sentence";
import { withSnapshotOpened } from "../support/snapshots";

jest.setTimeout(180_000);

const adminPassword = () => new URL(testCluster().adminUrl).password;

const MIGRATIONS = {
  "20250101000000_widgets": "CREATE TABLE widgets (id serial PRIMARY KEY, name text NOT NULL, meta jsonb);\n",
  "20250102000000_seed_widgets": "INSERT INTO widgets (name, meta) SELECT 'w' || g, jsonb_build_object('g', g) FROM generate_series(1, 500) g;\n",
};
const LAST = "20250102000000_seed_widgets";

/** The exact `create` text of the stack's snapshot command resource. */
function snapshotCommandText(stack: string, key = "0123456789abcdef"): string {
  const args = templateSnapshotCommandArgs({ stack, key, databaseUrl: "unused", identity: "unused", keep: 5, lockWaitSeconds: 5 });
  return args.create as string;
}

async function snapshotFiles(project: string): Promise<string[]> {
  return (await fs.readdir(path.join(project, ".pgstack", "snapshots")).catch(() => [] as string[])).filter((f) => f !== SEAL_KEY_FILE).sort();
}

/** Everything that must not change when a snapshot is refused. */
async function stateOf(db: string, url: string, project: string) {
  return {
    fingerprint: await fingerprint(urlFor(db)),
    digests: await tableDigests(urlFor(db)),
    databases: await databasesLike(db),
    snapshotDatabases: (await adminQuery("SELECT datname FROM pg_database WHERE datname LIKE 'snap\\_%' ORDER BY 1")).rows.map((r) => r.datname),
    files: await snapshotFiles(project),
    open: await acceptsConnections(db),
    snapshots: (await listAllSnapshots(urlFor(db), {}, { snapshotsDir: path.join(project, ".pgstack", "snapshots") })).map((s) => s.snapshotId),
  };
}

describe("the stack's snapshot command, run as its command resource runs it", () => {
  let project: string;
  let owner: TestRole;
  let db: string;
  let ownerUrl: string;

  beforeAll(async () => {
    project = await scratchProject();
    // A database owned by a role that may not create databases: its snapshots are pg_dumps.
    owner = await createTestRole("snapowner");
    ({ name: db, url: ownerUrl } = await createDatabaseOwnedBy("snapcmd", owner));
    await applyMigrations(resolveSettings({ url: ownerUrl, dir: await migrationsDir(MIGRATIONS) }), { kind: "all" }, memoryLogger());
  });

  afterAll(async () => {
    await adminQuery(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    await owner.drop();
  });

  it("takes a pg_dump for a role that may not create databases and prints one JSON line (the harness works)", async () => {
    const result = await runCommandText(snapshotCommandText("cmdok"), { DATABASE_URL: ownerUrl }, project);
    expect(result.code).toBe(0);
    const info = JSON.parse(result.stdout.trim()) as SnapshotInfo;
    expect(result.stdout.trim().split("\n")).toHaveLength(1);
    expect(info).toMatchObject({ source: db, stack: "cmdok", lastMigration: LAST, key: "0123456789abcdef", engine: "dump" });
    expect(info.snapshotId).toMatch(new RegExp(`^snap_cmdok_${LAST}_\\d{14}$`));
    expect(await snapshotFiles(project)).toEqual([`${info.snapshotId}.dump`, `${info.snapshotId}.json`]);
    expect(result.stdout + result.stderr).not.toContain(owner.password);
    await fs.rm(path.join(project, ".pgstack"), { recursive: true });
  });

  it("with the migrations folder, takes no copy when the chain would apply nothing, and one when a migration is pending", async () => {
    const upToDate = await migrationsDir(MIGRATIONS);
    const command = (dir: string) =>
      templateSnapshotCommandArgs({ stack: "skip", key: "0123456789abcdef", databaseUrl: "unused", identity: "unused", keep: 5, migrationsDir: dir }).create as string;
    const taken = await runCommandText(command(await migrationsDir({ ...MIGRATIONS, "20250103000000_more": "CREATE TABLE more (id int);\n" })), { DATABASE_URL: ownerUrl }, project);
    expect(taken.code).toBe(0);
    const first = JSON.parse(taken.stdout) as SnapshotInfo;
    expect(first.snapshotId).toMatch(/^snap_skip_/);

    const before = await stateOf(db, ownerUrl, project);
    const skipped = await runCommandText(command(upToDate), { DATABASE_URL: ownerUrl }, project);
    expect(skipped.code).toBe(0);
    // The stack's newest snapshot stands as its latest; nothing new exists.
    expect(JSON.parse(skipped.stdout)).toEqual({ snapshotId: first.snapshotId, lastMigration: LAST, taken: false });
    expect(await stateOf(db, ownerUrl, project)).toEqual(before);
    await fs.rm(path.join(project, ".pgstack"), { recursive: true });
  });

  it("no pg_dump on PATH: exit 1, one sentence saying what to install, nothing taken, database unchanged and open", async () => {
    const before = await stateOf(db, ownerUrl, project);
    const bin = await pathWithOnlyNode();
    const result = await runCommandText(snapshotCommandText("nodump"), { DATABASE_URL: ownerUrl, PATH: bin, PGSTACK_PG_DUMP: undefined }, project);
    expect(result.code).toBe(1);
    expectOneSentence(result.stderr, /^pgstack: pg_dump was not found on PATH: install the PostgreSQL client tools \(Debian\/Ubuntu: apt-get install postgresql-client\) or set PGSTACK_PG_DUMP to its path\.$/, [
      owner.password,
    ]);
    // --json: the CLI's error contract, the sentence and its code as the one JSON line.
    expect(JSON.parse(result.stdout).error).toMatchObject({ code: "E_SNAPSHOT", message: expect.stringMatching(/^pg_dump was not found on PATH/) });
    expect(await stateOf(db, ownerUrl, project)).toEqual(before);
    await expect(fs.stat(path.join(project, ".pgstack"))).rejects.toThrow(/ENOENT/);
  });

  it("a role that may not create databases nor read the tables: exit 1, one sentence naming the role and the fix, nothing taken", async () => {
    const reader = await createTestRole("noread");
    try {
      const before = await stateOf(db, ownerUrl, project);
      const result = await runCommandText(snapshotCommandText("noread"), { DATABASE_URL: reader.urlFor(db) }, project);
      expect(result.code).toBe(1);
      expectOneSentence(
        result.stderr,
        new RegExp(
          `^pgstack: Role '${reader.name}' may not read all of database '${db}' \\(permission denied for table _prisma_migrations\\), so pg_dump cannot snapshot it: use the URL of the database's owner or grant the role SELECT on every table and sequence; nothing was dumped\\.$`,
        ),
        [reader.password, owner.password],
      );
      expect(await stateOf(db, ownerUrl, project)).toEqual(before);

      // It may read every table but not the sequences pg_dump must read too: pg_dump itself fails, no partial file is left.
      await withDb(ownerUrl, (c) => c.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO "${reader.name}"`));
      const dumped = await runCommandText(snapshotCommandText("noread"), { DATABASE_URL: reader.urlFor(db) }, project);
      expect(dumped.code).toBe(1);
      expectOneSentence(dumped.stderr, new RegExp(`^pgstack: pg_dump could not dump database '${db}': permission denied for sequence widgets_id_seq\\.$`), [reader.password]);
      const after = await stateOf(db, ownerUrl, project);
      expect(after.files.filter((f) => !f.endsWith(".partial"))).toEqual([]);
      expect(after.files).toEqual([]);
      expect({ ...after, files: before.files }).toEqual(before);
    } finally {
      await withDb(ownerUrl, (c) => c.query(`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "${reader.name}"`));
      await reader.drop();
    }
  });

  it("a lock held past --lock-wait by another deployer: exit 1, one sentence naming it, nothing taken", async () => {
    const { Client } = await import("pg");
    const deployer = new Client({ connectionString: ownerUrl, application_name: "other deploy" });
    await deployer.connect();
    try {
      await deployer.query("SELECT pg_advisory_lock(72707369)");
      const before = await stateOf(db, ownerUrl, project);
      const text = templateSnapshotCommandArgs({ stack: "locked", key: "0123456789abcdef", databaseUrl: "unused", identity: "unused", lockWaitSeconds: 1 }).create as string;
      const result = await runCommandText(text, { DATABASE_URL: ownerUrl }, project);
      expect(result.code).toBe(1);
      const lines = result.stderr.trim().split("\n");
      expectOneSentence(
        lines[lines.length - 1],
        new RegExp(`^pgstack: Another deployer holds the migration lock on database '${db}' \\(pid \\d+, application_name 'other deploy'\\); waited 1s: let it finish, or raise --lock-wait\\.$`),
        [owner.password],
      );
      expect(await stateOf(db, ownerUrl, project)).toEqual(before);
    } finally {
      await deployer.end();
    }
  });
});

describe("failed update attempts and retention (issue 22)", () => {
  it("seven failing attempts, each taking its pre-update snapshot with --keep 5, leave three copies: the rollback target, the last good state and the newest attempt's", async () => {
    const url = await createTestDatabase("attempts");
    const first = "20250101000000_widgets";
    const dir = await migrationsDir({ [first]: MIGRATIONS[first] });
    const env = { DATABASE_URL: url };
    const create = async () => {
      const r = await pgstack(["snapshot", "create", "--json", "--stack", "att", "--key", "0123456789abcdef", "--keep", "5", "--migrations-dir", dir], env);
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout).snapshotId as string;
    };
    const target = await create(); // before the one successful update
    expect((await pgstack(["apply", "--all", "--dir", dir], env)).code).toBe(0);
    await writeMigrations(dir, { "20250102000000_bad": "SELECT 1/0;\n" });
    const attempts: string[] = [];
    for (let i = 0; i < 7; i++) {
      attempts.push(await create());
      expect((await pgstack(["apply", "--all", "--dir", dir], env)).code).toBe(1);
    }
    expect(new Set(attempts).size).toBe(7);
    const left = (await listAllSnapshots(url, { stack: "att" })).map((s) => s.snapshotId);
    // attempts[0] was taken right after the successful update (clean ledger): the last good state.
    expect(left).toEqual([target, attempts[0], attempts[6]]);
    expect(await databasesLike("snap_att")).toHaveLength(3);
  });
});

describe("pgstack snapshot create with a name that is taken", () => {
  it("is refused with one sentence for either engine, and nothing is taken or overwritten", async () => {
    const url = await createTestDatabase("snaptaken");
    const db = new URL(url).pathname.slice(1);
    await applyMigrations(resolveSettings({ url, dir: await migrationsDir(MIGRATIONS) }), { kind: "all" }, memoryLogger());
    const snapshotsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-dumps-"));
    const first = await pgstack(["snapshot", "create", "--stack", "taken", "--json", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
    expect(first.code).toBe(0);
    const template = JSON.parse(first.stdout) as SnapshotInfo;
    expect(template.engine).toBe("template");
    const dumped = JSON.parse((await pgstack(["snapshot", "create", "--stack", "taken", "--engine", "dump", "--json", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url })).stdout) as SnapshotInfo;
    expect(dumped.engine).toBe("dump");
    const dumpBytes = await fs.readFile(path.join(snapshotsDir, `${dumped.snapshotId}.dump`));
    await withDb(url, (c) => c.query("INSERT INTO widgets (name) VALUES ('after the snapshots')"));
    const before = { fp: await fingerprint(url), dbs: await databasesLike("snap_taken_"), files: (await fs.readdir(snapshotsDir)).sort() };

    const again = await pgstack(["snapshot", "create", "--stack", "taken", "--name", template.snapshotId, "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
    expect(again.code).toBe(1);
    expectOneSentence(again.stderr, new RegExp(`^pgstack: Snapshot name '${template.snapshotId}' is taken by an existing database: choose another name \\(nothing was copied\\)\\.$`), [adminPassword()]);
    // Taken by a database that is no snapshot at all (the application's own): refused too.
    const notSnap = await pgstack(["snapshot", "create", "--stack", "taken", "--name", "snap_x_20250101000000"], { DATABASE_URL: url });
    expect(notSnap.code).toBe(0);
    const clash = await pgstack(["snapshot", "create", "--stack", "taken", "--name", "snap_x_20250101000000"], { DATABASE_URL: url });
    expect(clash.code).toBe(1);
    expectOneSentence(clash.stderr, /^pgstack: Snapshot name 'snap_x_20250101000000' is taken by an existing database/, [adminPassword()]);
    await adminQuery(`DROP DATABASE "snap_x_20250101000000"`);

    const againDump = await pgstack(["snapshot", "create", "--stack", "taken", "--engine", "dump", "--name", dumped.snapshotId, "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
    expect(againDump.code).toBe(1);
    expectOneSentence(againDump.stderr, new RegExp(`^pgstack: Snapshot name '${dumped.snapshotId}' is taken in ${snapshotsDir}: choose another name \\(nothing was dumped\\)\\.$`), [adminPassword()]);

    expect({ fp: await fingerprint(url), dbs: await databasesLike("snap_taken_"), files: (await fs.readdir(snapshotsDir)).sort() }).toEqual(before);
    expect(await fs.readFile(path.join(snapshotsDir, `${dumped.snapshotId}.dump`))).toEqual(dumpBytes);
    expect(await acceptsConnections(db)).toBe(true);
    // The template copy still holds the data of when it was taken.
    const inCopy = await withSnapshotOpened(template.snapshotId, () => withDb(urlFor(template.snapshotId), (c) => c.query("SELECT count(*)::int AS n FROM widgets")));
    expect(inCopy.rows[0].n).toBe(500);
    await adminQuery(`DROP DATABASE "${template.snapshotId}"`);
  });
});

describe("pgstack snapshot list | create | restore | delete | prune", () => {
  let url: string;
  let db: string;
  let snapshotsDir: string;
  const ids: string[] = [];
  const STACK = "clife";
  const run = (args: string[]) => pgstack(["snapshot", ...args, "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
  const listIds = async () => (JSON.parse((await run(["list", "--json"])).stdout).snapshots as SnapshotInfo[]).map((s) => s.snapshotId);

  beforeAll(async () => {
    url = await createTestDatabase("snaplife");
    db = new URL(url).pathname.slice(1);
    snapshotsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-dumps-"));
    await applyMigrations(resolveSettings({ url, dir: await migrationsDir(MIGRATIONS) }), { kind: "all" }, memoryLogger());
  });

  afterAll(async () => {
    for (const id of ids) await adminQuery(`DROP DATABASE IF EXISTS "${id}" WITH (FORCE)`);
  });

  it("list says there are none, then create takes snapshots (template, and dump when asked) that list --json shows oldest first", async () => {
    const empty = await run(["list"]);
    expect(empty).toMatchObject({ code: 0, stdout: "No snapshots.\n" });
    expect(JSON.parse((await run(["list", "--json"])).stdout)).toEqual({ snapshots: [] });

    const created = await run(["create", "--stack", STACK]);
    expect(created.code).toBe(0);
    const m = /^Snapshot (snap_clife_20250102000000_seed_widgets_\d{14}) taken \(template, last migration: 20250102000000_seed_widgets\)\.$/.exec(created.stdout.trim());
    expect(m).not.toBeNull();
    ids.push(m![1]);
    await withDb(url, (c) => c.query("INSERT INTO widgets (name) SELECT 'second ' || g FROM generate_series(1, 20) g"));
    const dump = await run(["create", "--stack", STACK, "--engine", "dump", "--json"]);
    expect(dump.code).toBe(0);
    const dumpInfo = JSON.parse(dump.stdout);
    expect(dumpInfo).toMatchObject({ engine: "dump", stack: STACK, source: db });
    expect(dumpInfo).not.toHaveProperty("tables");
    ids.push(dumpInfo.snapshotId);
    await withDb(url, (c) => c.query("INSERT INTO widgets (name) SELECT 'third ' || g FROM generate_series(1, 30) g"));
    const third = JSON.parse((await run(["create", "--stack", STACK, "--json"])).stdout);
    ids.push(third.snapshotId);
    // Another stack's snapshot of the same database.
    const other = JSON.parse((await run(["create", "--stack", "otherstack", "--json"])).stdout);
    ids.push(other.snapshotId);

    const listed = await run(["list", "--json"]);
    expect(listed.code).toBe(0);
    const snapshots = JSON.parse(listed.stdout).snapshots as SnapshotInfo[];
    expect(snapshots.map((s) => [s.snapshotId, s.engine, s.stack, s.source, s.lastMigration])).toEqual([
      [ids[0], "template", STACK, db, LAST],
      [ids[1], "dump", STACK, db, LAST],
      [ids[2], "template", STACK, db, LAST],
      [ids[3], "template", "otherstack", db, LAST],
    ]);
    for (const s of snapshots) expect(Object.keys(s).sort()).toEqual(["clean", "createdAt", "engine", "key", "lastMigration", "snapshotId", "source", "stack"]);
    expect((JSON.parse((await run(["list", "--json", "--stack", STACK])).stdout).snapshots as SnapshotInfo[]).map((s) => s.snapshotId)).toEqual(ids.slice(0, 3));
    const text = await run(["list"]);
    expect(text.stdout.split("\n")[0]).toMatch(/^SNAPSHOT\s+ENGINE\s+STACK\s+LAST MIGRATION\s+TAKEN AT/);
    expect(text.stdout).toContain(ids[1]);
    for (const r of [listed, text]) expect(r.stdout + r.stderr).not.toContain(adminPassword());
  });

  it("restore of an unknown id: exit 1, one sentence, nothing changed", async () => {
    const before = { fp: await fingerprint(url), digests: await tableDigests(url), id: (await databaseIdentity(url)).identity, dbs: await databasesLike(db), snaps: await listIds() };
    for (const extra of [[], ["--yes"], ["--yes", "--json"]]) {
      const result = await run(["restore", "snap_clife_nope_20250101000000", ...extra]);
      expect(result.code).toBe(1);
      expectOneSentence(
        result.stderr,
        new RegExp(`^pgstack: No snapshot 'snap_clife_nope_20250101000000' of database '${db}' exists \\(see \`pgstack snapshot list\`\\): nothing was changed\\.$`),
        [adminPassword()],
      );
      if (extra.includes("--json")) expect(JSON.parse(result.stdout).error).toMatchObject({ code: "E_SNAPSHOT", details: { snapshotId: "snap_clife_nope_20250101000000", reason: "unknown" } });
      else expect(result.stdout).toBe("");
    }
    expect({ fp: await fingerprint(url), digests: await tableDigests(url), id: (await databaseIdentity(url)).identity, dbs: await databasesLike(db), snaps: await listIds() }).toEqual(before);
  });

  it("restore without --yes shows what it discards and changes nothing; with --yes restores (from a dump too)", async () => {
    const before = { digests: await tableDigests(url), id: (await databaseIdentity(url)).identity };
    const dry = await run(["restore", ids[1]]);
    expect(dry.code).toBe(0);
    expect(dry.stdout.trim()).toBe("Nothing changed: run again with --yes to restore.");
    expect(dry.stderr).toContain(`Restore database '${db}' from snapshot ${ids[1]}`);
    expect(dry.stderr).toMatch(/public\.widgets\s+550\s+520\s+\+30/);
    expect({ digests: await tableDigests(url), id: (await databaseIdentity(url)).identity }).toEqual(before);

    const done = await run(["restore", ids[1], "--yes"]);
    expect(done.code).toBe(0);
    // The test cluster is on ext4: a full template copy, and the swap's pause measured.
    expect(done.stdout.trim()).toMatch(new RegExp(`^Restored '${db}' from ${ids[1]} \\(template, paused \\d+ ms\\)\\.$`));
    expect(done.stdout + done.stderr).not.toContain(adminPassword());
    expect(await restoredFrom(url, { snapshotsDir })).toBe(ids[1]);
    const n = await withDb(url, (c) => c.query("SELECT count(*)::int AS n FROM widgets"));
    expect(n.rows[0].n).toBe(520);
    expect(await databasesLike(`${db}_`)).toEqual([]);
  });

  it("prune --keep 1 keeps the newest and the one the database was restored from, deletes the rest of the stack's", async () => {
    const newest = JSON.parse((await run(["create", "--stack", STACK, "--json"])).stdout);
    ids.push(newest.snapshotId);
    const digestsBefore = await tableDigests(url);

    const dry = await run(["prune", "--keep", "1", "--stack", STACK, "--dry-run", "--json"]);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)).toEqual({
      kept: [
        { snapshotId: newest.snapshotId, why: "one of the newest 1" },
        { snapshotId: ids[1], why: "the database was restored from it" },
      ],
      deleted: [ids[2], ids[0]],
      dryRun: true,
    });
    expect(await listIds()).toEqual([...ids.slice(0, 4), newest.snapshotId]);

    const pruned = await run(["prune", "--keep", "1", "--stack", STACK]);
    expect(pruned.code).toBe(0);
    expect(pruned.stdout.trim().split("\n")).toEqual([
      `keep    ${newest.snapshotId} (one of the newest 1)`,
      `keep    ${ids[1]} (the database was restored from it)`,
      `deleted ${ids[2]}`,
      `deleted ${ids[0]}`,
    ]);
    // The other stack's snapshot is not this stack's to prune; the dump restored from is kept on disk.
    expect(await listIds()).toEqual([ids[1], ids[3], newest.snapshotId]);
    expect(await databasesLike(ids[0])).toEqual([]);
    expect(await databasesLike(ids[2])).toEqual([]);
    expect((await fs.readdir(snapshotsDir)).filter((f) => f !== SEAL_KEY_FILE).sort()).toEqual([`${ids[1]}.dump`, `${ids[1]}.json`]);
    expect(await tableDigests(url)).toEqual(digestsBefore);

    // Without --stack, keep 1: still never the restored-from one nor the newest.
    const all = JSON.parse((await run(["prune", "--keep", "1", "--json"])).stdout);
    expect(all.kept.map((k: { snapshotId: string }) => k.snapshotId).sort()).toEqual([ids[1], newest.snapshotId].sort());
    expect(all.deleted).toEqual([ids[3]]);
    expect(await tableDigests(url)).toEqual(digestsBefore);

    const bad = await run(["prune", "--keep", "0"]);
    expect(bad.code).toBe(2);
    expectOneSentence(bad.stderr, /^pgstack: --keep must be a whole number of at least 1 \(got '0'\)\.$/);
    expect(await listIds()).toEqual([ids[1], newest.snapshotId]);
  });

  it("delete removes one snapshot and nothing else; an unknown id or the database itself is one sentence", async () => {
    const before = await tableDigests(url);
    const del = await run(["delete", ids[1], "--json"]);
    expect(del.code).toBe(0);
    expect(JSON.parse(del.stdout)).toEqual({ deleted: ids[1] });
    expect((await fs.readdir(snapshotsDir)).filter((f) => f !== SEAL_KEY_FILE)).toEqual([]);
    expect(await listIds()).toEqual([ids[4]]);
    expect(await tableDigests(url)).toEqual(before);
    // The restore is recorded in the snapshot (the database's comment stays its own), so it goes with it.
    expect(await restoredFrom(url, { snapshotsDir })).toBeUndefined();

    for (const id of [ids[1], db]) {
      const refused = await run(["delete", id]);
      expect(refused.code).toBe(1);
      expectOneSentence(refused.stderr, new RegExp(`^pgstack: No snapshot '${id}' of database '${db}' exists \\(see \`pgstack snapshot list\`\\): nothing was deleted\\.$`), [adminPassword()]);
    }
    expect(await databasesLike(db)).toEqual([db]);
    const text = await run(["delete", ids[4]]);
    expect(text.stdout.trim()).toBe(`Snapshot ${ids[4]} deleted.`);
    expect(await listIds()).toEqual([]);
  });
});
