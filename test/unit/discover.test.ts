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
  it("reads folders in name order, skips loose files, and spots the no-transaction marker", async () => {
    const dir = await tree({
      "migration_lock.toml": 'provider = "postgresql"',
      "20250102000000_second/migration.sql": "-- pgstack:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
      "20250101000000_first/migration.sql": "CREATE TABLE t (a int);\n",
      "20250101000000_first/down.sql": "DROP TABLE t;\n",
    });
    const migrations = await discoverMigrations(dir);
    expect(migrations.map((m) => [m.name, m.slug, m.noTransaction, Boolean(m.downPath)])).toEqual([
      ["20250101000000_first", "first", false, true],
      ["20250102000000_second", "second", true, false],
    ]);
  });

  it("rejects a folder that does not match <14-digit timestamp>_<name>, naming it", async () => {
    const dir = await tree({ "20250101000000_ok/migration.sql": "SELECT 1;", "2025_bad/migration.sql": "SELECT 1;" });
    const err = await failure(dir);
    expect(err.code).toBe("E_MIGRATION_NAME");
    expect(err.message).toMatch(/^Migration folder '2025_bad' in .* does not match <14-digit timestamp>_<name>: rename it/);
  });

  it("rejects a folder without migration.sql", async () => {
    const err = await failure(await tree({ "20250101000000_nosql/readme.txt": "x" }));
    expect(err.code).toBe("E_MIGRATION_NO_SQL");
    expect(err.message).toBe("Migration folder '20250101000000_nosql' has no migration.sql: add the SQL file or remove the folder.");
  });

  it("rejects an empty migration.sql", async () => {
    const err = await failure(await tree({ "20250101000000_empty/migration.sql": "  \n\n" }));
    expect(err.code).toBe("E_MIGRATION_EMPTY");
    expect(err.message).toBe("Migration '20250101000000_empty' has an empty migration.sql: write the SQL, or remove the folder.");
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
