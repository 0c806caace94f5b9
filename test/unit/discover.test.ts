import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { discoverMigrations, findMigration } from "../../infra/core/migrations/discover";
import { PgstackError } from "../../infra/core/errors";

async function tree(files: Record<string, string | null>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-discover-"));
  for (const [rel, content] of Object.entries(files)) {
    const full = path.join(dir, rel);
    if (content === null) {
      await fs.mkdir(full, { recursive: true });
    } else {
      await fs.mkdir(path.dirname(full), { recursive: true });
      await fs.writeFile(full, content);
    }
  }
  return dir;
}

async function failure(dir: string): Promise<PgstackError> {
  try {
    await discoverMigrations(dir);
  } catch (err) {
    return err as PgstackError;
  }
  throw new Error("expected discoverMigrations to fail");
}

describe("discoverMigrations", () => {
  it("reads folders in name order, skips loose files (a down.sql is not read), and spots the no-transaction marker", async () => {
    const dir = await tree({
      "migration_lock.toml": 'provider = "postgresql"',
      "20250102000000_second/migration.sql": "-- pgstack:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
      "20250101000000_first/migration.sql": "CREATE TABLE t (a int);\n",
      "20250101000000_first/down.sql": "DROP TABLE t;\n",
    });
    const migrations = await discoverMigrations(dir);
    expect(migrations.map((m) => [m.name, m.slug, m.noTransaction])).toEqual([
      ["20250101000000_first", "first", false],
      ["20250102000000_second", "second", true],
    ]);
    expect(migrations[0].sql).toBe("CREATE TABLE t (a int);\n");
  });

  it("accepts every folder name Prisma accepts, in Prisma's order (localeCompare, not byte order)", async () => {
    // Issue 10: these names were refused as a whole folder; Prisma applies all of them.
    const dir = await tree({
      "20240126184148_new_models/migration.sql": "SELECT 1;",
      "20240126184148_new_models copy/migration.sql": "SELECT 1;",
      "01_init/migration.sql": "SELECT 1;",
      "2024_short_date/migration.sql": "SELECT 1;",
      "20240101000000_add.sql/migration.sql": "SELECT 1;",
      "20240101000000_B_upper/migration.sql": "SELECT 1;",
      "20240101000000_a_lower/migration.sql": "SELECT 1;",
      ".hidden_but_a_folder/migration.sql": "SELECT 1;",
    });
    const names = (await discoverMigrations(dir)).map((m) => m.name);
    const prismaOrder = [...names].sort((a, b) => a.localeCompare(b));
    expect(names).toEqual(prismaOrder);
    expect(names).toEqual([
      ".hidden_but_a_folder",
      "01_init",
      "2024_short_date",
      "20240101000000_a_lower",
      "20240101000000_add.sql",
      "20240101000000_B_upper",
      "20240126184148_new_models",
      "20240126184148_new_models copy",
    ]);
    // Byte order would have put the upper-case name and the short date elsewhere.
    expect([...names].sort()).not.toEqual(names);
  });

  it("rejects a folder without migration.sql", async () => {
    const err = await failure(await tree({ "20250101000000_nosql/readme.txt": "x" }));
    expect(err.code).toBe("E_MIGRATION_NO_SQL");
    expect(err.message).toBe("Migration folder '20250101000000_nosql' has no migration.sql: add the SQL file or remove the folder.");
  });

  it("keeps an empty migration.sql, as Prisma records it applied, and says so", async () => {
    const notes: string[] = [];
    const migrations = await discoverMigrations(await tree({ "20250101000000_empty/migration.sql": "  \n\n" }), (n) => notes.push(n));
    expect(migrations.map((m) => m.name)).toEqual(["20250101000000_empty"]);
    expect(notes).toEqual(["Migration 20250101000000_empty has an empty migration.sql; Prisma records it as applied, and so does pgstack."]);
  });

  it("skips a symlinked folder as Prisma does (Dirent.isDirectory is false for a link), and says so", async () => {
    const dir = await tree({ "20250101000000_real/migration.sql": "SELECT 1;" });
    const elsewhere = await tree({ "linked/migration.sql": "SELECT 2;" });
    await fs.symlink(path.join(elsewhere, "linked"), path.join(dir, "20250102000000_linked"));
    const notes: string[] = [];
    const migrations = await discoverMigrations(dir, (n) => notes.push(n));
    expect(migrations.map((m) => m.name)).toEqual(["20250101000000_real"]);
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/^'20250102000000_linked' in .* is a symbolic link to a folder; Prisma does not apply it, so pgstack skips it too/);
  });

  it("refuses a migration_lock.toml naming another provider, as Prisma does", async () => {
    const err = await failure(await tree({ "migration_lock.toml": 'provider = "mysql"\n', "20250101000000_a/migration.sql": "SELECT 1;" }));
    expect(err.code).toBe("E_MIGRATION_PROVIDER");
    expect(err.message).toMatch(/^(pgstack: )?The migration_lock\.toml in .* says these migrations were written for provider 'mysql', not postgresql/);
    await expect(discoverMigrations(await tree({ "migration_lock.toml": 'provider = "postgres"', "1_a/migration.sql": "SELECT 1;" }))).resolves.toHaveLength(1);
  });

  it("refuses bytes that are not UTF-8, naming the file and the byte offset", async () => {
    const dir = await tree({ "20250101000000_latin1/migration.sql": "x" });
    await fs.writeFile(path.join(dir, "20250101000000_latin1/migration.sql"), Buffer.concat([Buffer.from("INSERT INTO t VALUES ('caf"), Buffer.from([0xe9]), Buffer.from("');\n")]));
    const err = await failure(dir);
    expect(err.code).toBe("E_MIGRATION_ENCODING");
    expect(err.message).toBe(
      "Migration 20250101000000_latin1: migration.sql is not UTF-8 (byte 0xe9 at byte offset 26): re-save the file as UTF-8; nothing was applied.",
    );
  });

  it("refuses a UTF-8 byte-order mark with a sentence instead of PostgreSQL's invisible-character syntax error", async () => {
    const dir = await tree({ "20250101000000_bom/migration.sql": "x" });
    await fs.writeFile(path.join(dir, "20250101000000_bom/migration.sql"), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("CREATE TABLE t (a int);\n")]));
    const err = await failure(dir);
    expect(err.code).toBe("E_MIGRATION_ENCODING");
    expect(err.message).toMatch(/^Migration 20250101000000_bom: migration\.sql starts with a UTF-8 byte-order mark, which PostgreSQL rejects/);
  });

  it("says so when the migrations folder is missing", async () => {
    const err = await failure("/nonexistent/migrations");
    expect(err.code).toBe("E_SETTINGS");
  });
});

describe("findMigration", () => {
  it("finds by full name or by the part after the timestamp, and refuses ambiguity", async () => {
    const dir = await tree({
      "20250101000000_add_index/migration.sql": "SELECT 1;",
      "20250201000000_add_index/migration.sql": "SELECT 1;",
      "20250301000000_drop_x/migration.sql": "SELECT 1;",
    });
    const migrations = await discoverMigrations(dir);
    expect(findMigration(migrations, "drop_x", "--to").name).toBe("20250301000000_drop_x");
    expect(findMigration(migrations, "20250201000000_add_index", "--to").name).toBe("20250201000000_add_index");
    expect(() => findMigration(migrations, "add_index", "--to")).toThrow(
      "--to 'add_index' is ambiguous: it matches 20250101000000_add_index and 20250201000000_add_index; give the full folder name.",
    );
    expect(() => findMigration(migrations, "nope", "--to")).toThrow(/--to 'nope' names no migration/);
  });
});
