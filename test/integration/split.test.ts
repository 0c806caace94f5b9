/**
 * `pgstack split` on real tables: the folders it writes replace the original,
 * and between the expand and the contract part both application versions
 * write (the old one through the old column only, the new one through the new
 * column only) and read each other's writes; the backfill covers the rows
 * written before; the contract leaves the new column alone with the old one's
 * nullability, default and indexes. `prisma migrate deploy`'s way of applying
 * the same folders gives the same schema.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { classifyMigration } from "../../infra/core/compat";
import { pgstack } from "../support/cli";
import { createTestDatabase, withDb } from "../support/cluster";
import { migrationsDir } from "../support/fixtures";
import { applyThePrismaWay, schemaDump } from "../support/prisma-way";
import { expectOneSentence } from "../support/sentence";

jest.setTimeout(180_000);

const INIT = "20250101000000_init";

async function folders(dir: string): Promise<string[]> {
  return (await fs.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort((a, b) => a.localeCompare(b));
}

async function ok(args: string[], url: string) {
  const r = await pgstack(args, { DATABASE_URL: url });
  if (r.code !== 0) throw new Error(`pgstack ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** Column facts of `table` as information_schema and pg_index show them. */
async function columns(url: string, table: string) {
  return withDb(url, async (c) => ({
    columns: (
      await c.query(
        `SELECT column_name, data_type, character_maximum_length AS len, is_nullable, column_default FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
        [table],
      )
    ).rows,
    indexes: (await c.query(`SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname`, [table])).rows,
    triggers: (await c.query(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, [table])).rows,
    // PostgreSQL 18 also lists each NOT NULL as a constraint (contype n): NOT NULL is read from the columns above.
    constraints: (await c.query(`SELECT conname, contype FROM pg_constraint WHERE conrelid = $1::regclass AND contype <> 'n' ORDER BY conname`, [table])).rows,
    functions: (await c.query(`SELECT proname FROM pg_proc WHERE proname LIKE 'pgstack_sync%'`)).rows,
  }));
}

describe("pgstack split: a column rename", () => {
  test("expand keeps both columns in step for both versions, backfill covers old rows, contract leaves the new column with NOT NULL, default and unique index", async () => {
    const url = await createTestDatabase("split_rename");
    const dir = await migrationsDir({
      [INIT]: `CREATE TABLE "users" ("id" SERIAL PRIMARY KEY, "name" TEXT NOT NULL DEFAULT 'anon', "age" INTEGER);
CREATE UNIQUE INDEX "users_name_key" ON "users"("name");
`,
      "20250102000000_rename_name": `-- a rename, as written by hand after prisma migrate dev --create-only
ALTER TABLE "users" RENAME COLUMN "name" TO "full_name";
ALTER INDEX "users_name_key" RENAME TO "users_full_name_key";
CREATE TABLE "notes" ("id" INTEGER);
`,
      "20250103000000_later": `CREATE TABLE "later" ("id" INTEGER);\n`,
    });
    await ok(["apply", INIT, "--dir", dir], url);
    await withDb(url, (c) => c.query(`INSERT INTO users (name, age) SELECT 'user' || g, g FROM generate_series(1, 2500) g`));

    const split = await ok(["split", "rename_name", "--dir", dir, "--batch", "1000"], url);
    expect(split.stdout.trim().split("\n")).toEqual([
      "Split 20250102000000_rename_name into 20250102000000_rename_name_1_expand, 20250102000000_rename_name_2_backfill, 20250102000000_rename_name_2_index, 20250102000000_rename_name_3_contract.",
      "Deploy 20250102000000_rename_name_1_expand and 20250102000000_rename_name_2_backfill (the old application version keeps working), then the application version that reads and writes users.full_name, then 20250102000000_rename_name_3_contract once no instance of the old version runs.",
      "20250102000000_rename_name_2_index builds the old column's indexes on the new one: deploy it before the rollout too, so the new version finds them (a unique one for its ON CONFLICT) from its first request.",
      "Until 20250102000000_rename_name_3_contract runs, a trigger keeps name and full_name in step.",
    ]);
    expect(await folders(dir)).toEqual([
      INIT,
      "20250102000000_rename_name_1_expand",
      "20250102000000_rename_name_2_backfill",
      "20250102000000_rename_name_2_index",
      "20250102000000_rename_name_3_contract",
      "20250103000000_later",
    ]);
    const expand = await fs.readFile(path.join(dir, "20250102000000_rename_name_1_expand", "migration.sql"), "utf8");
    expect(expand).toContain(`ALTER TABLE "users" ADD COLUMN "full_name" text;`);
    expect(expand).toContain(`CREATE TABLE "notes" ("id" INTEGER);`);
    expect(expand).not.toContain("ALTER INDEX");

    // Classified as the phases need them: everything but the contract part runs before the rollout, the unique
    // index too (its file declares pgstack:expand: the old column's unique index guards the same values through the
    // trigger, and the new version's ON CONFLICT on the new column needs it live).
    const classes: Record<string, string> = {};
    for (const f of (await folders(dir)).filter((f) => f.startsWith("20250102"))) {
      classes[f] = (await classifyMigration(await fs.readFile(path.join(dir, f, "migration.sql"), "utf8"))).compatibility;
    }
    expect(classes).toEqual({
      "20250102000000_rename_name_1_expand": "expand",
      "20250102000000_rename_name_2_backfill": "expand",
      "20250102000000_rename_name_2_index": "expand",
      "20250102000000_rename_name_3_contract": "contract",
    });

    // Lint passes them (warnings only): the contract part accepts its DROP COLUMN with a reason.
    const lint = await pgstack(["lint", "--dir", dir], { DATABASE_URL: url });
    expect(lint.stdout).toMatch(/0 blocking, \d+ warning\(s\), 1 accepted/);
    expect(lint.code).toBe(0);

    await ok(["apply", "--all", "--to", "20250102000000_rename_name_1_expand", "--dir", dir], url);
    await withDb(url, async (c) => {
      // v1: knows only "name".
      await c.query(`INSERT INTO users (name, age) VALUES ('v1 insert', 1)`);
      await c.query(`INSERT INTO users (age) VALUES (2)`); // relies on name's default
      await c.query(`UPDATE users SET name = 'v1 update' WHERE id = 1`);
      // v2: knows only "full_name" (the old NOT NULL column is filled by the trigger).
      await c.query(`INSERT INTO users (full_name, age) VALUES ('v2 insert', 3)`);
      await c.query(`UPDATE users SET full_name = 'v2 update' WHERE id = 2`);
      const read = async (where: string) => (await c.query(`SELECT name, full_name FROM users WHERE ${where}`)).rows[0];
      expect(await read(`age = 1 AND id > 2500`)).toEqual({ name: "v1 insert", full_name: "v1 insert" });
      expect(await read(`age = 2 AND id > 2500`)).toEqual({ name: "anon", full_name: "anon" });
      expect(await read(`id = 1`)).toEqual({ name: "v1 update", full_name: "v1 update" });
      expect(await read(`age = 3 AND id > 2500`)).toEqual({ name: "v2 insert", full_name: "v2 insert" });
      expect(await read(`id = 2`)).toEqual({ name: "v2 update", full_name: "v2 update" });
      // An old row nobody wrote is not copied yet.
      expect(await read(`id = 3`)).toEqual({ name: "user3", full_name: null });
      // The old column's unique index still holds for v2's writes.
      await expect(c.query(`INSERT INTO users (full_name) VALUES ('v1 insert')`)).rejects.toThrow(/users_name_key/);
    });

    const backfill = await ok(["apply", "--all", "--to", "20250102000000_rename_name_2_backfill", "--dir", dir], url);
    // Rows 1 and 2 were written since the expand step: the trigger copied them already.
    expect(backfill.stderr).toMatch(/2498 row\(s\) to copy in batches of 1000, the first at id = 3\n/);
    expect(backfill.stderr).toMatch(/2498 of 2498 row\(s\) copied \(100%/);
    const digests = await withDb(url, async (c) => (await c.query(`SELECT md5(string_agg(name, ',' ORDER BY id)) AS old, md5(string_agg(full_name, ',' ORDER BY id)) AS new FROM users`)).rows[0]);
    expect(digests.new).toBe(digests.old);

    await ok(["apply", "--all", "--dir", dir], url);
    const after = await columns(url, "users");
    expect(after.columns).toEqual([
      { column_name: "id", data_type: "integer", len: null, is_nullable: "NO", column_default: "nextval('users_id_seq'::regclass)" },
      { column_name: "age", data_type: "integer", len: null, is_nullable: "YES", column_default: null },
      { column_name: "full_name", data_type: "text", len: null, is_nullable: "NO", column_default: "'anon'::text" },
    ]);
    expect(after.indexes).toEqual([
      { indexname: "users_full_name_key", indexdef: "CREATE UNIQUE INDEX users_full_name_key ON public.users USING btree (full_name)" },
      { indexname: "users_pkey", indexdef: "CREATE UNIQUE INDEX users_pkey ON public.users USING btree (id)" },
    ]);
    expect(after.triggers).toEqual([]);
    expect(after.functions).toEqual([]);
    expect(after.constraints).toEqual([{ conname: "users_pkey", contype: "p" }]);
    const final = await withDb(url, async (c) => (await c.query(`SELECT md5(string_agg(full_name, ',' ORDER BY id)) AS d FROM users`)).rows[0].d);
    expect(final).toBe(digests.new);

    // prisma migrate deploy's way of applying the same folders gives the same schema.
    const prismaUrl = await createTestDatabase("split_rename_prisma");
    await applyThePrismaWay(prismaUrl, dir);
    expect(await schemaDump(prismaUrl)).toBe(await schemaDump(url));
  });
});

describe("pgstack split: a type change", () => {
  test.each([
    ["integer -> bigint", "INTEGER NOT NULL DEFAULT 7", `ALTER TABLE "t" ALTER COLUMN "c" SET DATA TYPE BIGINT;`, "(g)", "bigint", null, "NO", "7"],
    ["text -> varchar(20)", "TEXT", `ALTER TABLE "t" ALTER COLUMN "c" SET DATA TYPE VARCHAR(20);`, "('v' || g)", "character varying", 20, "YES", null],
    ["integer -> text with USING", "INTEGER", `ALTER TABLE "t" ALTER COLUMN "c" TYPE TEXT USING ('#' || "c"::text);`, "(g)", "text", null, "YES", null],
  ])("%s: both directions in step, backfilled, and the column retyped in place", async (_what, definition, change, value, type, len, nullable, dflt) => {
    const url = await createTestDatabase("split_type");
    const dir = await migrationsDir({
      [INIT]: `CREATE TABLE "t" ("id" BIGSERIAL PRIMARY KEY, "c" ${definition}, "other" INTEGER);\nCREATE INDEX "t_c_idx" ON "t"("c" DESC);\n`,
      "20250102000000_retype": change + "\n",
    });
    await ok(["apply", INIT, "--dir", dir], url);
    await withDb(url, (c) => c.query(`INSERT INTO t (c, other) SELECT ${value}, g FROM generate_series(1, 1500) g`));

    await ok(["split", "20250102000000_retype", "--dir", dir, "--batch", "400"], url);
    await ok(["apply", "--all", "--to", "20250102000000_retype_1_expand", "--dir", dir], url);
    const forward = (v: unknown) => (change.includes("USING") ? `#${v}` : String(v));
    await withDb(url, async (c) => {
      // Both versions write "c" (the type changes in place at the contract); the trigger fills the new column.
      const { rows } = await c.query(`INSERT INTO t (c, other) VALUES (${value.replace(/g/g, "5")}, -1) RETURNING c, c_pgstack_new AS n`);
      expect(String(rows[0].n)).toBe(forward(rows[0].c));
      await c.query(`UPDATE t SET c = ${value.replace(/g/g, "9")} WHERE id = 1`);
      const one = (await c.query(`SELECT c, c_pgstack_new AS n FROM t WHERE id = 1`)).rows[0];
      expect(String(one.n)).toBe(forward(one.c));
      // A write of the new column alone reaches the old one (the cast back).
      if (!change.includes("USING")) {
        await c.query(`UPDATE t SET c_pgstack_new = ${value.replace(/g/g, "11")} WHERE id = 2`);
        const two = (await c.query(`SELECT c, c_pgstack_new AS n FROM t WHERE id = 2`)).rows[0];
        expect(String(two.c)).toBe(String(two.n));
      }
      expect((await c.query(`SELECT c_pgstack_new AS n FROM t WHERE id = 3`)).rows[0].n).toBeNull();
    });
    const before = await withDb(url, async (c) => (await c.query(`SELECT id, c FROM t WHERE id <= 1500 ORDER BY id`)).rows);
    await ok(["apply", "--all", "--to", "20250102000000_retype_2_backfill", "--dir", dir], url);
    await withDb(url, async (c) => {
      const { rows } = await c.query(`SELECT count(*)::int AS n FROM t WHERE c_pgstack_new::text IS DISTINCT FROM ${change.includes("USING") ? `'#' || c::text` : "c::text"}`);
      expect(rows[0].n).toBe(0);
    });
    await ok(["apply", "--all", "--dir", dir], url);
    const after = await columns(url, "t");
    expect(after.columns.map((c: any) => c.column_name)).toEqual(["id", "other", "c"]);
    expect(after.columns[2]).toEqual({ column_name: "c", data_type: type, len, is_nullable: nullable, column_default: dflt === null ? null : dflt });
    expect(after.indexes.map((i: any) => i.indexdef)).toEqual([
      "CREATE INDEX t_c_idx ON public.t USING btree (c DESC)",
      "CREATE UNIQUE INDEX t_pkey ON public.t USING btree (id)",
    ]);
    expect(after.triggers).toEqual([]);
    // Every row that existed before the backfill has c = f(its old value).
    const now = await withDb(url, async (c) => (await c.query(`SELECT id, c FROM t WHERE id <= 1500 ORDER BY id`)).rows);
    expect(now.map((r: any) => ({ id: r.id, c: String(r.c) }))).toEqual(before.map((r: any) => ({ id: r.id, c: forward(r.c) })));

    const prismaUrl = await createTestDatabase("split_type_prisma");
    await applyThePrismaWay(prismaUrl, dir);
    expect(await schemaDump(prismaUrl)).toBe(await schemaDump(url));
  });
});

describe("pgstack split: a rename and a type change of the same column", () => {
  test.each([
    ["the type change first, USING the old name", `ALTER TABLE "orders" ALTER COLUMN "qty" TYPE TEXT USING ("qty"::text || ' pcs');\nALTER TABLE "orders" RENAME COLUMN "qty" TO "quantity";`, "text", (v: number) => `${v} pcs`],
    ["the rename first", `ALTER TABLE "orders" RENAME COLUMN "qty" TO "quantity";\nALTER TABLE "orders" ALTER COLUMN "quantity" SET DATA TYPE BIGINT;`, "bigint", (v: number) => String(v)],
  ])("%s: the old version writes qty, the new one quantity, each reads the other's", async (_what, sql, type, f) => {
    const url = await createTestDatabase("split_both");
    const dir = await migrationsDir({
      [INIT]: `CREATE TABLE "orders" ("id" SERIAL PRIMARY KEY, "qty" INTEGER NOT NULL);\n`,
      "20250102000000_quantity": sql + "\n",
    });
    await ok(["apply", INIT, "--dir", dir], url);
    await withDb(url, (c) => c.query(`INSERT INTO orders (qty) SELECT g FROM generate_series(1, 300) g`));
    await ok(["split", "quantity", "--dir", dir], url);
    await ok(["apply", "--all", "--to", "20250102000000_quantity_1_expand", "--dir", dir], url);
    await withDb(url, async (c) => {
      const v1 = (await c.query(`INSERT INTO orders (qty) VALUES (41) RETURNING qty, quantity`)).rows[0];
      expect(v1).toEqual({ qty: 41, quantity: f(41) });
      // The new version writes the new type; the old column gets it back through the cast (text '42' -> 42 here).
      const v2 = (await c.query(`INSERT INTO orders (quantity) VALUES ($1) RETURNING qty, quantity`, [type === "text" ? "42" : 42])).rows[0];
      expect(v2).toEqual({ qty: 42, quantity: "42" });
    });
    await ok(["apply", "--all", "--dir", dir], url);
    const after = await columns(url, "orders");
    expect(after.columns.map((c: any) => [c.column_name, c.data_type, c.is_nullable])).toEqual([
      ["id", "integer", "NO"],
      ["quantity", type, "NO"],
    ]);
    const rows = await withDb(url, async (c) => (await c.query(`SELECT id, quantity FROM orders WHERE id <= 300 ORDER BY id`)).rows);
    expect(rows.map((r: any) => String(r.quantity))).toEqual(Array.from({ length: 300 }, (_, i) => f(i + 1)));
  });
});

describe("pgstack split: a narrowing type change converts by assignment, never cuts", () => {
  test("VARCHAR(20) -> VARCHAR(5): the old version's too-long write fails during the window, the backfill stops naming the row, nothing is cut", async () => {
    const url = await createTestDatabase("split_narrow");
    const dir = await migrationsDir({
      [INIT]: `CREATE TABLE "t" ("id" SERIAL PRIMARY KEY, "c" VARCHAR(20));\n`,
      "20250102000000_narrow": `ALTER TABLE "t" ALTER COLUMN "c" SET DATA TYPE VARCHAR(5);\n`,
    });
    await ok(["apply", INIT, "--dir", dir], url);
    await withDb(url, (c) => c.query(`INSERT INTO t (c) VALUES ('ok'), ('abcdefghij'), ('fine')`));
    await ok(["split", "narrow", "--dir", dir], url);
    await ok(["apply", "--all", "--to", "20250102000000_narrow_1_expand", "--dir", dir], url);
    await withDb(url, async (c) => {
      // The old version: a value that fits is copied; one that does not is refused (the plain ALTER would refuse it too).
      await c.query(`INSERT INTO t (c) VALUES ('abc')`);
      await expect(c.query(`INSERT INTO t (c) VALUES ('klmnopqrst')`)).rejects.toThrow(/value too long for type character varying\(5\)/);
      await expect(c.query(`UPDATE t SET c = 'klmnopqrst' WHERE id = 1`)).rejects.toThrow(/value too long for type character varying\(5\)/);
    });
    const failed = await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url });
    expect(failed.code).toBe(1);
    expect(failed.stderr.trim().split("\n").pop()).toMatch(
      /^pgstack: Migration 20250102000000_narrow_2_backfill failed in its backfill of "t" at the row id = 2: value too long for type character varying\(5\) \(SQLSTATE 22001\); no row was copied and it is not recorded as applied: change that row \(through the old column: the trigger copies it\) or the conversion, then run again\.$/,
    );
    const rows = await withDb(url, async (c) => (await c.query(`SELECT c, c_pgstack_new AS n FROM t ORDER BY id`)).rows);
    expect(rows).toEqual([
      { c: "ok", n: null },
      { c: "abcdefghij", n: null },
      { c: "fine", n: null },
      { c: "abc", n: "abc" },
    ]);
    // The application shortens the value through the old column; the backfill then completes, nothing cut.
    await withDb(url, (c) => c.query(`UPDATE t SET c = 'abcde' WHERE id = 2`));
    await ok(["apply", "--all", "--dir", dir], url);
    expect(await withDb(url, async (c) => (await c.query(`SELECT c FROM t ORDER BY id`)).rows.map((r) => r.c))).toEqual(["ok", "abcde", "fine", "abc"]);
  });
});

