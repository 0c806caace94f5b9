/**
 * Issue 22, item 2, end to end on the dev stack with the real pulumi CLI: the
 * last update applied K6, the one before it K5. A rollback killed right after
 * its swap, and a `pgstack revert --yes` run by hand as the README documents,
 * leave the database rolled back and the stack unpinned. The next plain
 * `pulumi up` applies nothing (it refuses, naming the command that finishes
 * the rollback); that command pins the chain at K5 and undoes nothing more,
 * and the stack's outputs then equal the ledger.
 */
import * as path from "node:path";
import { migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { withDb } from "../support/cluster";
import { tableDigests } from "../support/data";
import { createE2eProject, expectOk, type E2eProject, type PulumiResult } from "../support/e2e-project";

jest.setTimeout(900_000);

const STACK = "dev";
const K5 = "20990101000000_k5";
const K6 = "20990102000000_k6";
let project: E2eProject;
let url: string;
const timings: string[] = [];

const ok = (result: PulumiResult, what: string) => expectOk(result, what, timings);
const up = () => project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]);

async function outputs(): Promise<Record<string, unknown>> {
  return JSON.parse(ok(await project.pulumi(["stack", "output", "--json", "--show-secrets", "--stack", STACK]), "stack output").stdout);
}

async function status(): Promise<Record<string, string>> {
  const s = await migrationStatus(resolveSettings({ url, dir: path.join(project.dir, "migrations") }));
  return Object.fromEntries(s.map((m) => [m.name, m.state]));
}

/** The stack's outputs agree with the database: appliedMigrations is exactly what the ledger holds applied, and the pin is K5. */
async function expectPinnedAtK5(): Promise<void> {
  const out = await outputs();
  const applied = Object.entries(await status()).filter(([, state]) => state === "applied").map(([name]) => name);
  expect(out.appliedMigrations).toEqual(applied);
  expect(out.pinnedMigration).toBe(K5);
  expect(applied).toContain(K5);
  expect(applied).not.toContain(K6);
}

/** A plain `pulumi up` after the unfinished rollback: refused, with the finishing command; K6 not applied again. */
async function expectUpRefused(kept: Record<string, string>): Promise<void> {
  const r = await up();
  timings.push(`refused up: ${(r.ms / 1000).toFixed(1)} s`);
  expect(r.code).not.toBe(0);
  const printed = r.stdout + r.stderr;
  // Said once as its own error, not only inside the SDK's wrapping of the thrown one.
  expect(printed).toMatch(new RegExp(`\\n\\s*error: The database of stack '${STACK}' was rolled back to ${K5} \\(`));
  expect(printed).toContain(`finish that rollback with \`npm run rollback -- --stack ${STACK} --yes\``);
  expect((await status())[K6]).toBe("pending");
  expect(await tableDigests(url)).toEqual(kept);
}

beforeAll(async () => {
  project = await createE2eProject(STACK);
  // Not about the seed: the stack's migrations alone.
  ok(await project.pulumi(["config", "set", "pgstack:seed", "false", "--stack", STACK]), "config set seed");
});

afterAll(async () => {
  process.stderr.write(`[e2e rollback-intent] timings:\n  ${timings.join("\n  ")}\n`);
  await project?.teardown(STACK);
});

describe("an interrupted rollback, then a plain pulumi up, then the retry", () => {
  let beforeK6: Record<string, string>;

  it("deploys K5, then K6, with writes after each", async () => {
    await project.addMigration(K5, "CREATE TABLE k5_t (id int PRIMARY KEY, v text);\n");
    ok(await up(), "up (k5)");
    url = (await outputs()).databaseUrl as string;
    await withDb(url, (c) => c.query("INSERT INTO k5_t SELECT g, 'k5 ' || g FROM generate_series(1, 500) g"));
    beforeK6 = await tableDigests(url);
    await project.addMigration(K6, "CREATE TABLE k6_t (id int PRIMARY KEY);\n");
    ok(await up(), "up (k6)");
    await withDb(url, (c) => c.query("INSERT INTO k6_t SELECT generate_series(1, 20)"));
    expect((await status())[K6]).toBe("applied");
  });

  it("a rollback killed right after its swap: the next pulumi up applies nothing and names the command that finishes it", async () => {
    const killed = await project.script("rollback", ["--stack", STACK, "--yes"], { PGSTACK_FAILPOINT: "restore:swapped" });
    expect(killed.code).not.toBe(0);
    expect(await tableDigests(url)).toEqual(beforeK6);
    await expectUpRefused(beforeK6);
  });

  it("the retry pins the chain at K5 and undoes nothing more; the outputs equal the ledger", async () => {
    const r = ok(await project.script("rollback", ["--stack", STACK, "--yes"]), "retry");
    expect(r.stderr).toContain(`the database was already rolled back to ${K5}`);
    expect(r.stderr).not.toContain("This rollback undoes");
    expect(await tableDigests(url)).toEqual(beforeK6);
    await expectPinnedAtK5();
    ok(await up(), "up after the retry");
    await expectPinnedAtK5();
  });
});

describe("pgstack revert --yes by hand (the README's manual path), then a plain pulumi up, then npm run rollback", () => {
  let kept: Record<string, string>;

  it("re-applies K6 after --unpin, then reverts it by hand", async () => {
    ok(await project.script("rollback", ["--stack", STACK, "--unpin"]), "unpin");
    ok(await up(), "up (k6 again)");
    expect((await status())[K6]).toBe("applied");
    expect((await outputs()).appliedMigrations).toContain(K6);
    await withDb(url, (c) => c.query("INSERT INTO k5_t SELECT g, 'late ' || g FROM generate_series(501, 560) g"));
    ok(await project.cli(["revert", "--to", K5, "--yes"], { DATABASE_URL: url }), "pgstack revert --yes");
    expect((await status())[K6]).toBe("pending");
    kept = await tableDigests(url);
  });

  it("the next pulumi up applies nothing and names the command that finishes it", async () => {
    await expectUpRefused(kept);
  });

  it("npm run rollback -- --yes pins at K5 and reverts nothing more; the outputs equal the ledger", async () => {
    const r = ok(await project.script("rollback", ["--stack", STACK, "--yes"]), "rollback after the manual revert");
    expect(r.stderr).toContain(`the database was already rolled back to ${K5} (a revert of ${K6}`);
    expect(await tableDigests(url)).toEqual(kept);
    await expectPinnedAtK5();
  });
});
