/**
 * Issue 22 (adversary items 1 and 7): what the reverted migrations' own
 * statements say a reverse cannot give back. A conditional create
 * (IF NOT EXISTS, OR REPLACE) may have met an object made before by hand:
 * the reverse would drop it, so it is a loss naming it (never "created"), and
 * the revert refuses without --accept-loss. Data changes (UPDATE, DELETE,
 * INSERT into an existing table...) are in no schema: losses too, said by
 * `plan --rehearse`. Writes into a table the reverted migrations created, and
 * OR REPLACE of a function the kept history made, lose nothing more than the
 * drops already reported.
 */
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { pgstack } from "../support/cli";
import { createTestDatabase, withDb } from "../support/cluster";
import { tableDigests } from "../support/data";
import { migrationsDir } from "../support/fixtures";

jest.setTimeout(300_000);

const BASE = "20250101000000_base";
const ADOPT = "20250102000000_adopt";

it("names each conditionally created object the reverse would drop as a loss, with its rows, refuses without --accept-loss, and never lists it as created", async () => {
  const url = await createTestDatabase("revert_stmt_adopt");
  const dir = await migrationsDir({
    [BASE]: "CREATE TABLE users (id int PRIMARY KEY, email text);\nCREATE FUNCTION kept_fn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n",
    [ADOPT]:
      "CREATE TABLE IF NOT EXISTS audit (id int PRIMARY KEY, what text);\n" +
      "CREATE OR REPLACE FUNCTION hand_fn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n" +
      "CREATE INDEX IF NOT EXISTS users_email_idx ON users (email);\n" +
      "CREATE OR REPLACE FUNCTION kept_fn() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;\n" +
      "CREATE TABLE fresh (id int);\nINSERT INTO fresh VALUES (1), (2);\n",
  });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all", to: BASE }, memoryLogger());
  await withDb(url, (c) =>
    c.query(`CREATE TABLE audit (id int PRIMARY KEY, what text);
             INSERT INTO audit SELECT g, 'precious ' || g FROM generate_series(1, 500) g;`),
  );
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  const before = await tableDigests(url);

  const shown = await pgstack(["revert", "--to", BASE, "--json", "--dir", dir], { DATABASE_URL: url });
  expect(shown.code).toBe(0);
  const plan = JSON.parse(shown.stdout).plan;
  // fresh was created unconditionally: a drop, its seed rows with it (no separate loss); kept_fn exists at the target.
  expect(plan.drops).toEqual([{ kind: "table", name: "fresh", holds: 2 }]);
  expect(plan.losses).toEqual([
    `table audit may have existed before ${ADOPT} ran (IF NOT EXISTS, line 1): the reverse would drop it with its 500 rows`,
    `function hand_fn may have existed before ${ADOPT} ran (OR REPLACE, line 2): the reverse would drop it`,
    `index users_email_idx may have existed before ${ADOPT} ran (IF NOT EXISTS, line 3): the reverse would drop it`,
  ]);

  const refused = await pgstack(["revert", "--to", BASE, "--yes", "--dir", dir], { DATABASE_URL: url });
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain("table audit may have existed before");
  expect(refused.stderr).toContain("--accept-loss");
  // The section of what the reverted migrations created lists fresh alone.
  const created = refused.stderr.slice(refused.stderr.indexOf("created"), refused.stderr.indexOf("It cannot give back"));
  expect(created).toContain("fresh");
  expect(created).not.toMatch(/audit|hand_fn|users_email_idx/);
  expect(await tableDigests(url)).toEqual(before);

  const accepted = await pgstack(["revert", "--to", BASE, "--yes", "--accept-loss", "--dir", dir], { DATABASE_URL: url });
  expect(accepted.code).toBe(0);
  expect(await withDb(url, async (c) => (await c.query("SELECT to_regclass('audit') AS a, to_regclass('fresh') AS f")).rows[0])).toEqual({ a: null, f: null });
});

it("a data-changing migration is a loss naming the statement, in plan --rehearse and in the revert", async () => {
  const DATA = "20250103000000_data";
  const url = await createTestDatabase("revert_stmt_data");
  const dir = await migrationsDir({
    [BASE]: "CREATE TABLE users (id int PRIMARY KEY, email text);\nINSERT INTO users VALUES (1, 'Alice@X'), (2, 'Bob@Y');\n",
    [DATA]: "CREATE TEMP TABLE scratch (id int);\nINSERT INTO scratch VALUES (1);\nUPDATE users SET email = lower(email);\n\nWITH gone AS (DELETE FROM users WHERE id = 2 RETURNING id) SELECT count(*) FROM gone;\n",
  });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all", to: BASE }, memoryLogger());
  const losses = [
    `${DATA} changes data (UPDATE users, line 3): the reverse does not give back the rows it changed`,
    `${DATA} changes data (DELETE FROM users, line 5): the reverse does not give back the rows it changed`,
  ];
  const plan = JSON.parse((await pgstack(["plan", "--rehearse", "--json", "--dir", dir], { DATABASE_URL: url })).stdout);
  expect(plan.revert).toEqual([{ migration: DATA, withoutLoss: false, losses, drops: [] }]);
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  const before = await tableDigests(url);
  const r = await pgstack(["revert", "--to", BASE, "--yes", "--dir", dir], { DATABASE_URL: url });
  expect(r.code).not.toBe(0);
  for (const l of losses) expect(r.stderr).toContain(l);
  expect(await tableDigests(url)).toEqual(before);
});
