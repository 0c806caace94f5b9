import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { withDb } from "./cluster";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
export const REPO_MIGRATIONS = path.join(REPO_ROOT, "migrations");

/** A temporary migrations folder; `null` makes a folder with no files. */
export async function migrationsDir(files: Record<string, string | null> = {}): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-migrations-"));
  await writeMigrations(dir, files);
  return dir;
}

export async function writeMigrations(dir: string, files: Record<string, string | null>): Promise<void> {
  for (const [name, sql] of Object.entries(files)) {
    const folder = path.join(dir, name);
    await fs.mkdir(folder, { recursive: true });
    if (sql !== null) await fs.writeFile(path.join(folder, "migration.sql"), sql);
  }
}

/** A copy of the repository's real migration history. */
export async function copyOfRepoMigrations(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-migrations-"));
  await fs.cp(REPO_MIGRATIONS, dir, { recursive: true });
  return dir;
}

/**
 * Everything a migration run could change: every user table's columns, every
 * index, and every ledger row. Equal fingerprints = database unchanged.
 */
export async function fingerprint(url: string): Promise<string> {
  return withDb(url, async (client) => {
    const columns = await client.query(
      `SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default
         FROM information_schema.columns
        WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
        ORDER BY 1, 2, 3`,
    );
    const indexes = await client.query(
      `SELECT schemaname, indexname, indexdef FROM pg_indexes
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`,
    );
    const types = await client.query(
      `SELECT t.typname, e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid ORDER BY 1, e.enumsortorder`,
    );
    const ledger = await client
      .query(`SELECT migration_name, checksum, finished_at, rolled_back_at, logs, applied_steps_count FROM "_prisma_migrations" ORDER BY started_at, id`)
      .then((r) => r.rows)
      .catch(() => "no ledger");
    return JSON.stringify({ columns: columns.rows, indexes: indexes.rows, types: types.rows, ledger });
  });
}
