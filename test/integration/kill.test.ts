/**
 * Deployers that die or overlap, with the real CLI against real PostgreSQL:
 *
 *  - `pgstack apply --all` killed with SIGKILL in the middle of a long
 *    migration (sleeping, or busy inserting): the server notices the dead
 *    client (the runner sets client_connection_check_interval), rolls the
 *    migration back with its ledger row and releases the advisory lock, and
 *    the next `apply --all` completes;
 *  - two `pgstack apply --all` at once: one waits for the other (or, past
 *    --lock-wait, fails with one sentence naming it); nothing runs twice.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { MIGRATION_LOCK_KEY } from "../../infra/core/db/deployers";
import { pgstack, type CliResult } from "../support/cli";
import { createTestDatabase, testCluster, withDb } from "../support/cluster";
import { advisoryLocks, eventually } from "../support/data";
import { fingerprint, migrationsDir } from "../support/fixtures";
import { expectOneSentence } from "../support/sentence";

jest.setTimeout(180_000);

const password = () => new URL(testCluster().adminUrl).password;
const dbOf = (url: string) => new URL(url).pathname.slice(1);

/** pids of sessions running `pattern` (a LIKE on the query text) in the database of `url`, other than the asking one. */
async function activeQueries(url: string, pattern: string): Promise<number[]> {
  const { rows } = await withDb(url, (c) =>
    c.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE $1`,
      [pattern],
    ),
  );
  return rows.map((r) => r.pid);
}

async function pgstackSessions(url: string): Promise<number[]> {
  const { rows } = await withDb(url, (c) =>
    c.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgstack' AND pid <> pg_backend_pid()`),
  );
  return rows.map((r) => r.pid);
}

async function ledger(url: string): Promise<{ migration_name: string; finished: boolean; rolled_back: boolean }[]> {
  const { rows } = await withDb(url, (c) =>
    c.query(`SELECT migration_name, finished_at IS NOT NULL AS finished, rolled_back_at IS NOT NULL AS rolled_back FROM "_prisma_migrations" ORDER BY started_at`),
  );
  return rows;
}

async function tableExists(url: string, name: string): Promise<boolean> {
  const { rows } = await withDb(url, (c) => c.query("SELECT to_regclass($1) IS NOT NULL AS e", [name]));
  return rows[0].e;
}

/**
 * Starts `pgstack apply --all`, waits until its migration is running a
 * statement matching `pattern`, SIGKILLs it mid-statement, and returns how it ended.
 */
async function killDuring(url: string, dir: string, pattern: string): Promise<{ result: CliResult; backend: number }> {
  let pid = 0;
  const running = pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url }, { onSpawn: (p) => (pid = p) });
  let backend = 0;
  const inside = await eventually(async () => {
    [backend] = await activeQueries(url, pattern);
    return backend !== undefined;
  }, 30_000);
  expect(inside).toBe(true);
  // Let it get well into the statement, holding the lock and the migration's transaction.
  await new Promise((r) => setTimeout(r, 500));
  expect((await advisoryLocks(dbOf(url))).map((l) => [l.pid, l.objid])).toEqual([[backend, MIGRATION_LOCK_KEY]]);
  process.kill(pid, "SIGKILL");
  const result = await running;
  expect(result.signal).toBe("SIGKILL");
  return { result, backend };
}

describe("pgstack apply --all killed with SIGKILL in the middle of a long migration", () => {
  const FIRST = "20250101000000_users";

  it.each([
    ["sleeping after a CREATE TABLE", "20250102000000_slow", `CREATE TABLE "slow_things" ("id" INTEGER);\nSELECT pg_sleep(30);\n`, "%pg_sleep(30)%", "slow_things"],
    [
      "inserting millions of rows",
      "20250102000000_big_insert",
      `CREATE TABLE "big" ("id" BIGINT, "v" TEXT);\nINSERT INTO "big" SELECT g, md5(g::text) FROM generate_series(1, 500000000) g;\n`,
      "%generate_series(1, 500000000)%",
      "big",
    ],
  ])("%s: the database is as before, the lock is released, and the next run completes", async (_what, name, sql, pattern, table) => {
    const url = await createTestDatabase("kill");
    const dir = await migrationsDir({ [FIRST]: `CREATE TABLE "users" ("id" INTEGER);`, [name]: sql });
    expect((await pgstack(["apply", "--all", "--to", FIRST, "--dir", dir], { DATABASE_URL: url })).code).toBe(0);
    const before = await fingerprint(url);

    const { backend } = await killDuring(url, dir, pattern);
    const killedAt = Date.now();

    // The server notices the dead client within a few seconds, not at the end of the statement.
    expect(await eventually(async () => (await advisoryLocks(dbOf(url))).length === 0, 15_000)).toBe(true);
    expect(await eventually(async () => (await pgstackSessions(url)).length === 0, 15_000)).toBe(true);
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    expect(await pgstackSessions(url)).not.toContain(backend);

    // Rolled back: no table, no ledger row for it (finished or not), everything else as before.
    expect(await tableExists(url, table)).toBe(false);
    expect(await ledger(url)).toEqual([{ migration_name: FIRST, finished: true, rolled_back: false }]);
    expect(await fingerprint(url)).toBe(before);

    // The slow part removed: the next run takes the lock at once and applies it.
    await fs.writeFile(path.join(dir, name, "migration.sql"), sql.split("\n")[0] + "\n");
    const resumed = await pgstack(["apply", "--all", "--lock-wait", "0", "--dir", dir], { DATABASE_URL: url });
    expect(resumed.code).toBe(0);
    expect(resumed.stdout.trim()).toBe(`Applied 1 migration(s): ${name}.`);
    expect(resumed.stdout + resumed.stderr).not.toContain(password());
    expect(await tableExists(url, table)).toBe(true);
    expect(await ledger(url)).toEqual([
      { migration_name: FIRST, finished: true, rolled_back: false },
      { migration_name: name, finished: true, rolled_back: false },
    ]);
    expect(await advisoryLocks(dbOf(url))).toEqual([]);
  });
});

