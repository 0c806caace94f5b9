/**
 * Issue 22, item 2, on real PostgreSQL: a rollback or revert killed at each
 * of its fail-points (and right after a revert's commit, and after the pin is
 * set), or a `pgstack revert --yes` run by hand. The last update applied K6,
 * the one before it K5. Whatever the kill left, the database the next
 * `pulumi up` reads either still holds K6 (killed before the point of no
 * return: the up changes nothing) or records the unfinished rollback with its
 * pin (after it: the program refuses, test/unit/stack-program.test.ts); and
 * the retry `npm run rollback -- --yes` undoes exactly the last update: K5
 * and every write since stay, the chain is pinned at K5, nothing recorded is left.
 * Also: a restore that a deployer's lock would refuse says so before printing its plan.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations, migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { observeDatabase } from "../../infra/core/snapshot/observe";
import { listAllSnapshots } from "../../infra/core/snapshot/store";
import { createTemplateSnapshot } from "../../infra/core/snapshot/template";
import { pgstack, spawnCollect, type CliResult } from "../support/cli";
import { adminQuery, createTestDatabase, withDb } from "../support/cluster";
import { tableDigests } from "../support/data";
import { REPO_ROOT, writeMigrations } from "../support/fixtures";
import { readFakeStack, writeFakeStack } from "../support/rollback-child";

jest.setTimeout(600_000);

const STACK = "ri";
const K4 = "20250101000000_k4";
const K5 = "20250102000000_k5";
const K6 = "20250103000000_k6";
const PIN_KEY = "pgstack:pinnedMigration";
const log = () => memoryLogger();

interface Setup {
  url: string;
  projectDir: string;
  stackFile: string;
  /** Every table as the snapshot before K6 holds it: what a restore must give back. */
  beforeK6: Record<string, string>;
}

/** k4 (base), snapshot, k5 (+ writes), snapshot, k6 (+ writes to k5's table and k6's). */
async function setup(name: string): Promise<Setup> {
  const url = await createTestDatabase(name);
  const projectDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-ri-"));
  const dir = path.join(projectDir, "migrations");
  const apply = () => applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, log());
  await writeMigrations(dir, { [K4]: "CREATE TABLE base (id int PRIMARY KEY, v text);\nINSERT INTO base SELECT g, 'b' || g FROM generate_series(1, 300) g;\n" });
  await apply();
  await writeMigrations(dir, { [K5]: "CREATE TABLE k5_t (id int PRIMARY KEY, v text);\n" });
  await createTemplateSnapshot({ url, stack: STACK, key: "5555555555555555", log: log(), now: () => new Date(Date.now() - 2000) });
  await apply();
  await withDb(url, (c) => c.query("INSERT INTO k5_t SELECT g, 'k5 ' || g FROM generate_series(1, 200) g"));
  await writeMigrations(dir, { [K6]: "CREATE TABLE k6_t (id int PRIMARY KEY);\n" });
  await fs.writeFile(path.join(dir, K6, "down.sql"), "DROP TABLE k6_t;\n");
  const beforeK6 = await tableDigests(url);
  await createTemplateSnapshot({ url, stack: STACK, key: "6666666666666666", log: log(), now: () => new Date(Date.now() - 1000) });
  await apply();
  await withDb(url, async (c) => {
    await c.query("INSERT INTO k5_t SELECT g, 'after k6 ' || g FROM generate_series(201, 260) g");
    await c.query("UPDATE base SET v = 'changed' WHERE id % 7 = 0");
    await c.query("INSERT INTO k6_t SELECT generate_series(1, 10)");
  });
  const stackFile = path.join(projectDir, "stack.json");
  writeFakeStack(stackFile, {
    config: { "pgstack:engine": { value: "external" }, "pgstack:environment": { value: "staging" }, "pgstack:externalUrl": { secret: true } },
    outputs: { databaseUrl: url, latestSnapshot: "" },
    calls: [],
  });
  return { url, projectDir, stackFile, beforeK6 };
}

