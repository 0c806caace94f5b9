/**
 * In-place restore from a template-copy snapshot, on real PostgreSQL: tens of
 * thousands of rows of varied types, a destructive migration and more writes
 * after the snapshot, then restore -> every table identical to the snapshot
 * moment; and the traps: unknown id, a deployer holding the lock, retention
 * and deletion never touching the restored database.
 */
import { Client } from "pg";
import { MIGRATION_LOCK_KEY } from "../../infra/core/db/deployers";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { databaseIdentity } from "../../infra/core/snapshot/identity";
import { planRestore, restoredFrom, restoreSnapshot } from "../../infra/core/snapshot/restore";
import { planPrune, pruneSnapshots } from "../../infra/core/snapshot/retention";
import { deleteSnapshot, listAllSnapshots } from "../../infra/core/snapshot/store";
import { createTemplateSnapshot, type SnapshotInfo } from "../../infra/core/snapshot/template";
import { adminQuery, createTestDatabase, urlFor, withDb } from "../support/cluster";
import { databasesLike, tableDigests } from "../support/data";
import { fingerprint, migrationsDir, writeMigrations } from "../support/fixtures";

jest.setTimeout(180_000);

const M1 = "20250101000000_accounts_and_events";
const M2 = "20250102000000_drop_note_and_old_events";

const DATA_SQL = `
CREATE TABLE accounts (
  id bigserial PRIMARY KEY, name text NOT NULL, balance numeric(14,4), meta jsonb, created_at timestamptz NOT NULL,
  avatar bytea, note text
);
INSERT INTO accounts (name, balance, meta, created_at, avatar, note)
SELECT 'acct ' || g || ' ünïcødé ''q''', (g * 13.37)::numeric(14,4) - 5000,
       CASE WHEN g % 5 = 0 THEN NULL ELSE jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7), 'nested', jsonb_build_object('x', g::text)) END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 minutes',
       CASE WHEN g % 3 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE repeat('note ', g % 20) END
  FROM generate_series(1, 30000) g;
CREATE TABLE events (id int PRIMARY KEY, account_id bigint REFERENCES accounts(id), payload json, at timestamp, amount double precision, ok boolean);
INSERT INTO events SELECT g, 1 + g % 30000, json_build_object('n', g), timestamp '2025-01-01' + g * interval '1 second', g / 7.0, g % 2 = 0
  FROM generate_series(1, 20000) g;
`;


