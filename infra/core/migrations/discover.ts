import { promises as fs, readFileSync, statSync, watch, type FSWatcher } from "node:fs";
import * as path from "node:path";
import { PgstackError } from "../errors";
import { checksumOf } from "./checksum";

/**
 * `<14-digit timestamp>_<name>`, the folder layout `prisma migrate dev` creates.
 * Only a convention: Prisma applies any folder name, so pgstack does too (lint notes the others).
 */
export const MIGRATION_NAME_PATTERN = /^(\d{14})_([A-Za-z0-9][A-Za-z0-9_-]*)$/;

/** First line that opts a migration out of the wrapping transaction. */
export const NO_TRANSACTION_MARKER = "-- pgstack:no-transaction";

/** Providers a PostgreSQL history's migration_lock.toml may name (Prisma's own postgres aliases). */
const POSTGRES_PROVIDERS = new Set(["postgresql", "postgres"]);

export interface Migration {
  /** Folder name, e.g. `20250102030405_add_users`; the ledger's migration_name. */
  name: string;
  /** The part after a leading number and underscore (`add_users`), else the whole name. */
  slug: string;
  dir: string;
  sqlPath: string;
  /** The file's exact bytes: what the checksum covers and what runs. */
  bytes: Buffer;
  sql: string;
  checksum: string;
  /** True when the first line is `-- pgstack:no-transaction`. */
  noTransaction: boolean;
}

/**
 * Prisma's order of migration folders: the CLI sorts them with
 * `String.prototype.localeCompare` (prisma 7 listMigrations), which is not
 * byte order (`_x` < `0` < `a` < `A` < `b`). Ties, which ICU allows for
 * distinct strings, fall back to byte order so the order is total.
 */
export function compareMigrationNames(a: string, b: string): number {
  return a.localeCompare(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * Reads the migrations folder exactly as `prisma migrate deploy` does: every
 * directory entry (a symbolic link is not one: Prisma skips it, and pgstack
 * skips it too but says so through `onNote`, once per process) is a migration whatever its name,
 * in Prisma's order; loose files are ignored; a migration_lock.toml naming
 * another provider is refused, as Prisma refuses it. A folder without
 * migration.sql is an error (Prisma cannot read it either). Bytes PostgreSQL
 * would not take as the file's text are refused before anything runs: bytes
 * that are not UTF-8 (Prisma would apply U+FFFD in their place) and a UTF-8
 * byte-order mark (PostgreSQL rejects it as a syntax error, for Prisma too).
 */
export async function discoverMigrations(dir: string, onNote?: (note: string) => void): Promise<Migration[]> {
  const report = (note: string) => {
    const key = `${dir}\0${note}`;
    if (!onNote || reportedNotes.has(key)) return;
    reportedNotes.add(key);
    onNote(note);
  };
  const cached = discoveries?.get(dir);
  if (cached && !cached.changed) {
    for (const note of cached.notes) report(note);
    return [...cached.migrations];
  }
  const watch = discoveries ? watchFolder(dir) : undefined;
  const notes: string[] = [];
  const migrations = await readMigrationsFolder(dir, (note) => {
    notes.push(note);
    report(note);
  }, watch);
  if (watch && discoveries) {
    discoveries.get(dir)?.close();
    if (watch.changed) watch.close();
    else discoveries.set(dir, Object.assign(watch, { migrations, notes }));
  }
  return [...migrations];
}

/**
 * The notes this process has told someone, by folder: a command reads the
 * folder several times (plan, then its rehearsal's apply, then the revert
 * report; a `pulumi up`'s program at every step), and says each thing once.
 */
const reportedNotes = new Set<string>();

/** Watches a migrations folder and its migration folders; `changed` once anything in them changes. */
interface FolderWatch {
  changed: boolean;
  add(folder: string): void;
  close(): void;
}

function watchFolder(dir: string): FolderWatch {
  const watchers: FSWatcher[] = [];
  const state: FolderWatch = {
    changed: false,
    add(folder) {
      try {
        const watcher = watch(folder, { persistent: false }, invalidate);
        watcher.on("error", invalidate);
        watchers.push(watcher);
      } catch {
        invalidate(); // cannot watch (no inotify left): read again next time
      }
    },
    close() {
      for (const w of watchers.splice(0)) w.close();
    },
  };
  function invalidate() {
    state.changed = true;
    state.close();
  }
  state.add(dir);
  return state;
}

/**
 * What discoverMigrations found, by folder, kept while a deploy session serves
 * one `pulumi up` (cacheDiscoveries): every step would otherwise read and hash
 * the whole history again. Dropped as soon as the file system reports any
 * change in the folder or one of its migration folders (inotify through
 * fs.watch, watching from before the read): a file edited during an update
 * is read again by the next step that starts after the kernel reported it.
 */
let discoveries: Map<string, FolderWatch & { migrations: Migration[]; notes: string[] }> | undefined;

/** Keeps what discoverMigrations reads in this process, until it changes on disk (see `discoveries`). */
export function cacheDiscoveries(): void {
  discoveries ??= new Map();
}

async function readMigrationsFolder(dir: string, onNote: (note: string) => void, watch?: FolderWatch): Promise<Migration[]> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new PgstackError("E_SETTINGS", `The migrations folder ${dir} does not exist: pass --dir with the folder that holds your <timestamp>_<name> migrations.`);
    }
    throw err;
  }
  assertLockProvider(dir);
  for (const e of entries) {
    if (e.isSymbolicLink() && isDirectory(path.join(dir, e.name))) {
      onNote(`'${e.name}' in ${dir} is a symbolic link to a folder; Prisma does not apply it, so pgstack skips it too: replace it with a real folder to apply it.`);
    }
  }
  const folders = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort(compareMigrationNames);

  const migrations: Migration[] = [];
  const missing: string[] = [];
  for (const name of folders) {
    const folder = path.join(dir, name);
    watch?.add(folder);
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
    assertTextBytes(name, bytes);
    const sql = bytes.toString("utf8");
    if (sql.trim() === "") onNote(`Migration ${name} has an empty migration.sql; Prisma records it as applied, and so does pgstack.`);
    migrations.push({
      name,
      slug: /^\d+_(.+)$/.exec(name)?.[1] ?? name,
      dir: folder,
      sqlPath,
      bytes,
      sql,
      checksum: checksumOf(bytes),
      noTransaction: hasNoTransactionMarker(sql),
    });
  }
  if (missing.length > 0) {
    throw new PgstackError(
      "E_MIGRATION_NO_SQL",
      `Migration folder${missing.length > 1 ? "s" : ""} ${missing.map((n) => `'${n}'`).join(", ")} ha${missing.length > 1 ? "ve" : "s"} no migration.sql: add the SQL file or remove the folder.`,
      { folders: missing },
    );
  }
  return migrations;
}