/** `npm run rollback -- --stack ri <args>` in its own process, against the fake stack. */
function rollbackChild(s: Setup, args: string[], failpoint?: string): Promise<CliResult> {
  return spawnCollect(
    process.execPath,
    ["--require", "tsx/cjs", path.join(REPO_ROOT, "test", "support", "rollback-child.ts"), s.stackFile, s.projectDir, "--", "--stack", STACK, ...args],
    REPO_ROOT,
    { PGSTACK_FAILPOINT: failpoint },
  );
}

async function states(s: Setup): Promise<Record<string, string>> {
  const st = await migrationStatus(resolveSettings({ url: s.url, dir: path.join(s.projectDir, "migrations") }));
  return Object.fromEntries(st.map((m) => [m.name, m.state]));
}

const without = (digests: Record<string, string>, ...tables: string[]) => Object.fromEntries(Object.entries(digests).filter(([t]) => !tables.includes(t)));

async function dropSnapshots(url: string): Promise<void> {
  for (const snap of await listAllSnapshots(url, {}, {})) await adminQuery(`DROP DATABASE IF EXISTS "${snap.snapshotId}" WITH (FORCE)`);
}

/**
 * Kill, then what the next `pulumi up` reads, then the retry; `pastPointOfNoReturn`:
 * whether the kill came after the database was rolled back.
 */
async function killThenRetry(kind: "restore" | "revert", kill: (s: Setup) => Promise<CliResult>, past: boolean | "either"): Promise<void> {
  const s = await setup(`ri_${kind.slice(0, 3)}`);
  try {
    const written = await tableDigests(s.url);
    const killed = await kill(s);
    if (killed.signal !== "SIGKILL" && killed.code !== 0) throw new Error(`the interrupted command failed instead:\n${killed.stderr}`);

    // What the program of the next `pulumi up` reads (after the repair every pgstack command makes).
    await pgstack(["snapshot", "list", "--json"], { DATABASE_URL: s.url });
    const seen = await observeDatabase(s.url);
    // A kill during the swap's COMMIT: committed or not, never half.
    const pastPointOfNoReturn = past === "either" ? !seen.applied.has(K6) : past;
    if (pastPointOfNoReturn) {
      expect(seen.applied.has(K6)).toBe(false);
      expect(seen.unfinishedRollback).toMatchObject({ op: kind, pin: K5, removed: [K6] });
    } else {
      // Nothing was rolled back: an up finds K6 applied and changes nothing; no rollback is recorded.
      expect(seen.unfinishedRollback).toBeUndefined();
      expect(await states(s)).toMatchObject({ [K5]: "applied", [K6]: "applied" });
      expect(await tableDigests(s.url)).toEqual(written);
    }

    const retry = await rollbackChild(s, kind === "revert" ? ["--revert", "--yes"] : ["--yes"]);
    if (retry.code !== 0) throw new Error(`retry failed:\n${retry.stderr}`);
    if (pastPointOfNoReturn) {
      expect(retry.stderr).toContain(`the database was already rolled back to ${K5}`);
      expect(retry.stderr).not.toContain("undoes the update");
    } else {
      expect(retry.stderr).toMatch(new RegExp(`This (rollback|revert) undoes the update that started at .* which applied ${K6}\\.`));
    }
    // Exactly the last update undone: K5 and everything written since it stay.
    expect(await states(s)).toMatchObject({ [K4]: "applied", [K5]: "applied", [K6]: "pending" });
    if (kind === "restore") expect(await tableDigests(s.url)).toEqual(s.beforeK6);
    else expect(without(await tableDigests(s.url), "public._prisma_migrations")).toEqual(without(written, "public._prisma_migrations", "public.k6_t"));
    const stack = readFakeStack(s.stackFile);
    expect(stack.config[PIN_KEY]?.value).toBe(K5);
    expect(stack.calls.filter((c) => c[0] === "up")).toHaveLength(1);
    expect(stack.outputs.pinnedMigration).toBe(K5);
    // Finished: nothing recorded is left, the database's own comment is back.
    expect((await observeDatabase(s.url)).unfinishedRollback).toBeUndefined();
    const db = new URL(s.url).pathname.slice(1);
    expect((await adminQuery("SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1", [db])).rows[0].c).toBe("the app's own comment");
  } finally {
    await dropSnapshots(s.url);
  }
}

