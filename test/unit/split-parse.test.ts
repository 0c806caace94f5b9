import { backfillDirectiveOf, backfillPlanOf } from "../../infra/core/migrations/backfill";
import { executionModeOf } from "../../infra/core/migrations/mode";
import { loadSqlParser } from "../../infra/core/migrations/sql";
import { parseSplitInput } from "../../infra/core/split/parse";
import { expectFailure } from "../support/sentence";

beforeAll(() => loadSqlParser());

describe("what split reads in a migration", () => {
  test.each([
    [`ALTER TABLE "t" ALTER COLUMN "c" SET DATA TYPE VARCHAR(20);`, { column: "c", newName: "c", newType: "VARCHAR(20)" }],
    [`ALTER TABLE t ALTER type TYPE numeric(10, 2) USING (type::numeric(10,2) / 100);`, { column: "type", newName: "type", newType: "numeric(10, 2)", using: "(type::numeric(10,2) / 100)" }],
    [`ALTER TABLE "s"."t" ALTER COLUMN "c" TYPE text COLLATE "C" USING "c"::text;`, { schema: "s", column: "c", newType: "text", collate: `"C"`, using: `"c"::text` }],
    [`ALTER TABLE "t" RENAME COLUMN "name" TO "full_name";`, { column: "name", newName: "full_name" }],
    // Type change first (USING the old name), then the rename: one column, both changes.
    [`ALTER TABLE "t" ALTER COLUMN "qty" TYPE text USING "qty"::text;\nALTER TABLE "t" RENAME COLUMN "qty" TO "quantity";`, { column: "qty", newName: "quantity", newType: "text", using: `"qty"::text` }],
    [`ALTER TABLE "t" RENAME COLUMN "qty" TO "quantity";\nALTER TABLE "t" ALTER COLUMN "quantity" TYPE BIGINT;`, { column: "qty", newName: "quantity", newType: "BIGINT" }],
  ])("%s", async (sql, expected) => {
    const { change } = await parseSplitInput(sql, "m");
    expect(change).toMatchObject({ table: "t", ...expected });
  });

  test("other expand statements are kept, in file order; split's own statements are not", async () => {
    const { others } = await parseSplitInput(`CREATE TABLE "a" (id int);\nALTER TABLE "t" RENAME COLUMN "x" TO "y";\nCREATE INDEX "a_id_idx" ON "a"("id");\n`, "m");
    expect(others.map((o) => o.line)).toEqual([1, 3]);
  });

  test.each([
    [`ALTER TABLE "t" ALTER COLUMN "c" TYPE BIGINT, ADD COLUMN "d" int;`, /give the type change an ALTER TABLE statement of its own/],
    [`ALTER TABLE "t" RENAME COLUMN "a" TO "b";\nALTER TABLE "t" ALTER COLUMN "b" TYPE text USING "b"::text;`, /put the type change \(USING the old name a\) before the rename/],
    [`ALTER TABLE "t" RENAME COLUMN "a" TO "b";\nALTER TABLE "t" ALTER COLUMN "z" TYPE text;`, /changes the type of another column/],
    [`ALTER TABLE "t" RENAME COLUMN "a" TO "b";\nDROP TABLE "u";`, /Line 2 of m also breaks the running application \(drop-table\): ship the application version that no longer uses the table first/],
  ])("refuses %s", async (sql, message) => {
    const err = await expectFailure(parseSplitInput(sql, "m"));
    expect(err.code).toBe("E_SPLIT");
    expect(err.message).toMatch(message);
  });

  test("a rename declared expand (-- pgstack:expand) is still split: the declaration does not make it nothing to split", async () => {
    const { change } = await parseSplitInput(`-- pgstack:expand the old version never reads name\nALTER TABLE "t" RENAME COLUMN "name" TO "full_name";`, "m");
    expect(change).toMatchObject({ table: "t", column: "name", newName: "full_name" });
  });

  test("a rename of a column the migration itself creates is nothing to split", async () => {
    const err = await expectFailure(parseSplitInput(`CREATE TABLE "n" ("a" int);\nALTER TABLE "n" RENAME COLUMN "a" TO "b";`, "m"));
    expect(err.message).toBe("Migration m changes only what it creates itself, so the running application keeps working through it: there is nothing to split, apply it as it is.");
  });

  test("a statement acting on what the migration itself creates does not stop it", async () => {
    const { others } = await parseSplitInput(`CREATE TABLE "tmp" (id int);\nALTER TABLE "t" RENAME COLUMN "a" TO "b";\nDROP TABLE "tmp";\n`, "m");
    expect(others).toHaveLength(2);
  });
});

describe("a backfill migration", () => {
  const sql = `-- pgstack:backfill key="id" batch=500\n-- a comment\nUPDATE "s"."t" SET "b" = (SELECT max(x) FROM u WHERE u.id = "t".id) WHERE "b" IS DISTINCT FROM "a";\n`;

  test("runs in batches, cut at the UPDATE's own WHERE (not a subquery's)", () => {
    expect(executionModeOf({ noTransaction: false, sql }, [])).toBe("batches");
    const directive = backfillDirectiveOf(sql, "m")!;
    expect(directive).toEqual({ key: "id", batch: 500 });
    expect(backfillPlanOf({ name: "m", sql }, directive)).toEqual({
      directive,
      table: `"s"."t"`,
      head: `UPDATE "s"."t" SET "b" = (SELECT max(x) FROM u WHERE u.id = "t".id)`,
      condition: `"b" IS DISTINCT FROM "a"`,
    });
  });

  test.each([
    [`-- pgstack:backfill batch=10\nUPDATE t SET b = a WHERE b IS NULL;`, /malformed backfill directive/],
    [`-- pgstack:backfill key="id"\nUPDATE t SET b = a;`, /its UPDATE has no WHERE clause/],
    [`-- pgstack:backfill key="id"\nUPDATE t SET b = a WHERE b IS NULL;\nSELECT 1;`, /but 2 statements/],
    [`-- pgstack:backfill key="id"\nUPDATE t SET b = u.a FROM u WHERE b IS NULL;`, /FROM, WITH or RETURNING/],
  ])("refuses %s", (text, message) => {
    let err: unknown;
    try {
      backfillPlanOf({ name: "m", sql: text }, backfillDirectiveOf(text, "m")!);
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe("E_BACKFILL");
    expect((err as Error).message).toMatch(message);
  });
});