describe("two pgstack apply --all at once against one database", () => {
  // The first migration sleeps, so the two runs overlap whatever their start-up times.
  const migrations = (sleep: number) => ({
    "20250101000000_a": `CREATE TABLE "a" ("id" INTEGER);\nSELECT pg_sleep(${sleep});\n`,
    "20250102000000_b": `CREATE TABLE "b" ("id" INTEGER);\nINSERT INTO "a" VALUES (1);\n`,
    "20250103000000_c": `INSERT INTO "a" VALUES (2);\n`,
  });
  const names = Object.keys(migrations(0));

  async function expectAppliedOnce(url: string) {
    const rows = await ledger(url);
    expect(rows.map((r) => r.migration_name)).toEqual(names);
    expect(rows.every((r) => r.finished && !r.rolled_back)).toBe(true);
    // Non-idempotent statements ran once: a second run of b or c would add rows.
    const a = await withDb(url, (c) => c.query(`SELECT array_agg(id ORDER BY id) AS ids FROM "a"`));
    expect(a.rows[0].ids).toEqual([1, 2]);
  }

  it("started together: one applies everything, the other waits for the lock and finds nothing to do", async () => {
    const url = await createTestDatabase("concurrent_cli");
    const dir = await migrationsDir(migrations(3));
    const [one, two] = await Promise.all([
      pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url }),
      pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url }),
    ]);
    expect([one.code, two.code]).toEqual([0, 0]);
    const outs = [one.stdout.trim(), two.stdout.trim()].sort();
    expect(outs).toEqual([`Applied 3 migration(s): ${names.join(", ")}.`, "Database is up to date (3 migration(s) applied); nothing to do."]);
    const waiter = one.stdout.includes("up to date") ? one : two;
    expect(waiter.stderr).toMatch(/waiting up to 60s for another deployer \(pid \d+, pgstack\)/);
    for (const r of [one, two]) expect(r.stdout + r.stderr).not.toContain(password());
    await expectAppliedOnce(url);
    expect(await advisoryLocks(dbOf(url))).toEqual([]);
  });

  it("past --lock-wait, the second fails with one sentence naming the first, changes nothing, and the first completes", async () => {
    const url = await createTestDatabase("concurrent_cli_wait");
    const dir = await migrationsDir(migrations(8));
    const first = pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    const holder = await eventually(async () => (await advisoryLocks(dbOf(url))).length > 0, 30_000);
    expect(holder).toBe(true);
    const [{ pid }] = await advisoryLocks(dbOf(url));
    const second = await pgstack(["apply", "--all", "--lock-wait", "1", "--dir", dir], { DATABASE_URL: url });
    expect(second.code).toBe(1);
    const lines = second.stderr.trim().split("\n");
    expect(lines.slice(0, -1).every((l) => /^waiting up to 1s for another deployer/.test(l))).toBe(true);
    expectOneSentence(
      lines[lines.length - 1],
      new RegExp(`^pgstack: Another deployer holds the migration lock on database '${dbOf(url)}' \\(pid ${pid}, application_name 'pgstack'\\); waited 1s: let it finish, or raise --lock-wait\\.$`),
      [password()],
    );
    expect(second.stdout).toBe("");
    const done = await first;
    expect(done.code).toBe(0);
    expect(done.stdout.trim()).toBe(`Applied 3 migration(s): ${names.join(", ")}.`);
    await expectAppliedOnce(url);
  });
});
