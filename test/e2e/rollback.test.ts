/**
 * The safety net end to end, with the real pulumi CLI on the dev (embedded)
 * stack: data of varied types, an update with a destructive migration
 * (snapshot taken first), more writes, `npm run rollback -- --stack dev
 * --yes`, and every table back exactly as at the snapshot; the next up does
 * not re-apply the rolled-back migration until `--unpin`.
 */
import * as path from "node:path";
import { migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { withDb } from "../support/cluster";
import { tableDigests } from "../support/data";
import { changedSteps, createE2eProject, expectOk, type E2eProject, type PulumiResult } from "../support/e2e-project";

jest.setTimeout(900_000);

const STACK = "dev";
const ADD = "20990101000000_add_readings";
const DROP = "20990102000000_drop_readings_legacy_code";
let project: E2eProject;
let url: string;
let atSnapshot: Record<string, string>;
let preUpdateSnapshot: string;
const timings: string[] = [];

const ok = (result: PulumiResult, what: string) => expectOk(result, what, timings);

async function outputs(): Promise<Record<string, unknown>> {
  return JSON.parse(ok(await project.pulumi(["stack", "output", "--json", "--show-secrets", "--stack", STACK]), "stack output").stdout);
}

async function status(): Promise<Record<string, string>> {
  const s = await migrationStatus(resolveSettings({ url, dir: path.join(project.dir, "migrations") }));
  return Object.fromEntries(s.map((m) => [m.name, m.state]));
}


const addMigration = (name: string, sql: string) => project.addMigration(name, sql);


beforeAll(async () => {
  project = await createE2eProject(STACK);
});

afterAll(async () => {
  process.stderr.write(`[e2e rollback] timings:\n  ${timings.join("\n  ")}\n`);
  await project?.teardown(STACK);
});

describe("rollback of the dev stack through its pre-update snapshot", () => {
  it("deploys tables with tens of thousands of rows of varied types", async () => {
    await addMigration(
      ADD,
      [
        'CREATE TABLE "readings" ("id" BIGINT PRIMARY KEY, "label" TEXT NOT NULL, "amount" NUMERIC(14,4), "doc" JSONB,',
        '  "taken_at" TIMESTAMPTZ, "payload" BYTEA, "note" TEXT, "legacy_code" TEXT);',
        'CREATE TABLE "ledger_entries" ("id" BIGINT PRIMARY KEY, "reading_id" BIGINT REFERENCES "readings"("id"), "delta" NUMERIC, "booked_on" DATE, "meta" JSON);',
        "",
      ].join("\n"),
    );
    ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), "first up");
    url = (await outputs()).databaseUrl as string;
    await withDb(url, async (c) => {
      await c.query(`INSERT INTO readings
        SELECT g, 'label-' || g || repeat('x', g % 17), (g * 1.2345)::numeric(14,4),
               jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7), 'ok', g % 2 = 0),
               timestamptz '2025-01-01 00:00:00+00' + g * interval '1 minute 7 seconds',
               decode(md5(g::text), 'hex'), CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END, 'LC-' || (g % 100)
        FROM generate_series(1, 40000) g`);
      await c.query(`INSERT INTO ledger_entries
        SELECT g, 1 + (g * 7) % 40000, CASE WHEN g % 9 = 0 THEN NULL ELSE (g % 1000) / 3.0 END,
               date '2024-01-01' + (g % 700), json_build_object('k', g)
        FROM generate_series(1, 30000) g`);
    });
    expect((await status())[ADD]).toBe("applied");
  });

  it("takes a snapshot before applying a destructive migration", async () => {
    atSnapshot = await tableDigests(url);
    expect(atSnapshot["public.readings"]).toMatch(/^40000:/);
    await addMigration(DROP, '-- AlterTable\nALTER TABLE "readings" DROP COLUMN "legacy_code";\n');
    ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), "up (drop column)");
    const out = await outputs();
    expect(out.latestSnapshot).toMatch(new RegExp(`^snap_dev_${ADD.slice(0, 14)}`));
    preUpdateSnapshot = out.latestSnapshot as string;
    expect(out.appliedMigrations).toContain(DROP);
    const cols = await withDb(url, (c) => c.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'readings' AND column_name = 'legacy_code'"));
    expect(cols.rows).toEqual([]);
    // The application goes on writing.
    await withDb(url, async (c) => {
      await c.query("INSERT INTO readings (id, label, amount) SELECT g, 'late-' || g, g FROM generate_series(40001, 45000) g");
      await c.query("DELETE FROM ledger_entries WHERE id <= 100");
    });
  });

  it("refuses an unknown snapshot id in one sentence and changes nothing", async () => {
    const before = await tableDigests(url);
    const r = await project.script("rollback", ["--stack", STACK, "--snapshot", "snap_dev_no_such_snapshot", "--yes"]);
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split("\n").filter((l) => l.startsWith("pgstack:"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/snap_dev_no_such_snapshot/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(await tableDigests(url)).toEqual(before);
  });

  it("reports what it discards, restores every table exactly as at the snapshot, and pins the chain", async () => {
    const r = ok(await project.script("rollback", ["--stack", STACK, "--yes"]), "npm run rollback --yes");
    const printed = r.stdout + r.stderr;
    expect(printed).not.toContain(decodeURIComponent(new URL(url).password));
    // The report comes before the restore, and names the later rows and the rolled-back migration.
    const report = printed.indexOf("Discarded by the restore");
    expect(report).toBeGreaterThanOrEqual(0);
    expect(printed.indexOf("restored from")).toBeGreaterThan(report);
    expect(printed).toMatch(/readings\s+45000\s+40000\s+\+5000/);
    expect(printed).toMatch(/ledger_entries\s+29900\s+30000\s+-100/);
    expect(printed).toContain(`migrations rolled back: ${DROP}`);

    expect(await tableDigests(url)).toEqual(atSnapshot);
    const out = await outputs();
    expect(out.pinnedMigration).toBe(ADD);
    // The update after the restore applies nothing, so it takes no new snapshot: the one restored stays the latest.
    expect(out.latestSnapshot).toBe(preUpdateSnapshot);
    expect(printed).toContain(`restored from ${preUpdateSnapshot}`);
    expect(out.appliedMigrations).not.toContain(DROP);
    expect((out.appliedMigrations as string[]).at(-1)).toBe(ADD);
    expect((await status())[DROP]).toBe("pending");
  });

  it("a further up leaves the restored database as it is", async () => {
    const preview = ok(await project.pulumi(["preview", "--json", "--stack", STACK]), "preview after rollback");
    expect(changedSteps(preview.stdout)).toEqual([]);
    ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), "up after rollback");
    expect(await tableDigests(url)).toEqual(atSnapshot);
    expect((await status())[DROP]).toBe("pending");
  });

  it("--unpin lets the next up apply the later migrations again", async () => {
    ok(await project.script("rollback", ["--stack", STACK, "--unpin"]), "npm run rollback --unpin");
    const steps = changedSteps(ok(await project.pulumi(["preview", "--json", "--stack", STACK]), "preview after unpin").stdout);
    expect(steps.filter((s) => s.type === "command:local:Command" && s.op === "create").map((s) => s.name)).toEqual([`migrations-${DROP}`]);
  });
});
