import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { adminQuery, createTestDatabase, urlFor, withDb } from "../support/cluster";
import { pgstack } from "../support/cli";
import { copyOfRepoMigrations, writeMigrations } from "../support/fixtures";

/**
 * `pgstack verify` on a database migrated with this repository's history
 * (plus one migration that makes a trigger function, which the history has
 * none of): each out-of-band change, alone, on its own copy of that database,
 * is named with the DDL that reproduces it; the untouched database passes.
 */
const FUNCTION_MIGRATION = `CREATE FUNCTION "touch_updated_at"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW."updated_at" := CURRENT_TIMESTAMP;
  RETURN NEW;
END
$$;
`;

interface Case {
  change: string;
  sql: string;
  /** The object the report must name: "<kind> <schema.name>". */
  object: string;
  class: "changed" | "extra";
  /** A fragment of the DDL printed for it. */
  ddl: RegExp;
}

const CASES: Case[] = [
  { change: "add a column", sql: `ALTER TABLE users ADD COLUMN nickname text`, object: "table public.users", class: "changed", ddl: /add column "nickname" text/i },
  { change: "drop an index", sql: `DROP INDEX sessions_user_id_idx`, object: "index public.sessions_user_id_idx", class: "changed", ddl: /drop index .*"sessions_user_id_idx"/i },
  { change: "change a default", sql: `ALTER TABLE organizations ALTER COLUMN plan SET DEFAULT 'PRO'`, object: "table public.organizations", class: "changed", ddl: /alter column "plan" set default 'PRO'/i },
  {
    change: "add a trigger",
    sql: `CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch_updated_at()`,
    object: "trigger public.users.users_touch",
    class: "changed",
    ddl: /CREATE TRIGGER users_touch BEFORE UPDATE ON public\.users/i,
  },
  { change: "change a column's type", sql: `ALTER TABLE projects ALTER COLUMN name TYPE varchar(200)`, object: "table public.projects", class: "changed", ddl: /alter column "name" set data type character varying\(200\)/i },
  {
    change: "add a check constraint",
    sql: `ALTER TABLE users ADD CONSTRAINT users_email_lower CHECK (email = lower(email))`,
    object: "constraint public.users.users_email_lower",
    class: "changed",
    ddl: /add constraint "users_email_lower" CHECK \(\(email = lower\(email\)\)\)/i,
  },
  { change: "drop a foreign key", sql: `ALTER TABLE sessions DROP CONSTRAINT sessions_user_id_fkey`, object: "constraint public.sessions.sessions_user_id_fkey", class: "changed", ddl: /drop constraint "sessions_user_id_fkey"/i },
  { change: "add a table", sql: `CREATE TABLE feature_flags (id int PRIMARY KEY, name text NOT NULL)`, object: "table public.feature_flags", class: "extra", ddl: /create table "public"\."feature_flags"/i },
  {
    change: "replace a function body",
    sql: `CREATE OR REPLACE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now() - interval '1 hour'; RETURN NEW; END $$`,
    object: "function public.touch_updated_at()",
    class: "changed",
    ddl: /interval '1 hour'/,
  },
  { change: "add an enum value", sql: `ALTER TYPE plan ADD VALUE 'TEAM' AFTER 'PRO'`, object: "enum public.plan", class: "changed", ddl: /alter type "public"\."plan" add value 'TEAM' after 'PRO'/i },
];

interface JsonCheck {
  name: string;
  status: string;
  details: { sentence: string; cached?: boolean; objects?: Array<{ kind: string; name: string; class: string; ddl: string[]; allowed: boolean }> };
}

const checksOf = (stdout: string): JsonCheck[] => stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as JsonCheck);

let dir: string;
let cacheDir: string;
let baseDb: string;
let snapshotsDir: string;

beforeAll(async () => {
  dir = await copyOfRepoMigrations();
  await writeMigrations(dir, { "20270101000000_touch_function": FUNCTION_MIGRATION });
  cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-verify-cache-"));
  snapshotsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-verify-snapshots-"));
  const url = await createTestDatabase("verify_base");
  baseDb = new URL(url).pathname.slice(1);
  const applied = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
  expect(applied.code).toBe(0);
}, 120_000);

/** A copy of the migrated database, so each change is alone. */
async function copyOfBase(): Promise<string> {
  const name = `verify_case_${Math.random().toString(36).slice(2, 8)}`;
  await adminQuery(`CREATE DATABASE "${name}" TEMPLATE "${baseDb}"`);
  return urlFor(name);
}

const verify = (url: string, ...args: string[]) => pgstack(["verify", "--dir", dir, "--json", "--cache-dir", cacheDir, "--snapshots-dir", snapshotsDir, ...args], { DATABASE_URL: url });

