/**
 * Issue 14: a revert that keeps the data, with the real CLI against real
 * PostgreSQL. A deploy adds a column, a table, an index and a constraint and
 * changes a default; the application then inserts, updates and deletes;
 * `pgstack revert --to <before>` gives back the schema before the deploy
 * (pg_dump -s equal to the history replayed up to it), keeps every row of
 * the tables that existed before (content digests), and its report names
 * exactly what it drops with what that holds. A reverse that cannot give
 * data back is refused without --accept-loss; a failing reverse changes
 * nothing.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations, migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { comparableSchema } from "../../infra/core/revert/revert";
import { dumpSchema } from "../../infra/core/snapshot/dump";
import { pgstack } from "../support/cli";
import { createTestDatabase, withDb } from "../support/cluster";
import { databasesLike } from "../support/data";
import { migrationsDir, writeMigrations } from "../support/fixtures";

jest.setTimeout(300_000);

const BASE = "20250101000000_base";
const DEPLOY = "20250102000000_deploy";
const DROP = "20250103000000_drop_legacy";

const BASE_SQL = `CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, status text NOT NULL DEFAULT 'active', legacy text);
CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), total numeric(10,2) NOT NULL);
INSERT INTO users SELECT g, 'u' || g || '@example.com', 'active', 'old ' || g FROM generate_series(1, 300) g;
INSERT INTO orders SELECT g, 1 + g % 300, g * 1.5 FROM generate_series(1, 900) g;
`;
const DEPLOY_SQL = `ALTER TABLE users ADD COLUMN nickname text;
CREATE TABLE tags (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), label text NOT NULL);
CREATE INDEX orders_total_idx ON orders(total);
ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0);
ALTER TABLE users ALTER COLUMN status SET DEFAULT 'new';
`;

/** Content digest of the rows of the tables that existed before the deploy, in their columns then. */
async function keptDigest(url: string): Promise<string> {
  return withDb(url, async (c) => {
    const users = await c.query("SELECT md5(string_agg(id || '|' || email || '|' || status || '|' || coalesce(legacy, '~'), ',' ORDER BY id)) AS d FROM users");
    const orders = await c.query("SELECT md5(string_agg(id || '|' || user_id || '|' || total, ',' ORDER BY id)) AS d FROM orders");
    return `${users.rows[0].d}/${orders.rows[0].d}`;
  });
}

/** pg_dump -s of a fresh database with the history applied up to `to`. */
async function schemaUpTo(dir: string, to: string): Promise<string> {
  const url = await createTestDatabase("revert_expected");
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all", to }, memoryLogger());
  return dumpSchema(url);
}