const withComment = async (s: Setup) => {
  const db = new URL(s.url).pathname.slice(1);
  await adminQuery(`COMMENT ON DATABASE "${db}" IS 'the app''s own comment'`);
};

describe("a rollback (restore) killed at each fail-point, then retried", () => {
  const before = ["restore:materializing", "restore:materialized", "restore:verified", "restore:closed", "restore:counted"];
  const after = ["restore:swapped", "restore:reopened", "rollback:pinned"];
  it("restore:swapping (killed during the swap's COMMIT): whichever way it went, the retry undoes K6 alone and pins at K5", () =>
    killThenRetry("restore", async (s) => (await withComment(s), rollbackChild(s, ["--yes"], "restore:swapping")), "either"));
  for (const point of before) {
    it(`${point}: nothing was rolled back; the retry undoes K6 alone and pins at K5`, () =>
      killThenRetry("restore", async (s) => (await withComment(s), rollbackChild(s, ["--yes"], point)), false));
  }
  for (const point of after) {
    it(`${point}: the database records the rollback; the retry pins at K5 and undoes nothing more`, () =>
      killThenRetry("restore", async (s) => (await withComment(s), rollbackChild(s, ["--yes"], point)), true));
  }
});

describe("a revert killed at each fail-point, or run by hand, then finished by npm run rollback", () => {
  for (const point of ["revert:rehearsed", "revert:before-commit"]) {
    it(`${point}: nothing was reverted; the retry reverts K6 alone and pins at K5`, () =>
      killThenRetry("revert", async (s) => (await withComment(s), rollbackChild(s, ["--revert", "--yes"], point)), false));
  }
  for (const point of ["revert:committed", "rollback:pinned"]) {
    it(`${point}: the database records the revert; the retry pins at K5 and reverts nothing more`, () =>
      killThenRetry("revert", async (s) => (await withComment(s), rollbackChild(s, ["--revert", "--yes"], point)), true));
  }
  it("pgstack revert --to K5 --yes by hand: the stack's rollback pins at K5 and reverts nothing more", () =>
    killThenRetry(
      "revert",
      async (s) => {
        await withComment(s);
        const r = await pgstack(["revert", "--to", K5, "--yes", "--dir", path.join(s.projectDir, "migrations")], { DATABASE_URL: s.url });
        expect(r.stdout).toContain(`pin its chain at ${K5} with \`npm run rollback -- --stack <name> --yes\``);
        return r;
      },
      true,
    ));
});

describe("--unpin while a rollback is unfinished", () => {
  it("refuses in one sentence naming the command that finishes it, and lifts nothing", async () => {
    const s = await setup("ri_unpin");
    try {
      const stack = readFakeStack(s.stackFile);
      stack.config[PIN_KEY] = { value: K4 };
      writeFakeStack(s.stackFile, stack);
      expect((await rollbackChild(s, ["--yes"], "restore:swapped")).signal).toBe("SIGKILL");
      const r = await rollbackChild(s, ["--unpin"]);
      expect(r.code).not.toBe(0);
      const said = r.stderr.split("\n").filter((l) => l.startsWith("pgstack:"));
      expect(said).toEqual([
        expect.stringContaining(`was rolled back to ${K5} (a restore of snapshot `),
      ]);
      expect(said[0]).toContain(`finish that rollback first with \`npm run rollback -- --stack ${STACK} --yes\``);
      expect(readFakeStack(s.stackFile).config[PIN_KEY]?.value).toBe(K4);
      // Finished, it lifts the pin.
      expect((await rollbackChild(s, ["--yes"])).code).toBe(0);
      expect((await rollbackChild(s, ["--unpin"])).code).toBe(0);
      expect(readFakeStack(s.stackFile).config[PIN_KEY]).toBeUndefined();
    } finally {
      await dropSnapshots(s.url);
    }
  });
});

