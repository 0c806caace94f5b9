/**
 * Issue 22, item 1: a revert changes only what the reverted migrations
 * changed. A database also holds objects the migration history never made (a
 * hand-made table an application writes into, another service's table, a
 * view, a function, an index): the reverse of a migration that created
 * `good_t` drops `good_t` alone, its report names `good_t` and not those
 * objects (listed as drift, left as they are), and no acknowledged write of
 * the application is lost. An object the reverse must change that differs in
 * the database from what the history builds is refused, naming it.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { memoryLogger } from "../../infra/core/logger";
import { applyMigrations, migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { dumpSchema } from "../../infra/core/snapshot/dump";
import { pgstack } from "../support/cli";
import { createTestDatabase, withDb } from "../support/cluster";
import { databasesLike, tableDigests } from "../support/data";
import { migrationsDir } from "../support/fixtures";
import { expectOneSentence } from "../support/sentence";
import { startWriter } from "../support/writer";

jest.setTimeout(300_000);

const BASE = "20250101000000_base";
const GOOD = "20250102000000_good_t";

const HAND_MADE = `CREATE TABLE lw (id serial PRIMARY KEY, tag text NOT NULL);
CREATE TABLE probe_w (id int PRIMARY KEY, note text);
INSERT INTO probe_w VALUES (1, 'made by another service');
CREATE INDEX lw_tag_idx ON lw (tag);
CREATE INDEX users_email_by_hand_idx ON users (email);
CREATE VIEW lw_recent AS SELECT tag FROM lw ORDER BY id DESC LIMIT 10;
CREATE FUNCTION lw_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM lw';`;

/** What exists of the hand-made objects, by name. */
async function handMade(url: string): Promise<Record<string, boolean>> {
  return withDb(url, async (c) => {
    const { rows } = await c.query(
      `SELECT to_regclass('lw') IS NOT NULL AS lw, to_regclass('probe_w') IS NOT NULL AS probe_w, to_regclass('lw_tag_idx') IS NOT NULL AS lw_tag_idx,
              to_regclass('users_email_by_hand_idx') IS NOT NULL AS users_email_by_hand_idx, to_regclass('lw_recent') IS NOT NULL AS lw_recent,
              to_regprocedure('lw_count()') IS NOT NULL AS lw_count, to_regclass('good_t') IS NOT NULL AS good_t`,
    );
    return rows[0];
  });
}