describe("pgstack revert", () => {
  let url: string;
  let dir: string;
  const cli = (args: string[], env: Record<string, string> = {}) => pgstack([...args, "--dir", dir], { DATABASE_URL: url, ...env });
  const status = async () => Object.fromEntries((await migrationStatus(resolveSettings({ url, dir }))).map((m) => [m.name, m.state]));

  beforeAll(async () => {
    url = await createTestDatabase("revert");
    dir = await migrationsDir({ [BASE]: BASE_SQL, [DEPLOY]: DEPLOY_SQL });
    await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
    // The application after the deploy: inserts, updates and deletes in old and new tables.
    await withDb(url, async (c) => {
      await c.query("INSERT INTO users (id, email, nickname) SELECT g, 'late' || g || '@example.com', 'nick ' || g FROM generate_series(301, 340) g");
      await c.query("UPDATE users SET nickname = 'n' || id WHERE id % 10 = 0");
      await c.query("UPDATE orders SET total = total + 1 WHERE id % 7 = 0");
      await c.query("DELETE FROM orders WHERE id > 880");
      await c.query("INSERT INTO tags (user_id, label) SELECT 1 + g % 340, 'tag ' || g FROM generate_series(1, 25) g");
    });
  });

  it("without --yes shows what it would drop, with what it holds, and changes nothing", async () => {
    const before = await keptDigest(url);
    const r = await cli(["revert", "--to", BASE, "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.reverted).toBe(false);
    expect(out.plan.reverted).toEqual([DEPLOY]);
    // Exactly the column and the table the deploy created, and its constraint, with what they hold now.
    expect(out.plan.drops).toEqual([
      { kind: "table", name: "tags", holds: 25 },
      { kind: "column", name: "users.nickname", holds: 40 + 34 - 4 },
      { kind: "constraint", name: "orders_total_positive" },
    ]);
    expect(out.plan.losses).toEqual([]);
    expect(await keptDigest(url)).toBe(before);
    expect((await status())[DEPLOY]).toBe("applied");
  });

  it("--yes gives back the schema before the deploy and keeps every row of the tables that existed before it", async () => {
    const before = await keptDigest(url);
    const r = await cli(["revert", "--to", BASE, "--yes"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/table\s+tags\s+25 rows/);
    expect(r.stderr).toMatch(/column\s+users\.nickname\s+70 non-null values/);
    expect(r.stderr).toContain("rehearsed on a copy with data: the schema after the reverse equals");
    expect(await dumpSchema(url)).toBe(await schemaUpTo(dir, BASE));
    expect(await keptDigest(url)).toBe(before);
    // The ledger marks the deploy rolled back, as Prisma marks a migration it will run again.
    expect((await status())[DEPLOY]).toBe("pending");
    expect(await databasesLike("pgstack_re")).toEqual([]);
  });

  it("refuses, naming the column, to revert a migration that dropped a column, unless --accept-loss", async () => {
    await writeMigrations(dir, { [DROP]: "ALTER TABLE users DROP COLUMN legacy;\n" });
    await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
    await withDb(url, (c) => c.query("INSERT INTO orders VALUES (5000, 1, 9.99)"));
    const before = await keptDigest(url).catch(() => "");
    const schemaBefore = await dumpSchema(url);
    const refused = await cli(["revert", "--to", DEPLOY, "--yes"]);
    expect(refused.code).not.toBe(0);
    const said = refused.stderr.split("\n").filter((l) => l.startsWith("pgstack:"));
    expect(said).toHaveLength(1);
    expect(said[0]).toContain("column users.legacy was dropped by a reverted migration");
    expect(said[0]).toContain("--accept-loss");
    expect(await dumpSchema(url)).toBe(schemaBefore);
    expect(await keptDigest(url).catch(() => "")).toBe(before);
  });

  it("a failing reverse (a hand-written down.sql wins over the computed one) changes nothing and names the line", async () => {
    await fs.writeFile(path.join(dir, DROP, "down.sql"), "ALTER TABLE users ADD COLUMN legacy text;\nSELECT 1 / 0;\n");
    const schemaBefore = await dumpSchema(url);
    const r = await cli(["revert", "--to", DEPLOY, "--yes", "--accept-loss"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/The reverse of 20250103000000_drop_legacy \(down\.sql\) failed on the rehearsal copy at line 2: division by zero; nothing was changed\./);
    expect(await dumpSchema(url)).toBe(schemaBefore);
    expect((await status())[DROP]).toBe("applied");
  });

  it("refuses a down.sql with its own transaction control, naming its line, before anything runs", async () => {
    await fs.writeFile(path.join(dir, DROP, "down.sql"), "BEGIN;\nALTER TABLE users ADD COLUMN legacy text;\nCOMMIT;\n");
    const r = await cli(["revert", "--to", DEPLOY, "--yes", "--accept-loss"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`pgstack: ${DROP}/down.sql has its own transaction control at line 1: pgstack runs the whole reverse in one transaction, so remove it; nothing was changed.`);
    expect((await status())[DROP]).toBe("applied");
  });

  it("killed before its commit, the revert leaves the database as it was", async () => {
    await fs.writeFile(path.join(dir, DROP, "down.sql"), "ALTER TABLE users ADD COLUMN legacy text;\n");
    const schemaBefore = await dumpSchema(url);
    const r = await cli(["revert", "--to", DEPLOY, "--yes", "--accept-loss"], { PGSTACK_FAILPOINT: "revert:before-commit" });
    expect(r.signal).toBe("SIGKILL");
    expect(await dumpSchema(url)).toBe(schemaBefore);
    expect((await status())[DROP]).toBe("applied");
  });

  it("with --accept-loss and the down.sql, gives back the schema before the drop", async () => {
    const r = await cli(["revert", "--to", DEPLOY, "--yes", "--accept-loss"]);
    if (r.code !== 0) throw new Error(r.stderr);
    // The column comes back last: equal but for column order, which Prisma's schema diff ignores too.
    expect(comparableSchema(await dumpSchema(url))).toEqual(comparableSchema(await schemaUpTo(dir, DEPLOY)));
    expect(await dumpSchema(url)).not.toBe(await schemaUpTo(dir, DEPLOY));
    expect((await status())[DROP]).toBe("pending");
  });
});
