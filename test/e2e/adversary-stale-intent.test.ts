/**
 * Adversarial (issue 22 follow-up, test only): the rollback intent a
 * `pgstack revert --yes` by hand records in the database's comment outlives
 * the database state it describes. The revert itself says "`pgstack apply`
 * would run them again"; after `pgstack apply --all` re-applies the reverted
 * migration by hand, the database is back at the head, yet the intent still
 * says "rolled back to K5, removed K6". Neither a plain `pulumi up` nor
 * `npm run rollback -- --yes` may then act on the stale intent: the up
 * should succeed with outputs equal to the ledger, and the rollback must not
 * pin the chain below a migration the ledger holds applied.
 */
import * as path from "node:path";
import { migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
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

async function applied(): Promise<string[]> {
  const s = await migrationStatus(resolveSettings({ url, dir: path.join(project.dir, "migrations") }));
  return s.filter((m) => m.state === "applied").map((m) => m.name);
}

async function appliedOurs(): Promise<string[]> {
  return (await applied()).filter((n) => n.startsWith("2099"));
}

beforeAll(async () => {
  project = await createE2eProject(STACK);
  ok(await project.pulumi(["config", "set", "pgstack:seed", "false", "--stack", STACK]), "config set seed");
});

afterAll(async () => {
  process.stderr.write(`[e2e adversary-stale-intent] timings:\n  ${timings.join("\n  ")}\n`);
  await project?.teardown(STACK);
});

describe("pgstack revert --yes by hand, then pgstack apply --all by hand", () => {
  it("deploys K5 then K6", async () => {
    await project.addMigration(K5, "CREATE TABLE k5_t (id int PRIMARY KEY, v text);\n");
    ok(await up(), "up (k5)");
    url = (await outputs()).databaseUrl as string;
    await project.addMigration(K6, "CREATE TABLE k6_t (id int PRIMARY KEY);\n");
    ok(await up(), "up (k6)");
    expect(await appliedOurs()).toEqual([K5, K6]);
  });

  it("reverts K6 by hand, then re-applies it by hand as the revert's own message says one could", async () => {
    const dir = path.join(project.dir, "migrations");
    ok(await project.cli(["revert", "--to", K5, "--yes", "--dir", dir], { DATABASE_URL: url }), "pgstack revert --yes");
    expect(await appliedOurs()).toEqual([K5]);
    ok(await project.cli(["apply", "--all", "--dir", dir], { DATABASE_URL: url }), "pgstack apply --all");
    expect(await appliedOurs()).toEqual([K5, K6]);
  });

  it("a plain pulumi up then succeeds and its outputs equal the ledger (the intent is stale)", async () => {
    const r = await up();
    process.stderr.write(`[adversary] up after re-apply: code ${r.code}\n${r.stdout.slice(-1500)}\n${r.stderr.slice(-1500)}\n`);
    const rb = await project.script("rollback", ["--stack", STACK, "--yes"]);
    process.stderr.write(`[adversary] rollback --yes after re-apply: code ${rb.code}\n${rb.stdout.slice(-1500)}\n${rb.stderr.slice(-2500)}\n`);
    const out = await outputs();
    process.stderr.write(`[adversary] outputs: applied=${JSON.stringify(out.appliedMigrations)} pinned=${String(out.pinnedMigration)}; ledger=${JSON.stringify(await applied())}\n`);
    expect(r.code).toBe(0);
    expect(out.appliedMigrations).toEqual(await applied());
    // A pin below an applied migration: the stack disagrees with the database.
    if (out.pinnedMigration !== undefined && out.pinnedMigration !== null) expect(await applied()).not.toContain(K6);
  });
});
