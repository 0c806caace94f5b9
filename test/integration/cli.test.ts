import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { pgstack } from "../support/cli";
import { createTestDatabase, testCluster, urlFor, withDb } from "../support/cluster";
import { copyOfRepoMigrations, fingerprint, migrationsDir, writeMigrations } from "../support/fixtures";

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const password = () => new URL(testCluster().adminUrl).password;

/** One sentence: a single line on stderr, prefixed, with no stack trace and no secret. */
function expectOneSentence(stderr: string, pattern: RegExp) {
  const lines = stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^pgstack: [A-Z-].*\.$/);
  expect(lines[0]).toMatch(pattern);
  expect(stderr).not.toMatch(/\n\s+at /);
  expect(stderr).not.toContain(password());
}

describe("pgstack CLI on the repository's migrations", () => {
  let url: string;
  let dir: string;
  beforeAll(async () => {
    url = await createTestDatabase("cli_repo");
    dir = await copyOfRepoMigrations();
  });

  it("status --json lists every migration pending, then applied with the files' sha256 after apply --all", async () => {
    const pending = await pgstack(["status", "--json", "--dir", dir], { DATABASE_URL: url });
    expect(pending.code).toBe(0);
    const before = JSON.parse(pending.stdout);
    expect(before.migrations.length).toBeGreaterThanOrEqual(8);
    expect(before.migrations.every((m: { state: string; appliedAt: unknown }) => m.state === "pending" && m.appliedAt === null)).toBe(true);

    const applied = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    expect(applied.code).toBe(0);
    expect(applied.stdout).toMatch(/^Applied \d+ migration\(s\): /);
    expect(applied.stdout + applied.stderr).not.toContain(password());

    const after = JSON.parse((await pgstack(["status", "--json", "--dir", dir], { DATABASE_URL: url })).stdout);
    for (const m of after.migrations) {
      expect(Object.keys(m).sort()).toEqual(["appliedAt", "checksum", "name", "state"]);
      expect(m.state).toBe("applied");
      expect(new Date(m.appliedAt).toString()).not.toBe("Invalid Date");
      expect(m.checksum).toBe(sha256(await fs.readFile(path.join(dir, m.name, "migration.sql"))));
    }
  });

  it("apply --all again changes nothing and says so", async () => {
    const before = await fingerprint(url);
    const again = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toMatch(/^Database is up to date \(\d+ migration\(s\) applied\); nothing to do\.$/);
    expect(await fingerprint(url)).toBe(before);
  });

  it("plan says there is nothing to apply, then lists a new migration", async () => {
    expect((await pgstack(["plan", "--dir", dir], { DATABASE_URL: url })).stdout.trim()).toBe("Nothing to apply: the database is up to date.");
    const extra = await copyOfRepoMigrations();
    await writeMigrations(extra, { "20991231000000_add_column": `ALTER TABLE "users" ADD COLUMN "nickname" TEXT;` });
    const plan = await pgstack(["plan", "--json", "--dir", extra], { DATABASE_URL: url });
    expect(plan.code).toBe(0);
    const json = JSON.parse(plan.stdout);
    expect(json.pending).toEqual([
      {
        name: "20991231000000_add_column",
        checksum: expect.stringMatching(/^[0-9a-f]{64}$/),
        retry: false,
        noTransaction: false,
        statements: 1,
        mode: "transaction",
        atomic: true,
        compatibility: "expand",
        reasons: [],
      },
    ]);
    expect(json.blockers).toEqual([]);
    expect(json.lint).toMatchObject({ blocking: 0 });
  });

  it("refuses to apply after an applied migration was edited, naming it", async () => {
    const edited = await copyOfRepoMigrations();
    const [first] = (await fs.readdir(edited)).filter((n) => /^\d{14}_/.test(n)).sort();
    await fs.appendFile(path.join(edited, first, "migration.sql"), "\n-- edited\n");
    const before = await fingerprint(url);
    const result = await pgstack(["apply", "--all", "--dir", edited], { DATABASE_URL: url });
    expect(result.code).toBe(1);
    expectOneSentence(result.stderr, new RegExp(`Applied migration ${first} was edited after it ran`));
    expect(await fingerprint(url)).toBe(before);
    const json = await pgstack(["apply", "--all", "--json", "--dir", edited], { DATABASE_URL: url });
    expect(JSON.parse(json.stdout).error.code).toBe("E_DRIFT");
  });
});

