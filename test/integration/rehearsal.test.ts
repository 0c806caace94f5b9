import { Client } from "pg";
import { pgstack } from "../support/cli";
import { adminQuery, createTestDatabase, withDb } from "../support/cluster";
import { fingerprint, migrationsDir } from "../support/fixtures";
import { strongestLocks } from "../../infra/core/rehearsal/rehearse";

const base = {
  "20250101000000_users": `CREATE TABLE "users" ("id" SERIAL PRIMARY KEY, "email" TEXT NOT NULL);`,
};

async function rehearsalCopies(): Promise<string[]> {
  const { rows } = await adminQuery(`SELECT datname FROM pg_database WHERE datname LIKE 'pgstack_rehearsal_%'`);
  return rows.map((r) => String(r.datname));
}

/** A dev database with data: users with a duplicate email. */
async function databaseWithData(prefix: string, pending: Record<string, string>) {
  const url = await createTestDatabase(prefix);
  const dir = await migrationsDir({ ...base, ...pending });
  expect((await pgstack(["apply", "--all", "--to", "20250101000000_users", "--dir", dir], { DATABASE_URL: url })).code).toBe(0);
  await withDb(url, (c) => c.query(`INSERT INTO "users" ("email") SELECT 'user' || g || '@x.io' FROM generate_series(1, 500) g; INSERT INTO "users" ("email") VALUES ('user1@x.io')`));
  return { url, dir };
}

