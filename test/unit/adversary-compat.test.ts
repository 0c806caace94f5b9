/**
 * Adversarial cases for the expand/contract classifier (issue 24): each
 * migration below breaks the application version now running (a request of it
 * fails, or its data goes), so it must be `contract`. The dangerous direction
 * is a false `expand`: the phases then run it before the rollout, while the
 * old version serves. Each case says what the running version sees.
 */
import { classifyMigration } from "../../infra/core/compat";

const CASES: [string, string][] = [
  // DDL hidden in a function the migration creates and then calls: the column is gone under the running version.
  [
    "a function that drops a column, called with SELECT",
    `CREATE FUNCTION "drop_name"() RETURNS void LANGUAGE sql AS $$ ALTER TABLE "User" DROP COLUMN "name" $$;\nSELECT "drop_name"();`,
  ],
  [
    "a procedure that drops a column, run with CALL",
    `CREATE PROCEDURE "drop_name"() LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE "User" DROP COLUMN "name"; END $$;\nCALL "drop_name"();`,
  ],
  // In a DO block, EXECUTE of a constant is classified before the block's other statements, whatever their order:
  // the CREATE that runs after the DROP makes the DROP look like acting on a new table. The table's rows are gone.
  [
    "a DO block that drops a table, then EXECUTEs its CREATE",
    `DO $$ BEGIN\n  DROP TABLE "User";\n  EXECUTE 'CREATE TABLE "User" ("id" INTEGER)';\nEND $$;`,
  ],
  [
    "a DO block that drops a column, then EXECUTEs its ADD",
    `DO $$ BEGIN\n  ALTER TABLE "User" DROP COLUMN "email";\n  EXECUTE 'ALTER TABLE "User" ADD COLUMN "email" TEXT';\nEND $$;`,
  ],
  // "Created in this migration" matches a table of another schema: the unqualified name is public's (search_path).
  ["DROP TABLE of public.User after creating audit.User", `CREATE TABLE "audit"."User" ("id" INTEGER);\nDROP TABLE "User";`],
  ["TRUNCATE of public.User after CREATE TABLE audit.User AS", `CREATE TABLE "audit"."User" AS SELECT 1 AS "id";\nTRUNCATE "User";`],
  ["a UNIQUE constraint on public.User after creating audit.User", `CREATE TABLE "audit"."User" ("id" INTEGER);\nALTER TABLE "User" ADD CONSTRAINT "User_email_key" UNIQUE ("email");`],
  // New columns are tracked by table name only: a column added to audit.User hides public.User's.
  [
    "DROP COLUMN on public.User after adding the same column to audit.User (Prisma multiSchema)",
    `ALTER TABLE "audit"."User" ADD COLUMN "email" TEXT;\nALTER TABLE "public"."User" DROP COLUMN "email";`,
  ],
  // ADD COLUMN IF NOT EXISTS on a column that exists adds nothing: the column is the running version's.
  ["DROP COLUMN after ADD COLUMN IF NOT EXISTS of the same (existing) column", `ALTER TABLE "User" ADD COLUMN IF NOT EXISTS "email" TEXT;\nALTER TABLE "User" DROP COLUMN "email";`],
  ["ALTER COLUMN TYPE after ADD COLUMN IF NOT EXISTS of the same (existing) column", `ALTER TABLE "User" ADD COLUMN IF NOT EXISTS "email" TEXT;\nALTER TABLE "User" ALTER COLUMN "email" TYPE INTEGER USING 0;`],
  // The running version's next inserts take ids that exist: unique violation on the primary key.
  ["ALTER SEQUENCE ... RESTART of a serial key's sequence", `ALTER SEQUENCE "User_id_seq" RESTART WITH 1;`],
  ["setval() moving a serial key's sequence back", `SELECT setval('"User_id_seq"', 1, false);`],
  // SET DEFAULT NULL is DROP DEFAULT: the running version's inserts leaving createdAt out write NULL into a NOT NULL column.
  ["SET DEFAULT NULL on an existing column", `ALTER TABLE "User" ALTER COLUMN "createdAt" SET DEFAULT NULL;`],
  // DEFAULT NULL is no default: the running version's inserts leave "b" out, write NULL, and fail once it is NOT NULL.
  ["a new column with DEFAULT NULL made NOT NULL", `ALTER TABLE "User" ADD COLUMN "b" INTEGER DEFAULT NULL;\nUPDATE "User" SET "b" = 0;\nALTER TABLE "User" ALTER COLUMN "b" SET NOT NULL;`],
  // PostgreSQL 18's NOT NULL table constraint is SET NOT NULL.
  ["ADD CONSTRAINT ... NOT NULL on an existing column (PostgreSQL 18)", `ALTER TABLE "User" ADD CONSTRAINT "User_name_not_null" NOT NULL "name";`],
  // The default every running-version insert takes violates the new CHECK (NOT VALID only skips existing rows).
  [
    "a CHECK on a new column that its own default violates",
    `ALTER TABLE "User" ADD COLUMN "status" TEXT DEFAULT 'new';\nALTER TABLE "User" ADD CONSTRAINT "User_status_check" CHECK ("status" IN ('active', 'closed')) NOT VALID;`,
  ],
  // Prisma's migration for onDelete Cascade -> Restrict: the running version's deletes of a user with posts now fail.
  [
    "a foreign key re-created under its name with ON DELETE RESTRICT (Prisma: onDelete changed)",
    `ALTER TABLE "Post" DROP CONSTRAINT "Post_authorId_fkey";\nALTER TABLE "Post" ADD CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User"("id") ON DELETE RESTRICT ON UPDATE CASCADE;`,
  ],
  // A view or function "created again" with other columns or arguments is not CREATE OR REPLACE.
  ["a view dropped and created again with other columns", `DROP VIEW "v";\nCREATE VIEW "v" AS SELECT 1 AS "a";`],
  ["a view dropped from public and created in another schema", `DROP VIEW "public"."v";\nCREATE VIEW "other"."v" AS SELECT 1 AS "a";`],
  ["a function dropped and created again with other arguments", `DROP FUNCTION "f"(integer);\nCREATE FUNCTION "f"(x text) RETURNS integer LANGUAGE sql AS 'SELECT 1';`],
  // delete-all-rows, written another way.
  ["DELETE ... WHERE true", `DELETE FROM "User" WHERE true;`],
  ["DELETE in a WITH of a SELECT", `WITH d AS (DELETE FROM "User" RETURNING 1) SELECT count(*) FROM d;`],
  // GENERATED ALWAYS refuses the running version's inserts that give the id.
  ["SET GENERATED ALWAYS on an identity column", `ALTER TABLE "User" ALTER COLUMN "id" SET GENERATED ALWAYS;`],
  ["ADD GENERATED ALWAYS AS IDENTITY on an existing column", `ALTER TABLE "User" ALTER COLUMN "id" ADD GENERATED ALWAYS AS IDENTITY;`],
  // The role the running version connects as often owns its tables (Prisma: one role for migrate and the app);
  // handing the table to another role takes every privilege away from it, as a REVOKE (contract) would.
  ["ALTER TABLE ... OWNER TO another role", `ALTER TABLE "User" OWNER TO "admin";`],
];

describe("classifier: migrations that break the running version are contract", () => {
  test.each(CASES)("%s", async (_what, sql) => {
    const result = await classifyMigration(sql);
    expect(result.compatibility).toBe("contract");
    expect(result.reasons.length).toBeGreaterThan(0);
  });
});