describe("bad input: one clear sentence, non-zero exit, database unchanged", () => {
  let url: string;
  let before: string;
  const base = {
    "20250101000000_users": `CREATE TABLE "users" ("id" INTEGER);`,
    "20250102000000_add_index": `CREATE INDEX "users_id_idx" ON "users"("id");`,
  };

  beforeAll(async () => {
    url = await createTestDatabase("cli_bad");
    const dir = await migrationsDir(base);
    const first = await pgstack(["apply", "--all", "--to", "20250101000000_users", "--dir", dir], { DATABASE_URL: url });
    expect(first.code).toBe(0);
    before = await fingerprint(url);
  });
  afterEach(async () => {
    expect(await fingerprint(url)).toBe(before);
  });

  async function expectRefusal(args: string[], files: Record<string, string | null>, pattern: RegExp, env: Record<string, string | undefined> = {}) {
    const dir = await migrationsDir({ ...base, ...files });
    const result = await pgstack([...args, "--dir", dir], { DATABASE_URL: url, ...env });
    expect(result.code).toBe(1);
    expectOneSentence(result.stderr, pattern);
    return result;
  }

  it("a migration_lock.toml naming another provider (Prisma refuses it too)", async () => {
    const dir = await migrationsDir({ ...base, "20250103000000_more": `CREATE TABLE "more" ("id" INTEGER);` });
    await fs.writeFile(path.join(dir, "migration_lock.toml"), 'provider = "sqlite"\n');
    const result = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    expect(result.code).toBe(1);
    expectOneSentence(result.stderr, /^(pgstack: )?The migration_lock\.toml in .* says these migrations were written for provider 'sqlite', not postgresql: point --dir at the PostgreSQL history/);
  });

  it("a migration.sql with a byte that is not UTF-8: file and byte offset named, nothing applied (not U+FFFD)", async () => {
    const dir = await migrationsDir(base);
    await writeMigrations(dir, { "20250103000000_latin1": null });
    await fs.writeFile(
      path.join(dir, "20250103000000_latin1", "migration.sql"),
      Buffer.concat([Buffer.from(`CREATE TABLE "caf`), Buffer.from([0xe9]), Buffer.from(`" ("id" INTEGER);\n`)]),
    );
    const result = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    expect(result.code).toBe(1);
    expectOneSentence(result.stderr, /Migration 20250103000000_latin1: migration\.sql is not UTF-8 \(byte 0xe9 at byte offset 17\): re-save the file as UTF-8; nothing was applied\./);
  });

  it("two folders with the same name after the timestamp, given to --to", async () => {
    await expectRefusal(
      ["apply", "--all", "--to", "add_index"],
      { "20250103000000_add_index": `CREATE INDEX "users_id2_idx" ON "users"("id");` },
      /--to 'add_index' is ambiguous: it matches 20250102000000_add_index and 20250103000000_add_index; give the full folder name\./,
    );
  });

  it("a folder without migration.sql", async () => {
    await expectRefusal(["apply", "--all"], { "20250103000000_nothing": null }, /Migration folder '20250103000000_nothing' has no migration\.sql/);
  });

  it("a SQL syntax error, with its line", async () => {
    await expectRefusal(
      ["apply", "--all"],
      { "20250103000000_typo": `-- AddColumn\nALTER TABLE "users"\n  ADD COLUMN "x" INTEGR NOT NULL DEFAULT;` },
      /Migration 20250103000000_typo has a SQL syntax error at line 3: syntax error at or near ";"/,
    );
  });

  it("an unreachable host", async () => {
    const result = await expectRefusal(["status"], {}, /Cannot reach PostgreSQL at 127\.0\.0\.1:1 \(connection refused\)/, {
      DATABASE_URL: `postgresql://postgres:${password()}@127.0.0.1:1/postgres`,
    });
    expect(result.stdout).toBe("");
  });

  it("a wrong password", async () => {
    const wrong = new URL(url);
    wrong.password = "not-the-password";
    const result = await expectRefusal(["apply", "--all"], {}, /PostgreSQL at 127\.0\.0\.1:\d+ rejected user 'postgres' \(wrong password\): check the credentials in the database URL\./, {
      DATABASE_URL: wrong.toString(),
    });
    expect(result.stderr).not.toContain("not-the-password");
  });

  it("a database that does not exist", async () => {
    await expectRefusal(["apply", "--all"], {}, /Database 'no_such_db' does not exist on 127\.0\.0\.1:\d+: create it, or fix the database name in the database URL\./, {
      DATABASE_URL: urlFor("no_such_db"),
    });
  });

  it("apply of an unknown name", async () => {
    await expectRefusal(["apply", "20250109000000_nope"], {}, /Migration '20250109000000_nope' names no migration in the migrations folder: run `pgstack status` to list them\./);
  });

  it("--to naming an unknown migration", async () => {
    await expectRefusal(["apply", "--all", "--to", "nope"], {}, /--to 'nope' names no migration in the migrations folder/);
  });

  it("no database URL at all", async () => {
    await expectRefusal(["status"], {}, /Invalid settings: no database URL: pass --url or set DATABASE_URL\./, { DATABASE_URL: undefined });
  });

  it("a malformed flag value exits 1 with every problem listed", async () => {
    await expectRefusal(["apply", "--all", "--lock-wait", "x", "--retries", "-2"], {}, /--lock-wait must be a number of seconds.*; --retries must be a whole number/);
  });
});

