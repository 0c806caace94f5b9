/**
 * Adversarial (issue 22 follow-up, test only). A reverted migration that
 * adopts objects which already existed outside the history
 * (`CREATE TABLE IF NOT EXISTS`, `CREATE OR REPLACE FUNCTION`,
 * `CREATE INDEX IF NOT EXISTS`) did not create them, yet the reverse, being
 * computed from the history replayed into an empty database, drops them with
 * everything they hold: no --accept-loss asked, and the report says the
 * reverted migrations "created" the table. The README promises that the
 * reverse changes only what the reverted migrations changed.
 */
import { Client } from "pg";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { pgstack } from "../support/cli";
import { createTestDatabase, withDb } from "../support/cluster";
import { migrationsDir } from "../support/fixtures";

jest.setTimeout(300_000);

const BASE = "20250101000000_base";
const ADOPT = "20250102000000_adopt";

it("a revert of a migration that adopted pre-existing objects with IF NOT EXISTS / OR REPLACE leaves them and their rows", async () => {
  const url = await createTestDatabase("revert_adopt");
  const dir = await migrationsDir({
    [BASE]: "CREATE TABLE users (id int PRIMARY KEY, email text);\n",
    [ADOPT]:
      "CREATE TABLE IF NOT EXISTS audit (id int PRIMARY KEY, what text);\n" +
      "CREATE OR REPLACE FUNCTION hand_fn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n" +
      "CREATE INDEX IF NOT EXISTS users_email_idx ON users (email);\n",
  });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all", to: BASE }, memoryLogger());
  // Made by hand (or another service) before the adopting migration ran.
  await withDb(url, (c) =>
    c.query(`CREATE TABLE audit (id int PRIMARY KEY, what text);
             INSERT INTO audit SELECT g, 'precious ' || g FROM generate_series(1, 500) g;
             CREATE FUNCTION hand_fn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
             CREATE INDEX users_email_idx ON users (email);`),
  );
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());

  const r = await pgstack(["revert", "--to", BASE, "--yes", "--dir", dir], { DATABASE_URL: url });
  const left = await withDb(url, async (c) =>
    (
      await c.query(
        "SELECT to_regclass('audit') IS NOT NULL AS audit, to_regprocedure('hand_fn()') IS NOT NULL AS hand_fn, to_regclass('users_email_idx') IS NOT NULL AS idx",
      )
    ).rows[0],
  );
  // Either refused (nothing changed) or reverted leaving what the migration did not create.
  expect({ code: r.code, left }).toEqual({ code: r.code, left: { audit: true, hand_fn: true, idx: true } });
  if (r.code === 0) expect(await withDb(url, async (c) => (await c.query("SELECT count(*)::int AS n FROM audit")).rows[0].n)).toBe(500);
  expect(r.stdout + r.stderr).not.toMatch(/drops what the reverted migrations created[\s\S]*audit\s+500 rows/);
});

/**
 * A hand-made trigger on a table the reverse changes (the reverted migration
 * added users.nick) writes that column: PostgreSQL records no dependency of a
 * PL/pgSQL body on a column, so the rehearsal's schema comparison passes,
 * the reverse drops the column, and every INSERT into users fails afterwards.
 * An object outside the history on a table the reverse must change should be
 * refused (naming it), as a column added by hand there is.
 */
it("a revert refuses, naming it, a hand-made trigger on a table the reverse changes, rather than leave every insert failing", async () => {
  const NICK = "20250103000000_nick";
  const url = await createTestDatabase("revert_trigger");
  const dir = await migrationsDir({ [BASE]: "CREATE TABLE users (id int PRIMARY KEY, email text);\n", [NICK]: "ALTER TABLE users ADD COLUMN nick text;\n" });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  await withDb(url, (c) =>
    c.query(`CREATE FUNCTION users_nick() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.nick := lower(NEW.email); RETURN NEW; END $$;
             CREATE TRIGGER users_nick BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION users_nick();
             INSERT INTO users (id, email) VALUES (1, 'A@x');`),
  );
  const r = await pgstack(["revert", "--to", BASE, "--yes", "--dir", dir], { DATABASE_URL: url });
  const insert = await withDb(url, (c) => c.query("INSERT INTO users (id, email) VALUES (2, 'B@x')")).then(() => "ok", (e: Error) => e.message);
  expect({ insertAfter: insert }).toEqual({ insertAfter: "ok" });
  if (r.code !== 0) expect(r.stderr).toContain("users_nick");
});

