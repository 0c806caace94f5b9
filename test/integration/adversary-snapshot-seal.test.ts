/**
 * Adversarial (issue 22 follow-up, test only). The README says of a template
 * snapshot "no role can connect to it" and that a restore refuses when the
 * snapshot "was changed since". Two ways it is changed and restored as
 * "Restored":
 *  - pgstack run as a non-superuser CREATEDB role (the usual managed-database
 *    setup, often the application's role too) owns the snapshot database, so
 *    that role can ALTER DATABASE ... ALLOW_CONNECTIONS true, change a row,
 *    recompute the unkeyed md5 digest and COMMENT the snapshot again;
 *  - the recorded digests cover rows only: a trigger function's body (or a
 *    column added to an empty table) changed in the snapshot comes back.
 */
import { Client } from "pg";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { pgstack } from "../support/cli";
import { adminQuery, createTestDatabase, withDb } from "../support/cluster";
import { migrationsDir } from "../support/fixtures";
import { createTestRole, type TestRole } from "../support/roles";

jest.setTimeout(300_000);

const BASE = "20250101000000_base";
let role: TestRole;

beforeAll(async () => {
  role = await createTestRole("adv_owner", { createdb: true });
});
afterAll(async () => {
  await role?.drop();
});

async function as(url: string, sql: string): Promise<{ rows: Record<string, unknown>[] }> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

async function setup(): Promise<{ url: string; dir: string; snap: string; db: string }> {
  const adminUrl = await createTestDatabase("adv_seal");
  const db = new URL(adminUrl).pathname.slice(1);
  await adminQuery(`ALTER DATABASE "${db}" OWNER TO "${role.name}"`);
  await withDb(adminUrl, (c) => c.query(`ALTER SCHEMA public OWNER TO "${role.name}"`));
  const url = role.urlFor(db);
  const dir = await migrationsDir({
    [BASE]:
      "CREATE TABLE acct (id int PRIMARY KEY, balance int);\nCREATE TABLE empty_t (id int);\n" +
      "CREATE FUNCTION acct_guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n" +
      "CREATE TRIGGER acct_guard BEFORE INSERT ON acct FOR EACH ROW EXECUTE FUNCTION acct_guard();\n",
  });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  await as(url, "INSERT INTO acct SELECT g, 100 FROM generate_series(1, 10) g");
  const made = await pgstack(["snapshot", "create", "--stack", "dev", "--engine", "template", "--json"], { DATABASE_URL: url });
  expect(made.code).toBe(0);
  const { rows } = await adminQuery(`SELECT datname FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE '%"source":"${db}"%' AND datname LIKE 'snap_%'`);
  return { url, dir, snap: String(rows[0].datname), db };
}

it("the owning non-superuser role cannot reopen, change and re-seal a snapshot that a restore then brings back", async () => {
  const { url, snap, db } = await setup();
  const mine = role.urlFor(db);
  const reopened = await as(mine, `ALTER DATABASE "${snap}" ALLOW_CONNECTIONS true`).then(() => true, () => false);
  if (reopened) {
    await as(role.urlFor(snap), "UPDATE acct SET balance = 1000000 WHERE id = 1");
    const { rows } = await as(role.urlFor(snap), "SELECT md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS d FROM (SELECT md5(x::text) AS h FROM public.acct x) s");
    const old = (await adminQuery(`SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1`, [snap])).rows[0].c as string;
    const label = JSON.parse(old);
    label.states["public.acct"].digest = rows[0].d;
    // Quoted as a SQL literal: the record's methodReason may hold an apostrophe ("the data directory's file system").
    await as(mine, `COMMENT ON DATABASE "${snap}" IS '${JSON.stringify(label).replace(/'/g, "''")}'`);
    await as(mine, `ALTER DATABASE "${snap}" ALLOW_CONNECTIONS false`);
  }
  const r = await pgstack(["snapshot", "restore", snap, "--yes"], { DATABASE_URL: url });
  const balance = (await as(url, "SELECT balance FROM acct WHERE id = 1")).rows[0].balance;
  // PostgreSQL lets a database's owner ALTER it (and a non-superuser cannot give a database
  // away), so the owner can reopen it: what must hold is that the restore refuses, naming it,
  // because the forged digests do not match their seal (a key the database never sees).
  expect(reopened).toBe(true);
  expect({ code: r.code, forgedRowBack: balance === 1000000, namesIt: r.stderr.includes(snap) }).toEqual({ code: 1, forgedRowBack: false, namesIt: true });
});

it("a restore refuses a snapshot whose trigger function or empty table was changed after it was taken", async () => {
  const { url, snap } = await setup();
  await adminQuery(`ALTER DATABASE "${snap}" ALLOW_CONNECTIONS true`);
  await as(role.urlFor(snap), "CREATE OR REPLACE FUNCTION acct_guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.balance := 0; RETURN NEW; END $$; ALTER TABLE empty_t ADD COLUMN planted text");
  await adminQuery(`ALTER DATABASE "${snap}" ALLOW_CONNECTIONS false`);
  const r = await pgstack(["snapshot", "restore", snap, "--yes"], { DATABASE_URL: url });
  const body = (await as(url, "SELECT prosrc FROM pg_proc WHERE proname = 'acct_guard'")).rows[0].prosrc as string;
  expect({ code: r.code === 0 ? 0 : 1, planted: body.includes("NEW.balance := 0") }).toEqual({ code: 1, planted: false });
});