describe("a restore that a deployer's lock refuses", () => {
  it("refuses before printing its plan, naming the deployer, and changes nothing", async () => {
    const s = await setup("ri_lock");
    const deployer = new Client({ connectionString: s.url, application_name: "prisma-migrate" });
    await deployer.connect();
    try {
      await deployer.query("SELECT pg_advisory_lock(72707369)");
      const before = await tableDigests(s.url);
      const r = await rollbackChild(s, ["--yes"]);
      expect(r.code).toBe(1);
      expect(r.stderr).not.toContain("Restore database");
      expect(r.stderr).not.toContain("Discarded by the restore");
      expect(r.stderr).not.toContain("This rollback undoes");
      const said = r.stderr.split("\n").filter((l) => l.startsWith("pgstack:"));
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(/^pgstack: Cannot restore '.*' while a deployer holds its migration lock \(pid \d+, application_name 'prisma-migrate'\): let it finish and run again\.$/);
      expect(await tableDigests(s.url)).toEqual(before);
      expect(readFakeStack(s.stackFile).config[PIN_KEY]).toBeUndefined();
    } finally {
      await deployer.end();
      await dropSnapshots(s.url);
    }
  });
});

/** The database's comment as stored (markers and intents included). */
async function commentOf(url: string): Promise<string | null> {
  const db = new URL(url).pathname.slice(1);
  return (await adminQuery("SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1", [db])).rows[0].c as string | null;
}

/** `pgstack revert --to K5 --yes` then `pgstack apply --all`, by hand: K6 is applied again and the revert's record stays behind. */
async function revertThenReapplyByHand(s: Setup): Promise<void> {
  const dir = path.join(s.projectDir, "migrations");
  await withComment(s);
  expect((await pgstack(["revert", "--to", K5, "--yes", "--dir", dir], { DATABASE_URL: s.url })).code).toBe(0);
  expect((await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: s.url })).code).toBe(0);
  expect(await states(s)).toMatchObject({ [K5]: "applied", [K6]: "applied" });
  expect(await commentOf(s.url)).toContain('"pgstack-rollback"');
}

/** The record the database's owner could write: a revert back to `pin`, around the app's own comment. */
async function forgeIntent(s: Setup, pin: string): Promise<void> {
  const db = new URL(s.url).pathname.slice(1);
  const forged = JSON.stringify({ "pgstack-rollback": { op: "revert", pin, removed: [K5, K6], at: new Date().toISOString() }, comment: "the app's own comment" });
  await withDb(s.url, (c) => c.query(`COMMENT ON DATABASE "${db}" IS '${forged.replace(/'/g, "''")}'`));
}

const STALE = "that its ledger contradicts";

