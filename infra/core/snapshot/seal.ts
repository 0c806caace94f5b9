import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { Client } from "pg";
import { PgstackError, messageOf } from "../errors";
import type { SnapshotInfo } from "./engine";

/**
 * A snapshot's recorded digests (rows per table, the schema) are sealed with
 * an HMAC-SHA256 keyed by a per-project secret in a 0600 file of the
 * project's snapshots folder (0700, `.pgstack/snapshots/`). The role that
 * owns a template snapshot database can reopen it, change it and rewrite its
 * comment (digests included): it cannot rewrite the seal without the key,
 * which lives on the deployer's machine, not in the database.
 */
export const SEAL_KEY_FILE = "snapshot-seal.key";

/** Where the key is when no snapshots folder is given (relative to the working directory, in `.pgstack/snapshots`). */
export const DEFAULT_SEAL_KEY_FILE = path.join(".pgstack", "snapshots", SEAL_KEY_FILE);

/**
 * The key file of the snapshots folder `snapshotsDir`: inside it, never in its
 * parent, which may be a folder other users can write to (`--snapshots-dir /tmp/x`).
 */
export function sealKeyPath(snapshotsDir: string): string {
  return path.join(path.resolve(snapshotsDir), SEAL_KEY_FILE);
}

/** A key another user could have planted or read is no key: the file and its folder must be this user's alone. */
async function checkPrivate(file: string): Promise<void> {
  const uid = process.getuid?.();
  const refuse = (what: string) => {
    throw new PgstackError("E_SNAPSHOT", `The snapshot seal key ${file} ${what}: only a file and folder of your own that nobody else can write are trusted; move it away (or choose a private --snapshots-dir) and run again.`);
  };
  const dir = await fs.lstat(path.dirname(file));
  if (!dir.isDirectory()) refuse("is not in a folder");
  if (uid !== undefined && dir.uid !== uid) refuse(`is in a folder of another user (uid ${dir.uid})`);
  if ((dir.mode & 0o022) !== 0) refuse("is in a folder others can write to");
  const stat = await fs.lstat(file).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? undefined : Promise.reject(err)));
  if (!stat) return;
  if (!stat.isFile()) refuse("is not a regular file");
  if (uid !== undefined && stat.uid !== uid) refuse(`belongs to another user (uid ${stat.uid})`);
  if ((stat.mode & 0o077) !== 0) refuse(`has mode ${(stat.mode & 0o777).toString(8)}, not 600`);
}

async function readKey(file: string): Promise<Buffer | undefined> {
  try {
    await checkPrivate(file);
    const text = (await fs.readFile(file, "utf8")).trim();
    return /^[0-9a-f]{64}$/.test(text) ? Buffer.from(text, "hex") : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new PgstackError("E_SNAPSHOT", `Could not read the snapshot seal key ${file}: ${messageOf(err).split("\n")[0]}.`);
  }
}

