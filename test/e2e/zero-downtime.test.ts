/**
 * Zero-downtime schema change, end to end with real processes: application v1
 * (column `name`) serves behind a local switch under a bounded load of reads
 * and writes while one `pulumi up` renames the column to `full_name` and a
 * rollout command resource starts v2 (column `full_name`), waits for its
 * health check and flips the switch.
 *
 * - control: the rename as ONE plain migration, the rollout after it: v1 fails
 *   from the rename until the flip (asserted, so the harness sees failures).
 * - split-unphased: the split migrations with the rollout after all of them:
 *   the contract drops `name` under v1, which fails until the flip.
 * - split: the same rename through `pgstack split` (expand, backfill, contract)
 *   in a program with `contractAfter: (expanded) => [rollout]`: expand, then the
 *   rollout, then contract, and not one request fails; every acknowledged write
 *   (v1's and v2's) and every row that existed before is read back through v2.
 *
 * The database is an external one on the test cluster: its pre-update
 * snapshot, taken while the application is connected, is a pg_dump that ends
 * no session.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { freePort } from "../../infra/core/cluster/embedded";
import { createTestDatabase, withDb } from "../support/cluster";
import { createE2eProject, expectOk, type E2eProject, type PulumiResult } from "../support/e2e-project";
import { describeLoad, Processes, request, startLoad, waitHealthy, ZDT_DIR, type LoadResult } from "../support/zero-downtime";

jest.setTimeout(600_000);

const INIT = "20250101000000_init";
const RENAME = "20250102000000_rename_name";
const PLAIN_RENAME = '-- AlterTable\nALTER TABLE "person" RENAME COLUMN "name" TO "full_name";\n';
const SEEDED = 400;
/** The load: requests a second (the claim is ≥ 100; the achieved rate is asserted). */
const RATE = 150;

/**
 * The program: PgStack plus the rollout of v2, wired by `zdt:rollout`:
 * `none` (v1's first deploy), `after` (the rollout depends on `db.ready`: every
 * migration before it) or `phased` (`contractAfter`: expand, rollout, contract).
 */
const PROGRAM = `import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { PgStack } from "./package";

const zdt = new pulumi.Config("zdt");
const mode = zdt.require("rollout");

// v2 reaches the database through the component's URL (a secret, in the command's environment only).
const rollout = (dependsOn: pulumi.Input<pulumi.Input<pulumi.Resource>[]>, databaseUrl: pulumi.Input<string>) =>
  new command.local.Command("rollout-v2", {
    create: \`node \${JSON.stringify(zdt.require("rolloutScript"))}\`,
    delete: "kill $(cat \\"$RUN_DIR/v2.pid\\") 2>/dev/null; rm -f \\"$RUN_DIR/v2.pid\\"",
    environment: { DATABASE_URL: databaseUrl, V2_PORT: zdt.require("v2Port"), SWITCH_CONTROL_PORT: zdt.require("switchControlPort"), RUN_DIR: zdt.require("runDir") },
    logging: "stdoutAndStderr",
  }, { dependsOn });

let db: PgStack;
if (mode === "phased") {
  db = new PgStack("db", { contractAfter: (expanded, self) => [rollout(expanded, self.databaseUrl)] });
} else {
  db = new PgStack("db");
  if (mode === "after") rollout(db.ready, db.databaseUrl);
}
export const { databaseUrl, appliedMigrations, latestSnapshot, rollbackCommand, pinnedMigration } = db;
`;

let project: E2eProject;
const processes = new Processes();
const report: string[] = [];

interface Scenario {
  stack: string;
  url: string;
  dir: string;
  runDir: string;
  switchPort: number;
  switchControlPort: number;
  v1Port: number;
  v2Port: number;
}

const ok = (result: PulumiResult, what: string) => {
  report.push(`${what}: ${(result.ms / 1000).toFixed(1)} s`);
  return expectOk(result, what);
};

async function config(stack: string, key: string, value: string, secret = false): Promise<void> {
  ok(await project.pulumi(["config", "set", ...(secret ? ["--secret"] : []), key, value, "--stack", stack]), `config set ${key}`);
}

async function writeMigration(dir: string, name: string, sql: string): Promise<void> {
  await fs.mkdir(path.join(dir, name), { recursive: true });
  await fs.writeFile(path.join(dir, name, "migration.sql"), sql);
}

/**
 * A stack on its own external database, deployed with v1's schema and seeded
 * rows; v1 and the switch (pointing at v1) running and healthy.
 */