describe("a deploy killed in the middle of a long migration", () => {
  it("leaves the database as before, releases the lock, and the next run completes", async () => {
    const url = await createTestDatabase("cli_sigkill");
    const dir = await migrationsDir({
      "20250101000000_users": `CREATE TABLE "users" ("id" INTEGER);`,
      "20250102000000_slow": `ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\nSELECT pg_sleep(30);\n`,
    });
    expect((await pgstack(["apply", "--all", "--to", "20250101000000_users", "--dir", dir], { DATABASE_URL: url })).code).toBe(0);
    const before = await fingerprint(url);

    let pid = 0;
    const running = pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url }, { onSpawn: (p) => (pid = p) });
    // Wait until the migration is inside pg_sleep, then kill -9 the CLI.
    for (let i = 0; i < 100; i++) {
      const busy = await withDb(url, (c) => c.query(`SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'`));
      if (busy.rows.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    process.kill(pid, "SIGKILL");
    const killed = await running;
    expect(killed.signal).toBe("SIGKILL");

    // The server notices the dead client (client_connection_check_interval) and rolls back.
    for (let i = 0; i < 50; i++) {
      const left = await withDb(url, (c) => c.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgstack' AND datname = current_database()`));
      if (left.rows.length === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await fingerprint(url)).toBe(before);

    await fs.writeFile(path.join(dir, "20250102000000_slow", "migration.sql"), `ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\n`);
    const resumed = await pgstack(["apply", "--all", "--lock-wait", "5", "--dir", dir], { DATABASE_URL: url });
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain("20250102000000_slow");
  });
});

describe("a symlinked migration folder (issue 22)", () => {
  it("is skipped with its warning printed once per command, also by plan --rehearse (plan, its rehearsal's apply and its revert report each read the folder)", async () => {
    const url = await createTestDatabase("cli_symlink");
    const dir = await migrationsDir({ "20250101000000_a": "CREATE TABLE a (id bigint);\n" });
    const elsewhere = await migrationsDir({ "linked": "SELECT 1;\n" });
    await fs.symlink(path.join(elsewhere, "linked"), path.join(dir, "20250102000000_linked"));
    const count = (r: { stdout: string; stderr: string }) => (r.stdout + r.stderr).split("'20250102000000_linked' in ").length - 1;
    for (const args of [["plan", "--rehearse"], ["status"], ["apply", "--all"], ["apply", "--all"]]) {
      const r = await pgstack([...args, "--dir", dir], { DATABASE_URL: url });
      expect({ args, code: r.code }).toEqual({ args, code: 0 });
      expect({ args, printed: count(r) }).toEqual({ args, printed: 1 });
    }
    const ledger = await withDb(url, (c) => c.query(`SELECT migration_name FROM "_prisma_migrations"`));
    expect(ledger.rows).toEqual([{ migration_name: "20250101000000_a" }]);
  });
});