test("the untouched database passes the database, ledger and drift checks (no snapshot yet: a warning), replaying the history once and then from the cache", async () => {
  const url = await copyOfBase();
  const first = await verify(url);
  expect(first.stderr).toBe("");
  expect(first.code).toBe(0);
  const checks = checksOf(first.stdout);
  expect(checks.map((c) => [c.name, c.status])).toEqual([
    ["database", "pass"],
    ["ledger", "pass"],
    ["drift", "pass"],
    ["snapshot", "warn"],
  ]);
  expect(first.stdout).toContain("The database has no snapshot to roll back to");
  const drift = checks.find((c) => c.name === "drift")!;
  expect(drift.details.cached).toBe(false);
  expect(drift.details.objects).toEqual([]);
  const second = checksOf((await verify(url)).stdout).find((c) => c.name === "drift")!;
  expect(second.details.cached).toBe(true);
  expect(second.status).toBe("pass");
}, 120_000);

describe.each(CASES)("$change", (c) => {
  test(`is named with its DDL (${c.class})`, async () => {
    const url = await copyOfBase();
    await withDb(url, (client) => client.query(c.sql));
    const result = await verify(url);
    const drift = checksOf(result.stdout).find((x) => x.name === "drift")!;
    const found = drift.details.objects!.filter((o) => `${o.kind} ${o.name}` === c.object);
    expect(found).toHaveLength(1);
    expect(found[0].class).toBe(c.class);
    expect(found[0].ddl.join("\n")).toMatch(c.ddl);
    // Nothing else is reported: the change is the only drift.
    expect(drift.details.objects!.map((o) => `${o.kind} ${o.name}`)).toEqual([c.object]);
    if (c.class === "changed") {
      // Default policy: changed objects fail, with the object and its DDL in the sentence on stderr.
      expect(result.code).toBe(1);
      expect(drift.status).toBe("fail");
      expect(result.stderr).toContain(c.object);
    } else {
      // Default policy: an object no migration made is a warning (README, "Verify")...
      expect(result.code).toBe(0);
      expect(drift.status).toBe("warn");
      // ...and fails with --extra fail (pgstack:drift.extra: fail).
      const strict = await verify(url, "--extra", "fail");
      expect(strict.code).toBe(1);
      expect(strict.stderr).toContain(c.object);
    }
    // Allowed by name, it is reported but not counted.
    const allowedRun = await verify(url, "--allow", c.object);
    expect(allowedRun.code).toBe(0);
    const allowedDrift = checksOf(allowedRun.stdout).find((x) => x.name === "drift")!;
    expect(allowedDrift.status).toBe("pass");
    expect(allowedDrift.details.objects!.every((o) => o.allowed)).toBe(true);
  }, 120_000);
});

test("the text output prints the DDL object by object", async () => {
  const url = await copyOfBase();
  await withDb(url, (client) => client.query(`ALTER TABLE users ADD COLUMN nickname text`));
  const result = await pgstack(["verify", "--dir", dir, "--cache-dir", cacheDir], { DATABASE_URL: url });
  expect(result.code).toBe(1);
  expect(result.stdout).toMatch(/FAIL +drift: /);
  expect(result.stdout).toMatch(/changed table public\.users \(changed\):\n +alter table "public"\."users" add column "nickname" text;/);
  expect(result.stderr).toMatch(/^pgstack: drift: The schema differs from what the 11 applied migrations make: changed: table public\.users/);
}, 120_000);

test("ledger health: a failed migration, an edited file and a folder gone each fail the ledger check", async () => {
  const url = await copyOfBase();
  const edited = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-verify-edited-"));
  await fs.cp(dir, edited, { recursive: true });
  await fs.appendFile(path.join(edited, "20250203141527_add_projects", "migration.sql"), "\n-- edited\n");
  await fs.rm(path.join(edited, "20270101000000_touch_function"), { recursive: true });
  await writeMigrations(edited, { "20280101000000_broken": "SELECT 1/0;" });
  await pgstack(["apply", "--all", "--dir", path.join(edited)], { DATABASE_URL: url }).catch(() => undefined);
  const result = await pgstack(["verify", "--dir", edited, "--json", "--cache-dir", cacheDir], { DATABASE_URL: url });
  expect(result.code).toBe(1);
  const ledger = checksOf(result.stdout).find((c) => c.name === "ledger")!;
  expect(ledger.status).toBe("fail");
  expect(ledger.details.sentence).toMatch(/20250203141527_add_projects changed after it was applied/);
  expect(ledger.details.sentence).toMatch(/20270101000000_touch_function is in the ledger but missing from the migrations folder/);
}, 120_000);