describe("a rollback record the ledger contradicts (stale or forged)", () => {
  it("after a revert and a re-apply by hand: not an unfinished rollback; the rollback clears it in a sentence and undoes the last update as without it", async () => {
    const s = await setup("ri_stale");
    try {
      await revertThenReapplyByHand(s);
      const seen = await observeDatabase(s.url);
      expect(seen.unfinishedRollback).toBeUndefined();
      expect(seen.staleRollback).toMatchObject({ intent: { op: "revert", pin: K5, removed: [K6] }, stale: `${K6}, after ${K5}, is applied` });

      const r = await rollbackChild(s, ["--yes"]);
      if (r.code !== 0) throw new Error(`rollback failed:\n${r.stderr}`);
      const said = r.stderr.split("\n").filter((l) => l.includes(STALE));
      expect(said).toEqual([
        `[pgstack] The database of stack '${STACK}' records a rollback to ${K5} (a revert of ${K6}) that its ledger contradicts (${K6}, after ${K5}, is applied): that record is stale and was cleared; this rollback goes on as if it had never been recorded.`,
      ]);
      expect(r.stderr).not.toContain("already rolled back");
      // Then exactly what it does without the record: the restore of the snapshot before K6.
      expect(r.stderr).toContain("Discarded by the restore");
      expect(await states(s)).toMatchObject({ [K4]: "applied", [K5]: "applied", [K6]: "pending" });
      expect(await tableDigests(s.url)).toEqual(s.beforeK6);
      expect(readFakeStack(s.stackFile).config[PIN_KEY]?.value).toBe(K5);
      expect(await commentOf(s.url)).toBe("the app's own comment");
    } finally {
      await dropSnapshots(s.url);
    }
  });

  it("a forged record (pin K4 while K5 and K6 are applied): the revert-rollback never pins from it, reverts K6 and pins at K5", async () => {
    const s = await setup("ri_forged");
    try {
      await forgeIntent(s, K4);
      const before = await tableDigests(s.url);
      const r = await rollbackChild(s, ["--revert", "--yes"]);
      if (r.code !== 0) throw new Error(`rollback failed:\n${r.stderr}`);
      expect(r.stderr).toContain(`records a rollback to ${K4} (a revert of ${K5}, ${K6}) that its ledger contradicts (${K5}, ${K6}, after ${K4}, are applied): that record is stale and was cleared`);
      expect(r.stderr).not.toContain("already rolled back");
      expect(await states(s)).toMatchObject({ [K4]: "applied", [K5]: "applied", [K6]: "pending" });
      expect(without(await tableDigests(s.url), "public._prisma_migrations")).toEqual(without(before, "public._prisma_migrations", "public.k6_t"));
      expect(readFakeStack(s.stackFile).config[PIN_KEY]?.value).toBe(K5);
      expect(await commentOf(s.url)).toBe("the app's own comment");
    } finally {
      await dropSnapshots(s.url);
    }
  });

  it("--unpin is not blocked by a stale record", async () => {
    const s = await setup("ri_stale_unpin");
    try {
      await revertThenReapplyByHand(s);
      const stack = readFakeStack(s.stackFile);
      stack.config[PIN_KEY] = { value: K5 };
      writeFakeStack(s.stackFile, stack);
      const r = await rollbackChild(s, ["--unpin"]);
      if (r.code !== 0) throw new Error(`--unpin failed:\n${r.stderr}`);
      expect(readFakeStack(s.stackFile).config[PIN_KEY]).toBeUndefined();
    } finally {
      await dropSnapshots(s.url);
    }
  });
});

describe("pgstack snapshot restore: the comment carry-over", () => {
  it("carries the database's own comment onto the restored database, never a rollback's record", async () => {
    const s = await setup("ri_carry");
    try {
      await revertThenReapplyByHand(s);
      const last = (await listAllSnapshots(s.url, {}, {})).find((snap) => snap.key === "6666666666666666")!.snapshotId;
      const r = await pgstack(["snapshot", "restore", last, "--yes"], { DATABASE_URL: s.url });
      if (r.code !== 0) throw new Error(`restore failed:\n${r.stderr}`);
      expect(await states(s)).toMatchObject({ [K5]: "applied", [K6]: "pending" });
      expect(await tableDigests(s.url)).toEqual(s.beforeK6);
      expect(await commentOf(s.url)).toBe("the app's own comment");
      const seen = await observeDatabase(s.url);
      expect(seen.unfinishedRollback).toBeUndefined();
      expect(seen.staleRollback).toBeUndefined();
    } finally {
      await dropSnapshots(s.url);
    }
  });
});