async function prepare(stack: string): Promise<Scenario> {
  const url = await createTestDatabase(`zdt_${stack}`);
  const dir = path.join(project.dir, "zdt-migrations", stack);
  const runDir = path.join(project.root, "run", stack);
  await fs.mkdir(runDir, { recursive: true });
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, "migration_lock.toml"), 'provider = "postgresql"\n');
  await writeMigration(
    dir,
    INIT,
    '-- CreateTable\nCREATE TABLE "person" (\n    "id" SERIAL NOT NULL,\n    "name" TEXT NOT NULL,\n\n    CONSTRAINT "person_pkey" PRIMARY KEY ("id")\n);\n',
  );
  const [switchPort, switchControlPort, v1Port, v2Port] = [await freePort(), await freePort(), await freePort(), await freePort()];
  await project.pulumi(["config", "rm", "--path", "pgstack:embedded", "--stack", stack]);
  await config(stack, "pgstack:engine", "external");
  await config(stack, "pgstack:seed", "false");
  await config(stack, "pgstack:migrationsDir", path.relative(project.dir, dir));
  await config(stack, "pgstack:externalUrl", url, true);
  await config(stack, "zdt:rollout", "none");
  await config(stack, "zdt:rolloutScript", path.join(ZDT_DIR, "rollout.js"));
  await config(stack, "zdt:v2Port", String(v2Port));
  await config(stack, "zdt:switchControlPort", String(switchControlPort));
  await config(stack, "zdt:runDir", runDir);
  // v1's schema through the stack's own first update, as v1 was deployed (pgstack splits the chain around the
  // rollout only on later updates: before a stack's first one it takes no application to be running).
  ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", stack]), `${stack}: up (v1's schema)`);
  // Rows from before the change: the backfill's work, and part of what must be read back.
  await withDb(url, (c) => c.query(`INSERT INTO "person" ("name") SELECT 'seed-' || g FROM generate_series(1, ${SEEDED}) g`));

  processes.adopt(path.join(runDir, "v2.pid"));
  processes.start("app.js", { DATABASE_URL: url, PORT: String(v1Port), COLUMN: "name", VERSION: "v1" }, path.join(runDir, "v1.log"));
  processes.start("switch.js", { PORT: String(switchPort), CONTROL_PORT: String(switchControlPort), TARGET_PORT: String(v1Port) }, path.join(runDir, "switch.log"));
  await waitHealthy(v1Port);
  expect((await waitHealthy(switchPort)).version).toBe("v1");
  return { stack, url, dir, runDir, switchPort, switchControlPort, v1Port, v2Port };
}

