import { promises as fs, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { PgstackError } from "../errors";
import { checksumOf } from "./checksum";

/** `<14-digit timestamp>_<name>`, the folder layout `prisma migrate dev` creates. */
export const MIGRATION_NAME_PATTERN = /^(\d{14})_([A-Za-z0-9][A-Za-z0-9_-]*)$/;

/** First line that opts a migration out of the wrapping transaction. */
export const NO_TRANSACTION_MARKER = "-- pgstack:no-transaction";

export interface Migration {
  /** Folder name, e.g. `20250102030405_add_users`; the ledger's migration_name. */
  name: string;
  /** The part after the timestamp, e.g. `add_users`. */
  slug: string;
  dir: string;
  sqlPath: string;
  /** The file's exact bytes: what the checksum covers and what runs. */
  bytes: Buffer;
  sql: string;
  checksum: string;
  /** True when the first line is `-- pgstack:no-transaction`. */
  noTransaction: boolean;
  /** Path of down.sql when the folder has one. */
  downPath?: string;
}

/**
 * Reads every migration folder under `dir`, in name order (which is time
 * order). Loose files such as migration_lock.toml are ignored; a folder that is
 * not a well-formed migration is an error, reported all at once so one run
 * shows everything to fix.
 */
export async function discoverMigrations(dir: string): Promise<Migration[]> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new PgstackError("E_SETTINGS", `The migrations folder ${dir} does not exist: pass --dir with the folder that holds your <timestamp>_<name> migrations.`);
    }
    throw err;
  }
  const folders = entries
    .filter((e) => e.isDirectory() && !e.name.startsWith("."))
    .map((e) => e.name)
    .sort();

  const badNames = folders.filter((name) => !MIGRATION_NAME_PATTERN.test(name));
  if (badNames.length > 0) {
    const list = badNames.map((n) => `'${n}'`).join(", ");
    throw new PgstackError(
      "E_MIGRATION_NAME",
      `Migration folder${badNames.length > 1 ? "s" : ""} ${list} in ${dir} do${badNames.length > 1 ? "" : "es"} not match <14-digit timestamp>_<name>: rename ${badNames.length > 1 ? "them" : "it"}, e.g. 20250101120000_add_users.`,
      { folders: badNames },
    );
  }

  const migrations: Migration[] = [];
  const missing: string[] = [];
  const empty: string[] = [];
  for (const name of folders) {
    const folder = path.join(dir, name);
    const sqlPath = path.join(folder, "migration.sql");
    let bytes: Buffer;
    try {
      // Synchronous on purpose: a CLI has nothing else to do meanwhile, and an
      // awaited read per folder costs a thread-pool hop each (96 ms vs ~12 ms
      // for 300 migrations, see BENCHMARKS.md).
      bytes = readFileSync(sqlPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "EISDIR") {
        missing.push(name);
        continue;
      }
      throw err;
    }
    const sql = bytes.toString("utf8");
    if (sql.trim() === "") {
      empty.push(name);
      continue;
    }
    const downPath = path.join(folder, "down.sql");
    const hasDown = isFile(downPath);
    migrations.push({
      name,
      slug: MIGRATION_NAME_PATTERN.exec(name)![2],
      dir: folder,
      sqlPath,
      bytes,
      sql,
      checksum: checksumOf(bytes),
      noTransaction: firstLine(sql) === NO_TRANSACTION_MARKER,
      downPath: hasDown ? downPath : undefined,
    });
  }
  if (missing.length > 0) {
    throw new PgstackError(
      "E_MIGRATION_NO_SQL",
      `Migration folder${missing.length > 1 ? "s" : ""} ${missing.map((n) => `'${n}'`).join(", ")} ha${missing.length > 1 ? "ve" : "s"} no migration.sql: add the SQL file or remove the folder.`,
      { folders: missing },
    );
  }
  if (empty.length > 0) {
    throw new PgstackError(
      "E_MIGRATION_EMPTY",
      `Migration ${empty.map((n) => `'${n}'`).join(", ")} ha${empty.length > 1 ? "ve" : "s"} an empty migration.sql: write the SQL, or remove the folder.`,
      { folders: empty },
    );
  }
  return migrations;
}

function firstLine(sql: string): string {
  const withoutBom = sql.replace(/^\uFEFF/, "");
  const line = withoutBom.split(/\r?\n/).find((l) => l.trim() !== "") ?? "";
  return line.trim();
}

/**
 * Finds a migration by its full folder name, or by the part after the
 * timestamp when exactly one folder has it.
 */
export function findMigration(migrations: Migration[], ref: string, flag: string): Migration {
  const exact = migrations.find((m) => m.name === ref);
  if (exact) return exact;
  const bySlug = migrations.filter((m) => m.slug === ref);
  if (bySlug.length === 1) return bySlug[0];
  if (bySlug.length > 1) {
    throw new PgstackError(
      "E_MIGRATION_AMBIGUOUS",
      `${flag} '${ref}' is ambiguous: it matches ${bySlug.map((m) => m.name).join(" and ")}; give the full folder name.`,
      { matches: bySlug.map((m) => m.name) },
    );
  }
  throw new PgstackError(
    "E_MIGRATION_UNKNOWN",
    `${flag} '${ref}' names no migration in the migrations folder: run \`pgstack status\` to list them.`,
  );
}

function isFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}