/**
 * The revert's report counts what it drops when the plan is made ("with what
 * it holds now") and never again: an application still writing into the
 * table the reverted migration created keeps writing until the reverse's
 * commit, and those acknowledged writes are dropped without being counted
 * anywhere (a restore counts with the database closed and prints the count
 * with its result). The dropped rows printed must be the rows dropped.
 */
it("the revert's printed count of a dropped table's rows is the number it dropped, with an application writing into it", async () => {
  const GOOD = "20250103000000_good";
  const url = await createTestDatabase("revert_count");
  const dir = await migrationsDir({ [BASE]: "CREATE TABLE users (id int PRIMARY KEY, email text);\n", [GOOD]: "CREATE TABLE good_t (id serial PRIMARY KEY, v text);\n" });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  let acknowledged = 0;
  let stop = false;
  const app = new Client({ connectionString: url });
  await app.connect();
  app.on("error", () => undefined);
  const writing = (async () => {
    while (!stop) {
      try {
        await app.query("INSERT INTO good_t (v) VALUES ('w')");
        acknowledged++;
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 3));
    }
  })();
  await new Promise((r) => setTimeout(r, 500));
  const r = await pgstack(["revert", "--to", BASE, "--yes", "--dir", dir], { DATABASE_URL: url });
  stop = true;
  await writing;
  await app.end().catch(() => undefined);
  expect(r.code).toBe(0);
  const printed = [...(r.stdout + r.stderr).matchAll(/good_t\s+(\d+) rows/g)].map((m) => Number(m[1]));
  // The last count printed for good_t is what the revert dropped: every acknowledged write.
  expect({ printedLast: printed[printed.length - 1] }).toEqual({ printedLast: acknowledged });
});

/**
 * A reverted migration that changes data only (UPDATE, DELETE) has an empty
 * computed reverse: the revert says "20250104000000_data is undone" and
 * `plan --rehearse` says "revertible without loss", though the deleted row and
 * the rewritten values are not given back. What the reverse cannot give back
 * should be said (and refused without --accept-loss), not reported undone.
 */
it("a data-only migration is not reported 'revertible without loss' nor reverted as 'undone' without --accept-loss", async () => {
  const DATA = "20250104000000_data";
  const url = await createTestDatabase("revert_data");
  const dir = await migrationsDir({
    [BASE]: "CREATE TABLE users (id int PRIMARY KEY, email text);\nINSERT INTO users VALUES (1, 'Alice@X'), (2, 'Bob@Y');\n",
    [DATA]: "UPDATE users SET email = lower(email);\nDELETE FROM users WHERE id = 2;\n",
  });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all", to: BASE }, memoryLogger());
  const plan = await pgstack(["plan", "--rehearse", "--dir", dir], { DATABASE_URL: url });
  expect(plan.stdout + plan.stderr).not.toContain(`${DATA}: revertible without loss`);
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  const r = await pgstack(["revert", "--to", BASE, "--yes", "--dir", dir], { DATABASE_URL: url });
  const rows = await withDb(url, async (c) => (await c.query("SELECT id, email FROM users ORDER BY id")).rows);
  // Either the rows are back as they were, or the revert refused without --accept-loss.
  expect(r.code === 0 ? rows : "refused").toEqual(r.code === 0 ? [{ id: 1, email: "Alice@X" }, { id: 2, email: "Bob@Y" }] : "refused");
});