test("database health: an INVALID index fails, a NOT VALID constraint warns, a server of another major fails", async () => {
  const url = await copyOfBase();
  await withDb(url, async (client) => {
    await client.query(`ALTER TABLE projects ADD CONSTRAINT projects_name_len CHECK (length(name) < 500) NOT VALID`);
  });
  const warned = checksOf((await verify(url, "--allow", "*projects_name_len")).stdout).find((c) => c.name === "database")!;
  expect(warned.status).toBe("warn");
  expect(warned.details.sentence).toMatch(/projects_name_len on public\.projects is NOT VALID/);
  await withDb(url, async (client) => {
    await client.query(`INSERT INTO users (id, email, updated_at) VALUES ('a', 'x@example.com', now()), ('b', 'x@example.com', now())`).catch(() => undefined);
    await client.query(`INSERT INTO organizations (id, name, slug, updated_at) VALUES ('o1', 'a', 's1', now()), ('o2', 'a', 's2', now())`);
    await client.query(`CREATE UNIQUE INDEX CONCURRENTLY organizations_name_key ON organizations(name)`).catch(() => undefined);
  });
  const failed = await verify(url, "--allow", "*projects_name_len", "--allow", "*organizations_name_key", "--postgres-version", "99");
  expect(failed.code).toBe(1);
  const database = checksOf(failed.stdout).find((c) => c.name === "database")!;
  expect(database.status).toBe("fail");
  expect(database.details.sentence).toMatch(/index public\.organizations_name_key is INVALID/);
  expect(database.details.sentence).toMatch(/runs PostgreSQL \d+ but the stack is configured for 99/);
}, 120_000);

test("snapshot health: the latest snapshot verifies, and fails verify once it was changed", async () => {
  const url = await copyOfBase();
  const made = await pgstack(["snapshot", "create", "--stack", "dev", "--engine", "template", "--json", "--snapshots-dir", snapshotsDir], { DATABASE_URL: url });
  expect(made.code).toBe(0);
  const id = (JSON.parse(made.stdout) as { snapshotId: string }).snapshotId;
  const ok = await verify(url);
  expect(ok.code).toBe(0);
  const snapshot = checksOf(ok.stdout).find((c) => c.name === "snapshot")!;
  expect(snapshot.status).toBe("pass");
  expect(snapshot.details.sentence).toContain(`Snapshot '${id}' (read in place) verified`);
  await adminQuery(`ALTER DATABASE "${id}" ALLOW_CONNECTIONS true`);
  await withDb(urlFor(id), (c) => c.query(`ALTER TABLE users ADD COLUMN x int`));
  await adminQuery(`ALTER DATABASE "${id}" ALLOW_CONNECTIONS false`);
  const bad = await verify(url);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain(`snapshot: Snapshot '${id}' (read in place) no longer matches the schema digest recorded when it was taken`);
}, 120_000);

test("plan reports drift found on the live database (text, --json, --markdown); --strict refuses it with the DDL unless --accept-drift", async () => {
  const url = await copyOfBase();
  await withDb(url, (client) => client.query(`ALTER TABLE users ADD COLUMN nickname text`));
  const env = { DATABASE_URL: url };
  const base = ["plan", "--dir", dir];
  const json = await pgstack([...base, "--json"], env);
  expect(json.code).toBe(0);
  const planned = JSON.parse(json.stdout) as { drift: { status: string; objects: Array<{ kind: string; name: string; ddl: string[] }> } };
  expect(planned.drift.status).toBe("fail");
  expect(planned.drift.objects.map((o) => `${o.kind} ${o.name}`)).toEqual(["table public.users"]);
  const text = await pgstack(base, env);
  expect(text.stdout).toMatch(/Drift: The schema differs from what the 11 applied migrations make: changed: table public\.users/);
  expect(text.stdout).toContain('alter table "public"."users" add column "nickname" text;');
  const markdown = await pgstack([...base, "--markdown"], env);
  expect(markdown.stdout).toContain("#### Drift");
  expect(markdown.stdout).toMatch(/\*\*changed\*\* table `public\.users` \(changed\):\n\n  ```sql\n  alter table "public"\."users" add column "nickname" text;/);
  const strict = await pgstack([...base, "--strict"], env);
  expect(strict.code).toBe(1);
  expect(strict.stderr).toMatch(/^pgstack: The plan refuses to deploy onto a database that differs from its migrations \(lint: strict\): .*alter table "public"\."users" add column "nickname" text;.*--accept-drift/);
  expect((await pgstack([...base, "--strict", "--accept-drift"], env)).code).toBe(0);
  // Untouched: nothing to report, strict passes.
  const clean = await copyOfBase();
  const cleanPlan = await pgstack([...base, "--strict", "--json"], { DATABASE_URL: clean });
  expect(cleanPlan.code).toBe(0);
  expect(JSON.parse(cleanPlan.stdout).drift).toMatchObject({ status: "pass", objects: [] });
}, 120_000);

test("usage errors exit 2", async () => {
  const url = await copyOfBase();
  expect((await verify(url, "--extra", "maybe")).code).toBe(2);
  expect((await verify(url, "--postgres-version", "fifteen")).code).toBe(2);
}, 60_000);