describe("pgstack plan --rehearse", () => {
  it("fails on a migration that fails on the data, with the error and line, and leaves the real database untouched", async () => {
    const { url, dir } = await databaseWithData("rehearse_fail", {
      "20250102000000_add_nickname": `ALTER TABLE "users" ADD COLUMN "nickname" TEXT;`,
      "20250103000000_unique_email": `-- CreateIndex\nCREATE UNIQUE INDEX "users_email_key" ON "users"("email");`,
      "20250104000000_after": `CREATE TABLE "after" ("id" INTEGER);`,
    });
    const before = await fingerprint(url);
    const result = await pgstack(["plan", "--rehearse", "--json", "--dir", dir], { DATABASE_URL: url });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n").pop()).toMatch(
      /^pgstack: The rehearsal failed: migration 20250103000000_unique_email fails at line 2: could not create unique index "users_email_key"; the real database was not touched\.$/,
    );
    const { rehearsal } = JSON.parse(result.stdout);
    expect(rehearsal.copy).toBe("template");
    expect(rehearsal.migrations.map((m: { name: string; outcome: string }) => [m.name, m.outcome])).toEqual([
      ["20250102000000_add_nickname", "applied"],
      ["20250103000000_unique_email", "failed"],
      ["20250104000000_after", "not-run"],
    ]);
    expect(rehearsal.migrations[1]).toMatchObject({ line: 2, error: 'could not create unique index "users_email_key"' });
    expect(await fingerprint(url)).toBe(before);
    expect(await rehearsalCopies()).toEqual([]);
  });

  it("reports duration and the strongest lock each migration takes on existing tables, then drops the copy", async () => {
    const { url, dir } = await databaseWithData("rehearse_ok", {
      "20250102000000_add_nickname": `ALTER TABLE "users" ADD COLUMN "nickname" TEXT;`,
      "20250103000000_new_table": `CREATE TABLE "teams" ("id" INTEGER);\nCREATE INDEX "teams_id_idx" ON "teams"("id");`,
      "20250104000000_index_users": `CREATE INDEX "users_email_idx" ON "users"("email");`,
    });
    const before = await fingerprint(url);
    const result = await pgstack(["plan", "--rehearse", "--json", "--dir", dir], { DATABASE_URL: url });
    expect(result.code).toBe(0);
    const { rehearsal } = JSON.parse(result.stdout);
    expect(rehearsal.ok).toBe(true);
    const byName = Object.fromEntries(rehearsal.migrations.map((m: { name: string }) => [m.name, m]));
    expect(byName["20250102000000_add_nickname"].locks).toEqual([{ table: "public.users", mode: "AccessExclusiveLock", blocksWrites: true, blocksReads: true }]);
    // A table created by the migration itself is not an existing table.
    expect(byName["20250103000000_new_table"].locks).toEqual([]);
    expect(byName["20250104000000_index_users"].locks).toEqual([{ table: "public.users", mode: "ShareLock", blocksWrites: true, blocksReads: false }]);
    for (const m of rehearsal.migrations) expect(m.durationMs).toBeGreaterThan(0);
    expect(await fingerprint(url)).toBe(before);
    expect(await rehearsalCopies()).toEqual([]);
  });

  it("says whether the deploy could be reverted without loss (issue 14): yes for additions, naming what a revert would drop", async () => {
    const { url, dir } = await databaseWithData("rehearse_revert_ok", {
      "20250102000000_add_nickname": `ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\nCREATE TABLE "teams" ("id" INTEGER PRIMARY KEY);`,
    });
    const before = await fingerprint(url);
    const json = JSON.parse((await pgstack(["plan", "--rehearse", "--json", "--dir", dir], { DATABASE_URL: url })).stdout);
    expect(json.revert).toEqual([{ migration: "20250102000000_add_nickname", withoutLoss: true, losses: [], drops: ["table teams", "column users.nickname"] }]);
    const markdown = (await pgstack(["plan", "--rehearse", "--markdown", "--dir", dir], { DATABASE_URL: url })).stdout;
    expect(markdown).toContain("| `20250102000000_add_nickname` | yes | - |");
    expect(await fingerprint(url)).toBe(before);
    expect(await rehearsalCopies()).toEqual([]);
    expect((await adminQuery(`SELECT datname FROM pg_database WHERE datname LIKE 'pgstack_revert_%'`)).rows).toEqual([]);
  });

  it("says a deploy that drops a column cannot be reverted without loss, naming the column", async () => {
    const { url, dir } = await databaseWithData("rehearse_revert_loss", {
      "20250102000000_add_team": `ALTER TABLE "users" ADD COLUMN "team" TEXT;`,
      "20250103000000_drop_email": `ALTER TABLE "users" DROP COLUMN "email";`,
      "20250104000000_add_index": `CREATE INDEX "users_team_idx" ON "users"("team");`,
    });
    const markdown = (await pgstack(["plan", "--rehearse", "--markdown", "--dir", dir], { DATABASE_URL: url })).stdout;
    // Judged one by one: only the migration that dropped the column loses data when reverted.
    expect(markdown).toContain("| `20250102000000_add_team` | yes | - |");
    expect(markdown).toContain("| `20250103000000_drop_email` | **no** | column users.email was dropped by a reverted migration: the reverse recreates it without the values it held |");
    expect(markdown).toContain("| `20250104000000_add_index` | yes | - |");
  });

  it("copies the schema only when the application is connected, and says so", async () => {
    const { url, dir } = await databaseWithData("rehearse_busy", { "20250102000000_add_nickname": `ALTER TABLE "users" ADD COLUMN "nickname" TEXT;` });
    const app = new Client({ connectionString: url, application_name: "the-app" });
    await app.connect();
    try {
      const result = await pgstack(["plan", "--rehearse", "--markdown", "--dir", dir], { DATABASE_URL: url });
      expect(result.stderr).not.toMatch(/^pgstack: /m);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain("schema-only copy");
      expect(result.stdout).toMatch(/\| `20250102000000_add_nickname` \| applied \| \d+ ms \| `public.users` AccessExclusiveLock \(blocks reads and writes\) \|/);
      // The application's session was never disturbed.
      expect((await app.query("SELECT 1 AS ok")).rows).toEqual([{ ok: 1 }]);
    } finally {
      await app.end();
    }
    expect(await rehearsalCopies()).toEqual([]);
  });

  it("drops the copy when interrupted with SIGINT", async () => {
    const { url, dir } = await databaseWithData("rehearse_sigint", { "20250102000000_slow": `ALTER TABLE "users" ADD COLUMN "n" TEXT;\nSELECT pg_sleep(20);` });
    let pid = 0;
    const running = pgstack(["plan", "--rehearse", "--dir", dir], { DATABASE_URL: url }, { onSpawn: (p) => (pid = p) });
    for (let i = 0; i < 100 && (await rehearsalCopies()).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 100; i++) {
      const { rows } = await adminQuery(`SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'`);
      if (rows.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await rehearsalCopies()).toHaveLength(1);
    process.kill(pid, "SIGINT");
    const result = await running;
    expect(result.code).toBe(130);
    expect(await rehearsalCopies()).toEqual([]);
  });
});

describe("strongestLocks", () => {
  it("keeps the strongest mode per table", () => {
    expect(
      strongestLocks([
        { table: "public.a", mode: "AccessShareLock" },
        { table: "public.a", mode: "ShareRowExclusiveLock" },
        { table: "public.a", mode: "RowExclusiveLock" },
        { table: "public.b", mode: "ShareUpdateExclusiveLock" },
      ]),
    ).toEqual([
      { table: "public.a", mode: "ShareRowExclusiveLock", blocksWrites: true, blocksReads: false },
      { table: "public.b", mode: "ShareUpdateExclusiveLock", blocksWrites: false, blocksReads: false },
    ]);
  });
});
