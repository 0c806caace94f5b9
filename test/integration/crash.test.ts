/**
 * Defect 1 of issue 11: a process killed (SIGKILL, no finally runs) inside a
 * snapshot, a restore or the restore's swap, with the real CLI against real
 * PostgreSQL. `PGSTACK_FAILPOINT=<name>` kills it at a named point inside the
 * operation (some while a statement runs: a CREATE DATABASE, the swap's
 * COMMIT). Then its guardian (or, failing that, the next pgstack command)
 * repairs what it left, saying so, and: the database takes connections, holds exactly the data before or
 * after (content digests), keeps its own comment, and no unfinished copy is
 * left.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { recordThrowaway } from "../../infra/core/db/copy";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { restoredFrom } from "../../infra/core/snapshot/restore";
import { listSnapshots } from "../../infra/core/snapshot/template";
import { SEAL_KEY_FILE } from "../../infra/core/snapshot/seal";
import { pgstack } from "../support/cli";
import { adminQuery, createTestDatabase, urlFor, withDb } from "../support/cluster";
import { acceptsConnections, databasesLike, tableDigests } from "../support/data";
import { migrationsDir } from "../support/fixtures";

jest.setTimeout(300_000);

const MIGRATION = `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL);
INSERT INTO items SELECT g, 'item ' || g, g % 17 FROM generate_series(1, 5000) g;
CREATE TABLE notes (body text);
INSERT INTO notes SELECT 'note ' || g FROM generate_series(1, 300) g;
`;
const COMMENT = "the shop's database";
const literal = (t: string) => "'" + t.replace(/'/g, "''") + "'";

async function commentOf(db: string): Promise<string | null> {
  const { rows } = await adminQuery("SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1", [db]);
  return (rows[0]?.c as string | null) ?? null;
}

describe("a pgstack killed inside a snapshot or a restore", () => {
  let url: string;
  let db: string;

  beforeAll(async () => {
    url = await createTestDatabase("crash");
    db = new URL(url).pathname.slice(1);
    await applyMigrations(resolveSettings({ url, dir: await migrationsDir({ "20250101000000_items": MIGRATION }) }), { kind: "all" }, memoryLogger());
    await adminQuery(`COMMENT ON DATABASE "${db}" IS ${literal(COMMENT)}`);
  });

  afterAll(async () => {
    for (const s of await listSnapshots(url, { source: db })) await adminQuery(`DROP DATABASE IF EXISTS "${s.snapshotId}" WITH (FORCE)`);
  });

  const cli = (args: string[], failpoint?: string) => pgstack(args, { DATABASE_URL: url, PGSTACK_FAILPOINT: failpoint });

  /** The next command (any with a database) repairs; returns its stderr. */
  async function nextCommand(): Promise<string> {
    const next = await cli(["snapshot", "list", "--json"]);
    expect(next.code).toBe(0);
    return next.stderr;
  }

  it.each(["snapshot:closed", "snapshot:sessions-ended", "snapshot:copying", "snapshot:copied", "snapshot:labelled"])(
    "killed at %s: the next command reopens the database and drops the unfinished copy; data and comment unchanged",
    async (point) => {
      const before = await tableDigests(url);
      const snapshotsBefore = (await listSnapshots(url, { source: db })).map((s) => s.snapshotId);
      // The command's stderr ends when its guardian (guardian.ts) does: after it repaired, saying so.
      const killed = await cli(["snapshot", "create", "--stack", "crash", "--json"], point);
      expect(killed.signal).toBe("SIGKILL");
      const said = killed.stderr + (await nextCommand());
      expect(said).toMatch(new RegExp(`repaired database '${db}' after an interrupted pgstack snapshot`));
      expect(await acceptsConnections(db)).toBe(true);
      expect(await tableDigests(url)).toEqual(before);
      expect(await commentOf(db)).toBe(COMMENT);
      // No orphan: every snap_crash_* database is a listed snapshot; a copy finished and labelled before the kill is one.
      const listed = (await listSnapshots(url, { source: db })).map((s) => s.snapshotId).sort();
      expect(await databasesLike("snap_crash_")).toEqual(listed);
      expect(listed.length - snapshotsBefore.length).toBe(point === "snapshot:labelled" ? 1 : 0);
      // And the next snapshot works.
      const again = await cli(["snapshot", "create", "--stack", "crash", "--json"]);
      expect(again.code).toBe(0);
      expect(await acceptsConnections(db)).toBe(true);
    },
  );

  it.each(["dump:dumping", "dump:dumped"])(
    "killed at %s (pg_dump engine): the database stays open and unchanged, and the next pgstack command (a snapshot list) removes the unfinished dump and says so",
    async (point) => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-crash-dump-"));
      try {
        const before = await tableDigests(url);
        const killed = await cli(["snapshot", "create", "--stack", "crash", "--engine", "dump", "--snapshots-dir", dir, "--json"], point);
        expect(killed.signal).toBe("SIGKILL");
        expect(await acceptsConnections(db)).toBe(true);
        expect(await tableDigests(url)).toEqual(before);
        const left = await fs.readdir(dir);
        expect(left.filter((f) => f.endsWith(".partial"))).toHaveLength(1);
        expect(left.filter((f) => !f.endsWith(".partial"))).toEqual([]);
        // Not a snapshot: nothing lists it, and the listing command is the next one, which removes it.
        const listed = await cli(["snapshot", "list", "--snapshots-dir", dir, "--json"]);
        expect(listed.code).toBe(0);
        expect(JSON.parse(listed.stdout).snapshots.filter((s: { engine?: string }) => s.engine === "dump")).toEqual([]);
        expect(listed.stderr).toMatch(/removed .*\.partial: the unfinished dump of a snapshot whose process died/);
        expect(await fs.readdir(dir)).toEqual([]);

        const next = await cli(["snapshot", "create", "--stack", "crash", "--engine", "dump", "--snapshots-dir", dir, "--json"]);
        expect(next.code).toBe(0);
        expect(next.stderr).not.toMatch(/removed/);
        const files = (await fs.readdir(dir)).sort();
        const id = JSON.parse(next.stdout).snapshotId as string;
        expect(files).toEqual([`${id}.dump`, `${id}.json`, SEAL_KEY_FILE].sort());
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    },
  );

  describe("restore", () => {
    let snapshotId: string;
    let atSnapshot: Record<string, string>;

    beforeAll(async () => {
      const taken = await cli(["snapshot", "create", "--stack", "crash", "--json"]);
      snapshotId = JSON.parse(taken.stdout).snapshotId;
      atSnapshot = await tableDigests(url);
    });

    /** Writes since the snapshot, different each time. */
    async function change(round: number): Promise<void> {
      await withDb(url, async (c) => {
        await c.query("UPDATE items SET qty = qty + $1", [round]);
        await c.query("INSERT INTO notes VALUES ($1)", [`round ${round}`]);
      });
    }

    const OLD = ["restore:materializing", "restore:materialized", "restore:verified", "restore:closed", "restore:counted"];
    const NEW = ["restore:swapped", "restore:reopened"];
    it.each([...OLD, "restore:swapping", ...NEW].map((p, i) => [p, i + 1] as const))(
      "killed at %s: the next command leaves exactly the old or the restored data in place, open, with no unfinished copy",
      async (point, round) => {
        await change(round);
        const current = await tableDigests(url);
        expect(current).not.toEqual(atSnapshot);
        const killed = await cli(["snapshot", "restore", snapshotId, "--yes"], point);
        expect(killed.signal).toBe("SIGKILL");
        const said = killed.stderr + (await nextCommand());
        expect(await acceptsConnections(db)).toBe(true);
        const now = await tableDigests(url);
        if (OLD.includes(point)) expect(now).toEqual(current);
        else if (NEW.includes(point)) expect(now).toEqual(atSnapshot);
        else expect([current, atSnapshot]).toContainEqual(now);
        expect(await commentOf(db)).toBe(COMMENT);
        // No copy left either way: an unfinished one is dropped, and so is the replaced database once the
        // verified swap happened (the restore was to drop it), saying so.
        const leftovers = await databasesLike(`${db}_`);
        expect(leftovers.filter((d) => d.endsWith("_restoring"))).toEqual([]);
        expect(leftovers.filter((d) => d.includes("_before_restore_"))).toEqual([]);
        if (JSON.stringify(now) === JSON.stringify(atSnapshot)) {
          // Recorded as restored before the swap, so the stack can tell what the restore removed.
          expect(await restoredFrom(url)).toBe(snapshotId);
          expect(said).toMatch(new RegExp(`repaired database '${db}_before_restore_\\d+[^']*' after an interrupted pgstack replaced.*dropped it`));
        }
        // A second run of the next command has nothing left to repair.
        expect(await nextCommand()).not.toMatch(/repaired/);
      },
    );

    it("killed after the swap of a restore run with --keep-old: the replaced database is kept, open, and named with how to remove it", async () => {
      await change(100);
      const killed = await cli(["snapshot", "restore", snapshotId, "--yes", "--keep-old"], "restore:swapped");
      expect(killed.signal).toBe("SIGKILL");
      const said = killed.stderr + (await nextCommand());
      expect(await tableDigests(url)).toEqual(atSnapshot);
      const kept = (await databasesLike(`${db}_`)).filter((d) => d.includes("_before_restore_"));
      expect(kept).toHaveLength(1);
      expect(await acceptsConnections(kept[0])).toBe(true);
      expect(said).toContain(`DROP DATABASE "${kept[0]}"`);
      await adminQuery(`DROP DATABASE "${kept[0]}" WITH (FORCE)`);
    });
  });
});

