/**
 * Issue 11 with the real pulumi CLI on the dev (embedded) stack:
 *  - defect 6: a restore done outside `npm run rollback` (by hand, or one
 *    killed right after its swap) leaves the stack believing in migrations
 *    the database no longer has; the next `pulumi up` must re-apply exactly
 *    those (after a snapshot), repair what the killed restore left, and then
 *    change nothing;
 *  - recovery on the stack's next update: a snapshot killed while the
 *    database was closed is repaired by a `pulumi up` with nothing to apply;
 *  - an application writing every 20 ms during `npm run rollback -- --yes`
 *    loses no acknowledged write that the report does not list.
 */
import * as path from "node:path";
import { migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { withDb } from "../support/cluster";
import { acceptsConnectionsAt, databasesAt } from "../support/data";
import { changedSteps, createE2eProject, expectOk, type E2eProject, type PulumiResult } from "../support/e2e-project";
import { expectNoUnreportedLoss, startWriter } from "../support/writer";

jest.setTimeout(900_000);

const STACK = "dev";
const ITEMS = "20990101000000_items";
const EXTRA = "20990102000000_extra";
let project: E2eProject;
let url: string;
let beforeExtra: string;
/** The application's rows as the snapshot before EXTRA holds them. */
let atSnapshot: string;
const timings: string[] = [];

const ok = (result: PulumiResult, what: string) => expectOk(result, what, timings);
const up = async (what: string) => ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), what);
const preview = async (what: string) => changedSteps(ok(await project.pulumi(["preview", "--json", "--stack", STACK]), what).stdout);
const cli = (args: string[], failpoint?: string) => project.cli(args, { DATABASE_URL: url, ...(failpoint ? { PGSTACK_FAILPOINT: failpoint } : {}) });

async function status(): Promise<Record<string, string>> {
  const s = await migrationStatus(resolveSettings({ url, dir: path.join(project.dir, "migrations") }));
  return Object.fromEntries(s.map((m) => [m.name, m.state]));
}

/** Digest of the application's rows in the columns the snapshot before EXTRA has. */
async function itemsDigest(): Promise<string> {
  const { rows } = await withDb(url, (c) => c.query("SELECT count(*) || ':' || md5(coalesce(string_agg(id || '=' || name, '|' ORDER BY id), '')) AS d FROM items"));
  return rows[0].d as string;
}

const dbName = () => new URL(url).pathname.slice(1);

beforeAll(async () => {
  project = await createE2eProject(STACK);
});

afterAll(async () => {
  process.stderr.write(`[e2e follows-database] timings:\n  ${timings.join("\n  ")}\n`);
  await project?.teardown(STACK);
});

