import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { Client } from "pg";

/**
 * A clone snapshot is sealed by its files, not by reading its rows: reading
 * every row is what made a snapshot of a large database slow, and a clone's
 * files are the source's files at the moment of the copy. What is recorded
 * (and sealed with the record, seal.ts):
 *
 *   - every file of the database's directories (base/<oid>, and its folder
 *     in each tablespace): relative path, size, mtime, ctime and inode,
 *     hashed together. A page PostgreSQL writes changes the mtime and ctime;
 *     a role of the database cannot set a ctime back.
 *   - the xmin of its pg_database row: opening it to connections (ALTER
 *     DATABASE … ALLOW_CONNECTIONS, the only way a role gets in to change
 *     it) rewrites that row.
 *
 * A CHECKPOINT comes first, so a page written in memory is on disk before
 * the files are looked at. Left out: the relation cache file a session
 * writes on connecting (pg_internal.init: a cache, not content), temporary
 * relations' files and the forks of unlogged relations (a server start
 * removes or resets them, as it does their rows).
 */
export interface FilesFingerprint {
  /** sha256 of every file's path, size, mtime, ctime and inode, sorted by path. */
  digest: string;
  files: number;
  bytes: number;
  /** xmin of the database's pg_database row when it was taken. */
  catalogXmin: string;
}

/** The relation cache file, and temporary relations' files (removed at a server start). */
const NOT_CONTENT = /^(pg_internal\.init(\.\d+)?|t\d+_.*)$/;

/** The folders holding a database's files: base/<oid> and <tablespace>/PG_*\/<oid>. */
async function databaseFolders(admin: Client, oid: number, dataDir: string): Promise<string[]> {
  const folders = [path.join(dataDir, "base", String(oid))];
  const { rows } = await admin.query<{ loc: string }>("SELECT pg_tablespace_location(oid) AS loc FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')");
  for (const { loc } of rows) {
    const root = path.isAbsolute(loc) ? loc : path.join(dataDir, loc);
    for (const version of await fs.readdir(root).catch(() => [] as string[])) {
      if (version.startsWith("PG_")) folders.push(path.join(root, version, String(oid)));
    }
  }
  return folders;
}

/** Relfilenodes of unlogged relations in `names`: those with an `_init` fork. */
function unloggedNodes(names: string[]): Set<string> {
  return new Set(names.filter((n) => n.endsWith("_init")).map((n) => n.slice(0, -"_init".length)));
}

/**
 * The fingerprint of `database`'s files on the server of `admin` (a superuser
 * session, or one with pg_checkpoint that can read the data directory), or
 * undefined with the reason when it cannot be taken here: the caller then
 * reads the rows instead.
 */
export async function filesFingerprint(admin: Client, database: string): Promise<{ fingerprint: FilesFingerprint } | { fingerprint: undefined; reason: string }> {
  const { rows } = await admin.query<{ oid: number; xmin: string }>("SELECT oid::int AS oid, xmin::text AS xmin FROM pg_database WHERE datname = $1", [database]);
  if (rows.length === 0) return { fingerprint: undefined, reason: `database '${database}' does not exist` };
  let dataDir: string;
  try {
    dataDir = (await admin.query<{ d: string }>("SELECT current_setting('data_directory') AS d")).rows[0].d;
    await admin.query("CHECKPOINT");
  } catch (err) {
    return { fingerprint: undefined, reason: `the role may not run CHECKPOINT or read data_directory (${(err as { code?: string }).code ?? "error"})` };
  }
  const lines: string[] = [];
  let bytes = 0;
  for (const folder of await databaseFolders(admin, rows[0].oid, dataDir)) {
    let names: string[];
    try {
      names = (await fs.readdir(folder)).sort();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" && folder !== path.join(dataDir, "base", String(rows[0].oid))) continue;
      return { fingerprint: undefined, reason: `${folder} cannot be read here (${code ?? "error"}): the data directory is not on this machine or not readable` };
    }
    const unlogged = unloggedNodes(names);
    for (const name of names) {
      if (NOT_CONTENT.test(name) || unlogged.has(name.split(/[._]/)[0])) continue;
      const stat = await fs.stat(path.join(folder, name), { bigint: true });
      if (!stat.isFile()) continue;
      bytes += Number(stat.size);
      lines.push([path.relative(dataDir, path.join(folder, name)), stat.size, stat.mtimeNs, stat.ctimeNs, stat.ino].join(" "));
    }
  }
  const digest = createHash("sha256").update(lines.join("\n")).digest("hex");
  return { fingerprint: { digest, files: lines.length, bytes, catalogXmin: rows[0].xmin } };
}

/** Whether two fingerprints are of the same, unchanged files. */
export function sameFiles(a: FilesFingerprint, b: FilesFingerprint): boolean {
  return a.digest === b.digest && a.files === b.files && a.bytes === b.bytes && a.catalogXmin === b.catalogXmin;
}

/** Recorded in a snapshot's comment: accepted only in the shape pgstack writes. */
export function parseFingerprint(value: unknown): FilesFingerprint | undefined {
  if (!value || typeof value !== "object") return undefined;
  const v = value as Record<string, unknown>;
  return typeof v.digest === "string" && /^[0-9a-f]{64}$/.test(v.digest) && typeof v.files === "number" && typeof v.bytes === "number" && typeof v.catalogXmin === "string"
    ? { digest: v.digest, files: v.files, bytes: v.bytes, catalogXmin: v.catalogXmin }
    : undefined;
}

/** What differs between two fingerprints, in a phrase. */
export function describeFiles(now: FilesFingerprint, then: FilesFingerprint): string {
  // Any ALTER DATABASE rewrites the row (owner, name, connection limit, grants), not only opening it to
  // connections: which one cannot be told from the row, so the sentence claims none of them.
  if (now.catalogXmin !== then.catalogXmin) return "its pg_database row was rewritten since it was taken (ALTER DATABASE), and opening it to connections is such a rewrite";
  if (now.files !== then.files) return `${now.files} files, ${then.files} when taken`;
  if (now.bytes !== then.bytes) return `${now.bytes} bytes, ${then.bytes} when taken`;
  return "a file of it was written since: by a session, at file level, or by PostgreSQL's own anti-wraparound vacuum of an old snapshot";
}