describe("a pgstack killed inside a rehearsal", () => {
  let url: string;
  let dir: string;

  beforeAll(async () => {
    url = await createTestDatabase("crash_rehearse");
    dir = await migrationsDir({ "20250101000000_items": MIGRATION, "20250102000000_more": `ALTER TABLE items ADD COLUMN note text;` });
    await applyMigrations(resolveSettings({ url, dir }), { kind: "all", to: "20250101000000_items" }, memoryLogger());
  });

  it("leaves its copy with the data; the next command drops it, saying so, and leaves a live process's copy alone", async () => {
    const before = await databasesLike("pgstack_rehearsal_");
    const killed = await pgstack(["plan", "--rehearse", "--json", "--dir", dir], { DATABASE_URL: url, PGSTACK_FAILPOINT: "rehearsal:copied" });
    expect(killed.signal).toBe("SIGKILL");
    const left = (await databasesLike("pgstack_rehearsal_")).filter((d) => !before.includes(d));
    expect(left).toHaveLength(1);
    // A full copy: the data is in it.
    expect(await tableDigests(urlFor(left[0]))).toEqual(await tableDigests(url));

    // A copy whose process lives (this test's): not the repair's to drop.
    const live = `pgstack_rehearsal_live${process.pid}`;
    await adminQuery(`CREATE DATABASE "${live}"`);
    await withDb(url, (c) => recordThrowaway(c, live, "rehearsal"));

    const next = await pgstack(["snapshot", "list", "--json"], { DATABASE_URL: url });
    expect(next.code).toBe(0);
    expect(next.stderr).toMatch(new RegExp(`dropped ${left[0]}, the throwaway rehearsal copy left by pgstack process \\d+ on .+, which died before dropping it`));
    expect(next.stderr).not.toContain(live);
    const after = await databasesLike("pgstack_rehearsal_");
    expect(after).not.toContain(left[0]);
    expect(after).toContain(live);
    await adminQuery(`DROP DATABASE "${live}" WITH (FORCE)`);
  });

  it("inside `pgstack revert`: the database is untouched, and the next command drops the rehearsal's copy", async () => {
    const revertUrl = await createTestDatabase("crash_revert");
    await applyMigrations(resolveSettings({ url: revertUrl, dir }), { kind: "all" }, memoryLogger());
    const data = await tableDigests(revertUrl);
    const before = await databasesLike("pgstack_rehearsal_");
    const killed = await pgstack(["revert", "--to", "20250101000000_items", "--yes", "--dir", dir], { DATABASE_URL: revertUrl, PGSTACK_FAILPOINT: "rehearsal:copied" });
    expect(killed.signal).toBe("SIGKILL");
    const left = (await databasesLike("pgstack_rehearsal_")).filter((d) => !before.includes(d));
    expect(left).toHaveLength(1);
    expect(await tableDigests(revertUrl)).toEqual(data);

    const next = await pgstack(["status", "--dir", dir], { DATABASE_URL: revertUrl });
    expect(next.stderr).toContain(`dropped ${left[0]}, the throwaway rehearsal copy`);
    expect(await databasesLike("pgstack_rehearsal_")).not.toContain(left[0]);
    expect(await tableDigests(revertUrl)).toEqual(data);
  });
});