/** Prisma refuses a history whose lock file names another provider (P3019); so does pgstack. */
function assertLockProvider(dir: string): void {
  let text: string;
  try {
    text = readFileSync(path.join(dir, "migration_lock.toml"), "utf8");
  } catch {
    return; // No lock file: Prisma applies the history all the same.
  }
  const provider = /^\s*provider\s*=\s*"([^"]*)"/m.exec(text)?.[1];
  if (provider !== undefined && !POSTGRES_PROVIDERS.has(provider)) {
    throw new PgstackError(
      "E_MIGRATION_PROVIDER",
      `The migration_lock.toml in ${dir} says these migrations were written for provider '${provider}', not postgresql: point --dir at the PostgreSQL history (Prisma refuses this one too).`,
      { provider },
    );
  }
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

function assertTextBytes(name: string, bytes: Buffer): void {
  const bad = firstInvalidUtf8(bytes);
  if (bad !== -1) {
    throw new PgstackError(
      "E_MIGRATION_ENCODING",
      `Migration ${name}: migration.sql is not UTF-8 (byte 0x${bytes[bad].toString(16).padStart(2, "0")} at byte offset ${bad}): re-save the file as UTF-8; nothing was applied.`,
      { migration: name, byteOffset: bad },
    );
  }
  if (bytes.subarray(0, 3).equals(BOM)) {
    throw new PgstackError(
      "E_MIGRATION_ENCODING",
      `Migration ${name}: migration.sql starts with a UTF-8 byte-order mark, which PostgreSQL rejects as a syntax error (under prisma migrate deploy too, so no database has applied this file): save it without the BOM; nothing was applied.`,
      { migration: name, byteOffset: 0 },
    );
  }
}

/** Offset of the first byte that does not belong to well-formed UTF-8, or -1. */
export function firstInvalidUtf8(bytes: Buffer): number {
  let i = 0;
  const n = bytes.length;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    if (b >= 0xc2 && b <= 0xdf) (need = 1), (min = 0x80);
    else if (b >= 0xe0 && b <= 0xef) (need = 2), (min = 0x800);
    else if (b >= 0xf0 && b <= 0xf4) (need = 3), (min = 0x10000);
    else return i;
    if (i + need >= n) return i;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

/** True when the first non-blank line is `-- pgstack:no-transaction`. */
export function hasNoTransactionMarker(sql: string): boolean {
  return firstLine(sql) === NO_TRANSACTION_MARKER;
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

function isDirectory(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}