describe("pgstack split refuses, in one sentence, and writes nothing", () => {
  const cases: [string, string, RegExp][] = [
    ["no rename or type change", `CREATE TABLE "x" ("id" INTEGER);`, /neither renames a column .* nor changes a column's type/],
    ["a DROP COLUMN beside the rename", `ALTER TABLE "t" RENAME COLUMN "a" TO "b";\nALTER TABLE "t" DROP COLUMN "other";`, /Line 2 of \S+ also breaks the running application \(drop-column\): ship the application version that no longer reads the column first, then drop it in a later migration; move it out/],
    ["a SET NOT NULL beside the rename", `ALTER TABLE "t" RENAME COLUMN "a" TO "b";\nALTER TABLE "t" ALTER COLUMN "other" SET NOT NULL;`, /\(set-not-null\): add a CHECK \(\.\.\. IS NOT NULL\) NOT VALID, VALIDATE it, then SET NOT NULL/],
    ["a type with no way back", `ALTER TABLE "t" ALTER COLUMN "a" TYPE int4range USING int4range("a", "a" + 1);`, /There is no way back from int4range to integer/],
    ["a column under a foreign key", `ALTER TABLE "child" RENAME COLUMN "t_id" TO "parent_id";`, /foreign key child_t_id_fkey/],
    ["a default that does not fit the new type", `ALTER TABLE "t" ALTER COLUMN "d" TYPE BOOLEAN USING "d" = 'yes';`, /The default of t\.d \('no'::text\) does not fit the new type BOOLEAN \(.*\): change the default in an earlier migration, then split\./],
    ["the primary key", `ALTER TABLE "t" ALTER COLUMN "id" TYPE BIGINT;`, /is the table's primary key/],
    ["a USING expression that reads another column", `ALTER TABLE "t" ALTER COLUMN "a" TYPE BIGINT USING "a" + "other";`, /^pgstack: The USING expression at line 1 of 20250102000000_change reads column other besides a, which split cannot keep in step while the old version writes it: /],
    ["a column a generated column is computed from", `ALTER TABLE "t" RENAME COLUMN "other" TO "other2";`, /^pgstack: Generated column t\.g is computed from t\.other, which split cannot move to the new column \(the contract part could not drop other\): drop it in an earlier migration/],
    ["a type the database cannot assign without USING", `ALTER TABLE "t" ALTER COLUMN "d" TYPE INTEGER;`, /The new type of t\.d cannot be computed from the old column \(column "d" is of type integer but expression is of type text\)/],
    ["two columns", `ALTER TABLE "t" RENAME COLUMN "a" TO "b";\nALTER TABLE "t" RENAME COLUMN "other" TO "b2";`, /changes more than one column/],
  ];
  test.each(cases)("%s", async (_what, sql, message) => {
    const url = await createTestDatabase("split_refuse");
    const dir = await migrationsDir({
      [INIT]: `CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "a" INTEGER, "other" INTEGER, "d" TEXT DEFAULT 'no', "g" INTEGER GENERATED ALWAYS AS ("other" * 2) STORED);\nCREATE TABLE "child" ("id" INTEGER PRIMARY KEY, "t_id" INTEGER REFERENCES "t"("id"));\n`,
      "20250102000000_change": sql + "\n",
    });
    await ok(["apply", INIT, "--dir", dir], url);
    const listing = await folders(dir);
    const r = await pgstack(["split", "20250102000000_change", "--dir", dir], { DATABASE_URL: url });
    expect(r.code).toBe(1);
    expectOneSentence(r.stderr, message);
    expect(await folders(dir)).toEqual(listing);
    expect(await fs.readFile(path.join(dir, "20250102000000_change", "migration.sql"), "utf8")).toBe(sql + "\n");
  });

  test("a migration already applied to the database, and a folder that does not exist", async () => {
    const url = await createTestDatabase("split_refuse");
    const dir = await migrationsDir({
      [INIT]: `CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "a" INTEGER);\n`,
      "20250102000000_rename": `ALTER TABLE "t" RENAME COLUMN "a" TO "b";\n`,
    });
    await ok(["apply", "--all", "--dir", dir], url);
    const listing = await folders(dir);
    const applied = await pgstack(["split", "20250102000000_rename", "--dir", dir], { DATABASE_URL: url });
    expect(applied.code).toBe(1);
    expectOneSentence(applied.stderr, /Migration 20250102000000_rename is already applied on database split_refuse_\w+: .* put the change in a new migration instead\./);
    const missing = await pgstack(["split", "20250109000000_nope", "--dir", dir], { DATABASE_URL: url });
    expect(missing.code).toBe(1);
    expectOneSentence(missing.stderr, /Migration '20250109000000_nope' is not a folder of /);
    expect(await folders(dir)).toEqual(listing);
  });

  test("a folder holding more than migration.sql", async () => {
    const url = await createTestDatabase("split_refuse");
    const dir = await migrationsDir({
      [INIT]: `CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "a" INTEGER);\n`,
      "20250102000000_rename": `ALTER TABLE "t" RENAME COLUMN "a" TO "b";\n`,
    });
    await fs.writeFile(path.join(dir, "20250102000000_rename", "down.sql"), `ALTER TABLE "t" RENAME COLUMN "b" TO "a";\n`);
    await ok(["apply", INIT, "--dir", dir], url);
    const r = await pgstack(["split", "rename", "--dir", dir], { DATABASE_URL: url });
    expect(r.code).toBe(1);
    expectOneSentence(r.stderr, /^pgstack: Migration folder 20250102000000_rename holds down\.sql besides migration\.sql, which split would not know where to put: move it out, then split\.$/);
    expect(await folders(dir)).toEqual([INIT, "20250102000000_rename"]);
  });

  test("a database that has not applied the migrations before it", async () => {
    const url = await createTestDatabase("split_refuse");
    const dir = await migrationsDir({
      [INIT]: `CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "a" INTEGER);\n`,
      "20250102000000_rename": `ALTER TABLE "t" RENAME COLUMN "a" TO "b";\n`,
    });
    const r = await pgstack(["split", "rename", "--dir", dir], { DATABASE_URL: url });
    expect(r.code).toBe(1);
    expectOneSentence(r.stderr, /has not applied 20250101000000_init, which comes before 20250102000000_rename/);
    expect(await folders(dir)).toEqual([INIT, "20250102000000_rename"]);
  });
});