/** Runs `up` under load: the load starts before it and stops after it (and after the switch serves v2). */
async function upUnderLoad(s: Scenario, what: string): Promise<{ up: PulumiResult; load: LoadResult }> {
  const load = startLoad(s.switchPort, { prefix: s.stack, rate: RATE });
  await new Promise((r) => setTimeout(r, 2_000));
  const before = load.completed();
  const up = await project.pulumi(["up", "--yes", "--skip-preview", "--stack", s.stack]);
  report.push(`${what}: ${(up.ms / 1000).toFixed(1)} s`);
  // What the log should show: the snapshot's engine (a pg_dump ends no session), the backfill's batches, the phases.
  const notable = (up.stdout + up.stderr).split("\n").filter((l) => /pg_dump|template copy|row\(s\) copied \(100%|^\s*expand: /.test(l));
  for (const line of new Set(notable.map((l) => l.trim()))) report.push(`  ${line}`);
  await new Promise((r) => setTimeout(r, 2_000));
  const result = await load.stop();
  report.push(describeLoad(s.stack, result));
  // The load ran before, through and after the up.
  expect(before).toBeGreaterThan(0);
  return { up, load: result };
}

async function columns(url: string): Promise<string[]> {
  return withDb(url, async (c) => (await c.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'person' ORDER BY ordinal_position`)).rows.map((r) => r.column_name as string));
}

/** `pgstack split` on the rename: three folders where it stood, contract last. */
async function splitRename(s: Scenario): Promise<void> {
  await writeMigration(s.dir, RENAME, PLAIN_RENAME);
  // Batches of 100: the backfill of the seeded rows is several transactions while v1 writes.
  const split = ok(await project.cli(["split", RENAME, "--dir", path.relative(project.dir, s.dir), "--batch", "100"], { DATABASE_URL: s.url }), `${s.stack}: pgstack split`);
  report.push(`${s.stack}: pgstack split: ${split.stdout.trim()}`);
  const folders = (await fs.readdir(s.dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  expect(folders).toEqual([INIT, `${RENAME}_1_expand`, `${RENAME}_2_backfill`, `${RENAME}_3_contract`]);
}

/** When each migration started and finished, by name (the ledger, Prisma's _prisma_migrations). */
async function ledgerTimes(url: string): Promise<Record<string, { started: Date; finished: Date }>> {
  const { rows } = await withDb(url, (c) => c.query(`SELECT migration_name, started_at, finished_at FROM "_prisma_migrations" WHERE finished_at IS NOT NULL`));
  return Object.fromEntries(rows.map((r) => [r.migration_name as string, { started: r.started_at as Date, finished: r.finished_at as Date }]));
}

async function flippedAt(s: Scenario): Promise<Date> {
  const { flippedAt: at } = JSON.parse((await request(s.switchControlPort, "GET", "/target")).body) as { flippedAt: string | null };
  expect(at).not.toBeNull();
  return new Date(at!);
}

beforeAll(async () => {
  project = await createE2eProject("control");
  for (const stack of ["split-unphased", "split"]) ok(await project.pulumi(["stack", "init", stack]), `stack init ${stack}`);
  await fs.writeFile(path.join(project.dir, "infra", "index.ts"), PROGRAM);
});

afterAll(async () => {
  await processes.stopAll();
  process.stderr.write(`[zdt] ${report.join("\n[zdt] ")}\n`);
  await project?.cleanup();
});

describe("a column rename while the application serves under load", () => {
  it("control: one plain RENAME migration, then the rollout: the running version fails until the switch flips", async () => {
    const s = await prepare("control");
    await writeMigration(s.dir, RENAME, PLAIN_RENAME);
    await config(s.stack, "zdt:rollout", "after");
    const { up, load } = await upUnderLoad(s, "control: up (rename, rollout)");
    expectOk(up, "control: up (rename, rollout)");

    expect(load.rate).toBeGreaterThanOrEqual(100);
    expect((await request(s.switchPort, "GET", "/health")).version).toBe("v2");
    // The harness sees what a breaking migration does to the running version.
    expect(load.failures.length).toBeGreaterThan(0);
    // ...and only that: v1's queries on the renamed column (nothing else in the harness or the deploy fails a request).
    expect(load.failures.filter((f) => !(f.version === "v1" && /column "name"/.test(f.error)))).toEqual([]);
  });

  it("the split migrations without contractAfter: the contract runs before the rollout and the running version fails", async () => {
    const s = await prepare("split-unphased");
    await splitRename(s);
    await config(s.stack, "zdt:rollout", "after");
    const { up, load } = await upUnderLoad(s, "split-unphased: up (expand, backfill, contract, rollout)");
    expectOk(up, "split-unphased: up");
    expect(load.rate).toBeGreaterThanOrEqual(100);
    expect((await request(s.switchPort, "GET", "/health")).version).toBe("v2");
    // The split alone is not enough: v1 runs on after its column was dropped. The order is what the test below checks.
    expect(load.failures.length).toBeGreaterThan(0);
    expect(load.failures.filter((f) => !(f.version === "v1" && /column "name"/.test(f.error)))).toEqual([]);
  });

  it("split: expand, rollout, contract in one up: zero failed requests, every acknowledged write readable through v2", async () => {
    const s = await prepare("split");
    await splitRename(s);
    await config(s.stack, "zdt:rollout", "phased");

    const { up, load } = await upUnderLoad(s, "split: up (expand, rollout, contract)");
    expectOk(up, "split: up (expand, rollout, contract)");

    expect(load.rate).toBeGreaterThanOrEqual(100);
    expect(load.failures).toEqual([]);
    // Both versions served writes: the load spanned the rollout.
    const versions = new Set(load.acked.map((a) => a.version));
    expect([...versions].sort()).toEqual(["v1", "v2"]);
    // v2 serves, and the contract ran: the old column is gone.
    expect((await request(s.switchPort, "GET", "/health")).version).toBe("v2");
    expect(await columns(s.url)).toEqual(["id", "full_name"]);
    // In that order: the backfill finished before the switch flipped to v2, the contract started after.
    const [times, flip] = [await ledgerTimes(s.url), await flippedAt(s)];
    expect(times[`${RENAME}_2_backfill`].finished.getTime()).toBeLessThan(flip.getTime());
    expect(times[`${RENAME}_3_contract`].started.getTime()).toBeGreaterThan(flip.getTime());

    // Every value that existed before or was acknowledged since, read back through v2: the same set.
    const all = await request(s.switchPort, "GET", "/people");
    expect(all.status).toBe(200);
    const read = (JSON.parse(all.body) as string[]).sort();
    const expected = [...Array.from({ length: SEEDED }, (_, i) => `seed-${i + 1}`), ...load.acked.map((a) => a.value)].sort();
    const [readSet, expectedSet] = [new Set(read), new Set(expected)];
    expect(read.filter((v) => !expectedSet.has(v))).toEqual([]);
    expect(expected.filter((v) => !readSet.has(v))).toEqual([]);
    expect(read).toEqual(expected);
  });
});