describe("a revert leaves what the migration history did not make alone", () => {
  let url: string;
  let dir: string;
  const cli = (args: string[]) => pgstack([...args, "--dir", dir], { DATABASE_URL: url });

  beforeEach(async () => {
    url = await createTestDatabase("revert_drift");
    dir = await migrationsDir({
      [BASE]: "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);\nINSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 50) g;\n",
      [GOOD]: "CREATE TABLE good_t (id int);\n",
    });
    await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
    await withDb(url, (c) => c.query(HAND_MADE));
  });

  it("drops good_t alone, reports only it, and loses none of the writes an application makes into a hand-made table meanwhile", async () => {
    await withDb(url, (c) => c.query("INSERT INTO good_t VALUES (1), (2)"));
    const others = async () => {
      const d = await tableDigests(url);
      delete d["public.lw"];
      delete d["public.good_t"];
      delete d["public._prisma_migrations"];
      return d;
    };
    const before = await others();
    const writer = startWriter(url, "lw", 20);
    await new Promise((r) => setTimeout(r, 300));
    const r = await cli(["revert", "--to", BASE, "--yes"]);
    await new Promise((r) => setTimeout(r, 300));
    const written = await writer.stop();
    if (r.code !== 0) throw new Error(r.stderr);

    // The printed report: good_t with its rows, nothing else dropped; the hand-made objects named as drift.
    const report = r.stderr.slice(r.stderr.indexOf("The reverse drops"), r.stderr.indexOf("Left exactly as they are"));
    expect(report).toMatch(/table\s+good_t\s+2 rows/);
    expect(report).not.toMatch(/lw|probe_w|users/);
    expect(r.stderr).toMatch(/Left exactly as they are[^]*table public\.lw \(not made by the migration history\)[^]*table public\.probe_w/);
    expect(r.stderr).toContain("rehearsed on a schema-only copy: the schema after the reverse equals");

    expect(await handMade(url)).toEqual({ lw: true, probe_w: true, lw_tag_idx: true, users_email_by_hand_idx: true, lw_recent: true, lw_count: true, good_t: false });
    // Zero acknowledged writes lost, none refused, and every other table's content as it was.
    const tags = new Set((await withDb(url, (c) => c.query<{ tag: string }>("SELECT tag FROM lw"))).rows.map((x) => x.tag));
    expect(written.acked.length).toBeGreaterThan(20);
    expect(written.acked.filter((t) => !tags.has(t))).toEqual([]);
    expect(written.errors).toBe(0);
    expect(await others()).toEqual(before);
    expect(Object.fromEntries((await migrationStatus(resolveSettings({ url, dir }))).map((m) => [m.name, m.state]))).toEqual({ [BASE]: "applied", [GOOD]: "pending" });
    expect(await databasesLike("pgstack_re")).toEqual([]);
  });

  it("a down.sql that drops a hand-made table too fails its rehearsal, naming the table, and changes nothing", async () => {
    await fs.writeFile(path.join(dir, GOOD, "down.sql"), "DROP TABLE good_t;\nDROP TABLE probe_w;\n");
    const schemaBefore = await dumpSchema(url);
    const digests = await tableDigests(url);
    const r = await cli(["revert", "--to", BASE, "--yes"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`pgstack: Rehearsed on a copy, the reverse of ${GOOD} does not give back the schema of ${BASE} (pg_dump -s differs: 'CREATE TABLE public.probe_w (' is missing`);
    expect(await dumpSchema(url)).toBe(schemaBefore);
    expect(await tableDigests(url)).toEqual(digests);
  });

  it("refuses, naming the object, when an object the reverse must change is not what the history made", async () => {
    await withDb(url, (c) => c.query("ALTER TABLE good_t ADD COLUMN added_by_hand text; INSERT INTO good_t VALUES (1, 'keep me')"));
    const schemaBefore = await dumpSchema(url);
    const digests = await tableDigests(url);
    const r = await cli(["revert", "--to", BASE, "--yes"]);
    expect(r.code).not.toBe(0);
    expectOneSentence(r.stderr, /must change table public\.good_t \(changed outside the migrations\).*nothing was changed\.$/);
    expect(await dumpSchema(url)).toBe(schemaBefore);
    expect(await tableDigests(url)).toEqual(digests);
  });
});

it("refuses, naming them, a hand-made view and index on a column the reverse drops, and leaves one on a kept column", async () => {
  const NICK = "20250103000000_nick";
  const url = await createTestDatabase("revert_dependents");
  const dir = await migrationsDir({ [BASE]: "CREATE TABLE users (id int PRIMARY KEY, email text);\n", [NICK]: "ALTER TABLE users ADD COLUMN nick text;\n" });
  await applyMigrations(resolveSettings({ url, dir }), { kind: "all" }, memoryLogger());
  await withDb(url, (c) =>
    c.query("CREATE VIEW nicks AS SELECT nick FROM users; CREATE INDEX users_nick_idx ON users (nick); CREATE INDEX users_email_idx ON users (email)"),
  );
  const schemaBefore = await dumpSchema(url);
  const r = await pgstack(["revert", "--to", BASE, "--yes", "--dir", dir], { DATABASE_URL: url });
  expect(r.code).not.toBe(0);
  expectOneSentence(r.stderr, /changes what index users_nick_idx \(made outside the migration history; depends on column users\.nick, which the reverse changes\), view nicks \(.*\) in database .* rely on.*nothing was changed\.$/);
  expect(r.stderr).not.toContain("users_email_idx (made outside");
  expect(await dumpSchema(url)).toBe(schemaBefore);
});