describe("restoring a template-copy snapshot in place", () => {
  let url: string;
  let db: string;
  let dir: string;
  let snap: SnapshotInfo;
  let atSnapshot: Record<string, string>;

  beforeAll(async () => {
    url = await createTestDatabase("restore");
    db = new URL(url).pathname.slice(1);
    dir = await migrationsDir({ [M1]: DATA_SQL });
    await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
    snap = await createTemplateSnapshot({ url, stack: "dev", key: "aaaaaaaaaaaaaaaa", log: memoryLogger() });
    atSnapshot = await tableDigests(url);
    // After the snapshot: a destructive migration, then more writes.
    await writeMigrations(dir, { [M2]: "ALTER TABLE accounts DROP COLUMN note;\nDELETE FROM events WHERE id % 2 = 0;\n" });
    await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
    await withDb(url, (c) => c.query("INSERT INTO accounts (name, created_at) SELECT 'late ' || g, now() FROM generate_series(1, 500) g"));
  });

  it("an unknown snapshot id is one sentence and changes nothing", async () => {
    const before = { fp: await fingerprint(url), id: (await databaseIdentity(url)).identity, dbs: await databasesLike(db) };
    await expect(planRestore(url, "snap_dev_nope_20250101000000")).rejects.toThrow(
      `No snapshot 'snap_dev_nope_20250101000000' of database '${db}' exists (see \`pgstack snapshot list\`): nothing was changed.`,
    );
    expect({ fp: await fingerprint(url), id: (await databaseIdentity(url)).identity, dbs: await databasesLike(db) }).toEqual(before);
  });

  it("plans the restore: per table, rows now vs at the snapshot, and the migrations it rolls back", async () => {
    const plan = await planRestore(url, snap.snapshotId);
    expect(plan.discardedMigrations).toEqual([M2]);
    expect(plan.tables).toEqual(
      expect.arrayContaining([
        // Every account row changed (a column was dropped), 500 were added; half the events were deleted.
        { table: "public.accounts", now: 30500, atSnapshot: 30000, changed: true, inserted: 500, updated: 30000, deleted: 0 },
        { table: "public.events", now: 10000, atSnapshot: 20000, changed: true, inserted: 0, updated: 0, deleted: 10000 },
        { table: "public._prisma_migrations", now: 2, atSnapshot: 1, changed: true, inserted: 1, updated: 0, deleted: 0 },
      ]),
    );
  });

  it("refuses while a deployer holds the migration lock, without ending it or changing anything", async () => {
    const deployer = new Client({ connectionString: url, application_name: "pgstack apply" });
    await deployer.connect();
    await deployer.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    const before = await fingerprint(url);
    try {
      const plan = await planRestore(url, snap.snapshotId);
      await expect(restoreSnapshot(url, plan, { log: memoryLogger(), drainTimeoutMs: 1000 })).rejects.toThrow(
        new RegExp(`^Cannot restore '${db}' while a deployer holds its migration lock \\(pid \\d+, application_name 'pgstack apply'\\)`),
      );
      await expect(deployer.query("SELECT 1 AS ok")).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    } finally {
      await deployer.end();
    }
    expect(await fingerprint(url)).toBe(before);
    expect(await databasesLike(`${db}_`)).toEqual([]);
  });

  it("restores every table exactly as at the snapshot, ending the application's sessions, and drops the old database only after", async () => {
    const idBefore = await databaseIdentity(url);
    const app = new Client({ connectionString: url, application_name: "the app" });
    app.on("error", () => undefined);
    await app.connect();
    const log = memoryLogger();
    const plan = await planRestore(url, snap.snapshotId);
    const started = Date.now();
    await restoreSnapshot(url, plan, { log });
    const ms = Date.now() - started;
    process.stderr.write(`[restore] 50k rows restored in ${ms} ms\n`);

    expect(await tableDigests(url)).toEqual(atSnapshot);
    const cols = await withDb(url, (c) => c.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'note'"));
    expect(cols.rowCount).toBe(1);
    await expect(app.query("SELECT 1")).rejects.toThrow();
    await app.end().catch(() => undefined);
    expect(log.lines).toContain(`warn: ended 1 session(s) still connected to ${db} so it could be replaced`);
    expect(log.lines.join("\n")).not.toMatch(/postgresql:\/\//);
    // A new database (new oid: the migration commands' triggers change), no leftovers.
    expect((await databaseIdentity(url)).databaseOid).not.toBe(idBefore.databaseOid);
    expect(await databasesLike(`${db}_`)).toEqual([]);
    expect(await restoredFrom(url)).toBe(snap.snapshotId);
    // The snapshot is untouched and still listed.
    expect((await listAllSnapshots(url)).map((s) => s.snapshotId)).toContain(snap.snapshotId);
  });

  it("keeps the replaced database as <db>_before_restore_<time> when asked", async () => {
    await withDb(url, (c) => c.query("INSERT INTO accounts (name, created_at) VALUES ('after restore', now())"));
    const plan = await planRestore(url, snap.snapshotId);
    const result = await restoreSnapshot(url, plan, { log: memoryLogger(), keepOld: true, now: () => new Date("2025-11-22T01:02:03Z") });
    expect(result.keptAs).toBe(`${db}_before_restore_20251122010203`);
    expect(await tableDigests(url)).toEqual(atSnapshot);
    const kept = await withDb(urlFor(result.keptAs!), (c) => c.query("SELECT count(*)::int AS n FROM accounts"));
    expect(kept.rows[0].n).toBe(30001);
    await adminQuery(`DROP DATABASE "${result.keptAs}"`);
  });

  it("retention keeps the snapshot the database was restored from and the newest pre-update one; pruning never touches the database", async () => {
    // Newer snapshots than `snap`: one pre-update (with a key), then two manual ones.
    const pre = await createTemplateSnapshot({ url, stack: "dev", key: "bbbbbbbbbbbbbbbb", log: memoryLogger(), now: () => new Date(Date.now() + 1000) });
    const m1 = await createTemplateSnapshot({ url, stack: "dev", log: memoryLogger(), now: () => new Date(Date.now() + 2000) });
    const m2 = await createTemplateSnapshot({ url, stack: "dev", log: memoryLogger(), now: () => new Date(Date.now() + 3000) });
    const plan = await pruneSnapshots(url, { keep: 1, stack: "dev", log: memoryLogger() });
    expect(plan.keep.map((k) => [k.snapshot.snapshotId, k.why])).toEqual([
      [m2.snapshotId, "one of the newest 1"],
      [pre.snapshotId, "the newest pre-update snapshot"],
      [snap.snapshotId, "the database was restored from it"],
    ]);
    expect(plan.remove.map((s) => s.snapshotId)).toEqual([m1.snapshotId]);
    expect((await listAllSnapshots(url)).map((s) => s.snapshotId).sort()).toEqual([snap.snapshotId, pre.snapshotId, m2.snapshotId].sort());
    expect(await tableDigests(url)).toEqual(atSnapshot);
  });

  it("deleting the snapshot a database was restored from leaves that database intact; delete refuses non-snapshots", async () => {
    await deleteSnapshot(url, snap.snapshotId, memoryLogger());
    expect(await databasesLike(snap.snapshotId)).toEqual([]);
    expect(await tableDigests(url)).toEqual(atSnapshot);
    await expect(deleteSnapshot(url, db, memoryLogger())).rejects.toThrow(`No snapshot '${db}' of database '${db}' exists (see \`pgstack snapshot list\`): nothing was deleted.`);
    expect(await databasesLike(db)).toContain(db);
  });
});

describe("planPrune (pure)", () => {
  const s = (id: string, at: string, key: string | null = null): SnapshotInfo => ({ snapshotId: id, source: "app", stack: "dev", lastMigration: null, createdAt: at, key });
  it("keeps the newest n plus the protected ones, and refuses to keep none", () => {
    const list = [s("a", "2025-01-01", "k1"), s("b", "2025-01-02"), s("c", "2025-01-03"), s("d", "2025-01-04")];
    expect(planPrune(list, { keep: 2 }).remove.map((x) => x.snapshotId)).toEqual(["b"]);
    expect(planPrune(list, { keep: 2, restoredFrom: "b" }).remove).toEqual([]);
    expect(planPrune(list, { keep: 4 }).remove).toEqual([]);
    expect(() => planPrune(list, { keep: 0 })).toThrow("Retention must keep at least 1 snapshot (got 0).");
  });

  it("never prunes the rollback target nor the last good state; of failed attempts it keeps only the newest (issue 11, defect 3; issue 22)", () => {
    const p = (id: string, at: string, clean: boolean): SnapshotInfo => ({ ...s(id, at, `k${id}`), clean });
    // ok1, ok2: before successful updates; f3 before the first of six failed attempts (clean ledger), f4..f8 after failures.
    const failed = [3, 4, 5, 6, 7, 8].map((n) => p(`f${n}`, `2025-01-0${n}`, n === 3));
    const list = [p("ok1", "2025-01-01", true), p("ok2", "2025-01-02", true), ...failed];
    const plan = planPrune(list, { keep: 5, rollbackTarget: "ok2" });
    expect(plan.keep.map((k) => [k.snapshot.snapshotId, k.why])).toEqual([
      ["f8", "the newest pre-update snapshot"],
      ["f3", "the first taken since the last successful update"],
      ["ok2", "the rollback target"],
    ]);
    expect(plan.remove.map((x) => x.snapshotId)).toEqual(["f7", "f6", "f5", "f4", "ok1"]);
    // A superseded attempt that is the rollback target (it applied part of a migration) stays.
    expect(planPrune(list, { keep: 1, rollbackTarget: "f5" }).keep.find((k) => k.snapshot.snapshotId === "f5")?.why).toBe("the rollback target");
  });
});