describe("the stack follows the database after a restore it did not make", () => {
  it("deploys two migrations, a snapshot taken before the second", async () => {
    await project.addMigration(ITEMS, "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);\nCREATE TABLE ticks (id bigserial PRIMARY KEY, tag text NOT NULL UNIQUE);\n");
    await up("first up");
    url = JSON.parse(ok(await project.pulumi(["stack", "output", "--json", "--show-secrets", "--stack", STACK]), "outputs").stdout).databaseUrl;
    await withDb(url, (c) => c.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 2000) g"));
    await project.addMigration(EXTRA, "CREATE TABLE extra (id int PRIMARY KEY);\nALTER TABLE items ADD COLUMN qty int NOT NULL DEFAULT 1;\n");
    await up("up (extra)");
    beforeExtra = JSON.parse(ok(await project.pulumi(["stack", "output", "--json", "--stack", STACK]), "outputs").stdout).latestSnapshot;
    expect(beforeExtra).toMatch(/^snap_dev_/);
    expect((await status())[EXTRA]).toBe("applied");
  });

  it("after `pgstack snapshot restore` by hand, the preview shows exactly the removed migration re-applied after a snapshot, and up applies it", async () => {
    ok(await cli(["snapshot", "restore", beforeExtra, "--yes"]), "restore by hand");
    expect((await status())[EXTRA]).toBe("pending");
    atSnapshot = await itemsDigest();

    const steps = await preview("preview after the restore");
    // The removed migration runs again, after a new snapshot; every other step is unchanged.
    expect(steps.filter((s) => s.name.startsWith("migrations-")).map((s) => s.name)).toEqual([`migrations-${EXTRA}`]);
    expect(steps.map((s) => s.name).sort()).toEqual([`migrations-${EXTRA}`, "pre-update-copy", "verify-run"]);

    const r = await up("up after the restore");
    expect(r.stdout + r.stderr).toContain(`its ledger lacks ${EXTRA}`);
    expect((await status())[EXTRA]).toBe("applied");
    const cols = await withDb(url, (c) => c.query("SELECT 1 FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'qty'"));
    expect(cols.rowCount).toBe(1);

    // Then the stack and the database agree: nothing left to do.
    expect(await preview("preview after re-applying")).toEqual([]);
  });

  it.each([
    ["snapshot:copying", "before"],
    ["restore:materializing", "before"],
    ["restore:counted", "before"],
    ["restore:swapping", "either"],
    ["restore:reopened", "after"],
  ] as const)("killed at %s, then `pulumi up`: the database is open, holds exactly the data %s, and the stack agrees with it", async (point, expected) => {
    await withDb(url, (c) => c.query("UPDATE items SET name = $1 || id WHERE id % 5 = 0", [`${point} `]));
    const before = await itemsDigest();
    const killed = point.startsWith("snapshot:") ? await cli(["snapshot", "create", "--stack", STACK], point) : await cli(["snapshot", "restore", beforeExtra, "--yes"], point);
    expect(killed.code).not.toBe(0);

    await up(`up after a kill at ${point}`);
    expect(await acceptsConnectionsAt(url, dbName())).toBe(true);
    expect((await databasesAt(url, `${dbName()}_`)).filter((d) => /_before_restore_|_restoring$/.test(d))).toEqual([]);
    const now = await itemsDigest();
    if (expected === "before") expect(now).toBe(before);
    else if (expected === "after") expect(now).toBe(atSnapshot);
    else expect([before, atSnapshot]).toContain(now);
    // The stack and the database agree: every migration applied, nothing left for an update to do.
    expect([...new Set(Object.values(await status()))]).toEqual(["applied"]);
    expect(await preview(`preview after a kill at ${point}`)).toEqual([]);
  });

  it("a restore killed right after its swap: the next `pulumi up` repairs, re-applies the removed migration, and leaves no copy", async () => {
    await withDb(url, (c) => c.query("UPDATE items SET name = name || '!' WHERE id % 3 = 0"));
    const changed = await itemsDigest();
    const killed = await cli(["snapshot", "restore", beforeExtra, "--yes"], "restore:swapped");
    expect(killed.code).not.toBe(0);
    const restored = await itemsDigest();
    expect(restored).not.toEqual(changed);
    expect((await status())[EXTRA]).toBe("pending");

    // Its guardian repairs at once (the next `up` would, without one): the replaced database is dropped.
    expect(killed.stderr).toMatch(/repaired database '.*_before_restore_.*dropped it/s);
    const r = await up("up after a killed restore");
    expect(await acceptsConnectionsAt(url, dbName())).toBe(true);
    expect((await databasesAt(url, `${dbName()}_`)).filter((d) => /_before_restore_|_restoring$/.test(d))).toEqual([]);
    // Exactly the restored data, plus the column the re-applied migration added with its default.
    expect(await itemsDigest()).toBe(restored);
    const qty = await withDb(url, (c) => c.query("SELECT count(*)::int AS n FROM items WHERE qty = 1"));
    expect(qty.rows[0].n).toBe(2000);
    expect((await status())[EXTRA]).toBe("applied");
  });

  it("a snapshot killed with the database closed, its guardian lost too, is repaired by a `pulumi up` that has nothing to apply", async () => {
    expect(await preview("preview before the killed snapshot")).toEqual([]);
    const killed = await cli(["snapshot", "create", "--stack", STACK], "snapshot:closed,guardian:unavailable");
    expect(killed.code).not.toBe(0);
    expect(await acceptsConnectionsAt(url, dbName())).toBe(false);
    const r = await up("up with nothing pending");
    expect(r.stdout + r.stderr).toMatch(new RegExp(`repaired database '${dbName()}' after an interrupted pgstack snapshot`));
    expect(await acceptsConnectionsAt(url, dbName())).toBe(true);
  });
});

describe("npm run rollback -- --yes with an application writing every 20 ms", () => {
  it("loses no acknowledged write that its report does not list", async () => {
    const writer = startWriter(url, "ticks");
    await new Promise((r) => setTimeout(r, 1500));
    const rollback = await project.script("rollback", ["--stack", STACK, "--yes"]);
    await new Promise((r) => setTimeout(r, 500));
    const written = await writer.stop();
    ok(rollback, "npm run rollback --yes");
    const row = (rollback.stdout + rollback.stderr).match(/^\s+public\.ticks\s+(\d+)\s+(\d+)\s+(\d+)\s*$/m);
    await expectNoUnreportedLoss(url, "ticks", written, row ? Number(row[1]) : 0);
  });
});
