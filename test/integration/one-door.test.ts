/**
 * The subcommands the command resources run (`pgstack identity`, `seed`,
 * `snapshot create|name`), as those resources run them: one JSON line on
 * stdout for the component to parse, or one sentence and a non-zero exit.
 */
import { databaseIdentity } from "../../infra/core/snapshot/identity";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { pgstack } from "../support/cli";
import { createTestDatabase, testCluster } from "../support/cluster";
import { acceptsConnections, databasesLike, tableDigests } from "../support/data";
import { migrationsDir } from "../support/fixtures";
import { expectOneSentence } from "../support/sentence";

jest.setTimeout(120_000);

const adminPassword = () => new URL(testCluster().adminUrl).password;

describe("pgstack identity", () => {
  it("prints the database's identity, prefixed with the engine, as one JSON line", async () => {
    const url = await createTestDatabase("door_identity");
    const result = await pgstack(["identity", "--engine", "external", "--json"], { DATABASE_URL: url });
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split("\n")).toHaveLength(1);
    const id = await databaseIdentity(url);
    expect(JSON.parse(result.stdout)).toEqual({ ...id, identity: `external:${id.identity}` });
    expect(result.stdout + result.stderr).not.toContain(adminPassword());
  });

  it("without a database URL: exit 2, one sentence", async () => {
    const result = await pgstack(["identity", "--engine", "docker"], { DATABASE_URL: undefined });
    expect(result.code).toBe(2);
    expectOneSentence(result.stderr, /^pgstack: No database URL: pass --url or set DATABASE_URL\.$/);
  });
});

describe("pgstack seed", () => {
  it.each([
    [{ PGSTACK_STACK: "prod", PGSTACK_ENV: "dev" }],
    [{ PGSTACK_STACK: "acme/shop/production", PGSTACK_ENV: undefined }],
    [{ PGSTACK_STACK: "dev", PGSTACK_ENV: "prod" }],
  ])("is refused on prod before the script runs (%j): exit 1, one sentence", async (env) => {
    // The URL is never reached: the refusal comes first.
    const result = await pgstack(["seed", "prisma/seed.ts"], { DATABASE_URL: "postgresql://nobody@127.0.0.1:1/none", ...env });
    expect(result.code).toBe(1);
    expectOneSentence(result.stderr, /^pgstack: The seed never runs on prod: it writes dev and test data; set pgstack:seed to false for this stack\.$/);
    expect(result.stdout).toBe("");
  });

  it("a failing seed script: exit 1, one sentence naming it", async () => {
    const result = await pgstack(["seed", "test/no-such-seed.ts"], { DATABASE_URL: "postgresql://nobody@127.0.0.1:1/none", PGSTACK_STACK: "dev", PGSTACK_ENV: "dev" });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n").pop()).toMatch(/^pgstack: The seed test\/no-such-seed\.ts failed \(exit 1\); see its output above\.$/);
  });
});

describe("pgstack snapshot create: one command for people and for the stack", () => {
  it("--keep 0 is refused with one sentence (no --keep keeps all), and nothing is taken", async () => {
    const url = await createTestDatabase("door_keep");
    const db = new URL(url).pathname.slice(1);
    await applyMigrations(resolveSettings({ url, dir: await migrationsDir({ "20250101000000_t": "CREATE TABLE t (id int);\n" }) }), { kind: "all" }, memoryLogger());
    const before = { digests: await tableDigests(url), dbs: await databasesLike(`snap_keep0_`) };
    const result = await pgstack(["snapshot", "create", "--json", "--stack", "keep0", "--keep", "0"], { DATABASE_URL: url });
    expect(result.code).toBe(2);
    expectOneSentence(result.stderr, /^pgstack: --keep must be a whole number of at least 1 \(got '0'\)\.$/, [adminPassword()]);
    expect(JSON.parse(result.stdout).error.code).toBe("E_USAGE");
    expect({ digests: await tableDigests(url), dbs: await databasesLike(`snap_keep0_`) }).toEqual(before);
    expect(await acceptsConnections(db)).toBe(true);
  });

  it("snapshot name --style rds prints the id the rds snapshot gets, from the stack and the last migration", async () => {
    const url = await createTestDatabase("door_name");
    await applyMigrations(resolveSettings({ url, dir: await migrationsDir({ "20250101000000_t": "CREATE TABLE t (id int);\n" }) }), { kind: "all" }, memoryLogger());
    const result = await pgstack(["snapshot", "name", "--stack", "prod", "--style", "rds", "--json"], { DATABASE_URL: url });
    expect(result.code).toBe(0);
    const named = JSON.parse(result.stdout);
    expect(named.lastMigration).toBe("20250101000000_t");
    expect(named.snapshotId).toMatch(/^pgstack-prod-20250101000000-t-\d{14}$/);
  });
});