/** The project's key, created (0600, its folder 0700) on first use; two processes creating it at once get the same one. */
export async function sealKey(file: string): Promise<Buffer> {
  const found = await readKey(file);
  if (found) return found;
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await checkPrivate(file);
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
  await fs.writeFile(tmp, randomBytes(32).toString("hex") + "\n", { mode: 0o600, flag: "wx" });
  try {
    // link() fails when the file exists: whoever linked first wins, and a reader never sees a half-written key.
    await fs.link(tmp, file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
  } finally {
    await fs.rm(tmp, { force: true });
  }
  const key = await readKey(file);
  if (!key) throw new PgstackError("E_SNAPSHOT", `The snapshot seal key ${file} is not one pgstack wrote (64 hex digits): move it away and take the snapshot again.`);
  return key;
}

type Sealed = Pick<SnapshotInfo, "snapshotId" | "source" | "lastMigration" | "createdAt" | "states" | "schema" | "fileDigest" | "files">;

/** HMAC-SHA256 of what a snapshot records (id and digests, tables in a fixed order), hex. */
export function sealOf(key: Buffer, s: Sealed): string {
  const states = Object.keys(s.states ?? {})
    .sort()
    .map((t) => [t, s.states![t].rows, s.states![t].digest]);
  const fields = [s.snapshotId, s.source, s.lastMigration, s.createdAt, states, s.schema ?? null, s.fileDigest ?? null];
  // A clone's files fingerprint (fingerprint.ts) makes a second form; records without one keep the first, so their seals still match.
  const text = JSON.stringify(s.files ? [2, ...fields, [s.files.digest, s.files.files, s.files.bytes, s.files.catalogXmin]] : [1, ...fields]);
  return createHmac("sha256", key).update(text).digest("hex");
}

/** Names a key without revealing it: a snapshot sealed with another project's (or machine's) key is told apart from a forged one. */
export function sealKeyIdOf(key: Buffer): string {
  return createHmac("sha256", key).update("pgstack snapshot seal key id").digest("hex").slice(0, 16);
}

export type SealCheck = { status: "sealed" } | { status: "no-key"; keyFile: string; other: boolean } | { status: "unsealed" };

/**
 * Whether `snapshot`'s recorded digests are the ones pgstack recorded: a seal
 * that does not match refuses the restore. Without a seal (an older pgstack)
 * or without the key (a snapshot taken on another machine) they cannot be
 * vouched for, which the caller says.
 */
export async function checkSeal(snapshot: SnapshotInfo, keyFile: string): Promise<SealCheck> {
  if (!snapshot.seal) return { status: "unsealed" };
  const key = await readKey(keyFile);
  if (!key) return { status: "no-key", keyFile, other: false };
  if (snapshot.sealKeyId !== sealKeyIdOf(key)) return { status: "no-key", keyFile, other: true };
  const want = Buffer.from(sealOf(key, snapshot), "hex");
  const got = Buffer.from(/^[0-9a-f]{64}$/.test(snapshot.seal) ? snapshot.seal : "", "hex");
  if (got.length !== want.length || !timingSafeEqual(got, want)) {
    throw new PgstackError(
      "E_SNAPSHOT",
      `Snapshot '${snapshot.snapshotId}' carries digests that do not match their seal (${keyFile}): its record was rewritten since it was taken, so it is not restored; nothing was changed.`,
      { snapshotId: snapshot.snapshotId, reason: "seal-mismatch" },
    );
  }
  return { status: "sealed" };
}

const USER_SCHEMA = (col: string) =>
  `${col} NOT IN ('pg_catalog', 'information_schema') AND ${col} NOT LIKE 'pg\\_toast%' AND ${col} NOT LIKE 'pg\\_temp%'`;

/**
 * One digest of the user schemas' catalog, by names and definitions (never
 * oids, columns by position, not attnum: a dump's copy has no dropped columns), so a copy digests like its original: columns (type, default,
 * nullability), constraints, indexes, triggers, functions, views, sequences,
 * enums, policies. Rows are covered by the per-table digests (tables.ts).
 */
export async function schemaDigestOn(client: Client): Promise<string> {
  const s = USER_SCHEMA("n.nspname");
  // Definitions print names qualified relative to search_path: fixed, so both sides print them alike.
  const { rows: old } = await client.query<{ p: string }>("SELECT current_setting('search_path') AS p");
  await client.query("SELECT set_config('search_path', 'pg_catalog', false)");
  const { rows } = await client.query<{ d: string }>(
    `SELECT md5(coalesce(string_agg(line, E'\\n' ORDER BY line), '')) AS d FROM (
       SELECT 'rel ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text AS line
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${s} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       UNION ALL
       SELECT 'col ' || n.nspname || '.' || c.relname || ' ' || row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
              || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || a.attgenerated::text || ' ' || a.attidentity::text
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE ${s} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
       UNION ALL
       SELECT 'con ' || n.nspname || ' ' || coalesce(c.relname, '') || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
         FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace LEFT JOIN pg_class c ON c.oid = k.conrelid
        WHERE ${s}
       UNION ALL
       SELECT 'idx ' || pg_get_indexdef(i.indexrelid)
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${s}
       UNION ALL
       SELECT 'trg ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${s} AND NOT t.tgisinternal
       UNION ALL
       SELECT 'fn ' || pg_get_functiondef(p.oid)
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE ${s} AND p.prokind <> 'a'
       UNION ALL
       SELECT 'agg ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE ${s} AND p.prokind = 'a'
       UNION ALL
       SELECT 'view ' || n.nspname || '.' || c.relname || ' ' || pg_get_viewdef(c.oid)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${s} AND c.relkind IN ('v', 'm')
       UNION ALL
       SELECT 'seq ' || n.nspname || '.' || c.relname || ' ' || format_type(q.seqtypid, NULL) || ' ' || q.seqstart || ' ' || q.seqincrement
              || ' ' || q.seqmin || ' ' || q.seqmax || ' ' || q.seqcache || ' ' || q.seqcycle
         FROM pg_sequence q JOIN pg_class c ON c.oid = q.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${s}
       UNION ALL
       SELECT 'enum ' || n.nspname || '.' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
         FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE ${s} GROUP BY n.nspname, t.typname
       UNION ALL
       SELECT 'pol ' || n.nspname || '.' || c.relname || ' ' || p.polname || ' ' || p.polcmd::text || ' ' || p.polpermissive
              || ' ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
         FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${s}
       UNION ALL
       SELECT 'rls ' || n.nspname || '.' || c.relname || ' ' || c.relrowsecurity || ' ' || c.relforcerowsecurity
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${s} AND c.relkind IN ('r', 'p') AND (c.relrowsecurity OR c.relforcerowsecurity)
     ) lines`,
  );
  await client.query("SELECT set_config('search_path', $1, false)", [old[0].p]);
  return rows[0].d;
}
