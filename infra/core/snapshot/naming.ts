/**
 * Snapshot ids carry the stack, the last migration the snapshot contains and
 * the UTC time it was taken, so a person reading a list of them (or the
 * `rollbackCommand` output) knows what each one is without looking it up.
 *
 *   postgres (a database name, at most 63 bytes):
 *     snap_dev_20250704091126_add_api_key_created_by_fkey_20251122003015
 *   rds (a DB snapshot identifier: letters, digits, single hyphens):
 *     pgstack-prod-20250704091126-add-api-key-created-by-fkey-20251122003015
 *
 * A database with no migration applied yet gets `empty` in place of the name.
 */
export type SnapshotIdStyle = "postgres" | "rds";

export interface SnapshotIdParts {
  stack: string;
  /** Last applied migration (folder name), or undefined when none is. */
  lastMigration?: string;
  at: Date;
}

export const POSTGRES_NAME_MAX = 63;
export const RDS_SNAPSHOT_ID_MAX = 255;
const EMPTY = "empty";

/** YYYYMMDDHHMMSS in UTC. */
export function timestamp(at: Date): string {
  return at.toISOString().replace(/[-:T]/g, "").slice(0, 14);
}

export function snapshotId(parts: SnapshotIdParts, style: SnapshotIdStyle): string {
  return style === "postgres" ? postgresSnapshotName(parts) : rdsSnapshotId(parts);
}

/** Lower case, every run of other characters turned into one `sep`, none at either end. */
function clean(text: string, sep: "_" | "-"): string {
  return text
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean)
    .join(sep);
}

/**
 * The one stack-name slug: the last `/` segment of a stack name, lower case,
 * each run of other characters one `sep`, none at either end ("stack" if
 * nothing is left). Used in paths, database, snapshot and AWS identifiers.
 */
export function stackSlug(stack: string, sep: "_" | "-" = "-"): string {
  return clean(stack.split("/").pop() ?? stack, sep) || "stack";
}

/** The stack part of a snapshot name: its slug, at most 16 characters. */
function stackPart(stack: string, sep: "_" | "-"): string {
  const cut = stackSlug(stack, sep).slice(0, 16);
  return cut.endsWith(sep) ? cut.slice(0, -1) : cut;
}

export function postgresSnapshotName(parts: SnapshotIdParts): string {
  const head = `snap_${stackPart(parts.stack, "_")}_`;
  const tail = `_${timestamp(parts.at)}`;
  const budget = POSTGRES_NAME_MAX - head.length - tail.length;
  const migration = parts.lastMigration ? clean(parts.lastMigration, "_") : EMPTY;
  return head + migration.slice(0, budget).replace(/_+$/, "") + tail;
}

export function rdsSnapshotId(parts: SnapshotIdParts): string {
  const head = `pgstack-${stackPart(parts.stack, "-")}-`;
  const tail = `-${timestamp(parts.at)}`;
  const budget = RDS_SNAPSHOT_ID_MAX - head.length - tail.length;
  const migration = parts.lastMigration ? clean(parts.lastMigration, "-") : EMPTY;
  return head + migration.slice(0, budget).replace(/-+$/, "") + tail;
}

/** The migration folder an rds snapshot id names (the longest whose id form it contains), if any. */
export function migrationOfRdsSnapshotId(id: string, migrations: string[]): string | undefined {
  return migrations.filter((m) => id.includes(`-${clean(m, "-")}-`)).sort((a, b) => b.length - a.length)[0];
}

/** True for a name this module makes in the postgres style. */
export function isPostgresSnapshotName(name: string): boolean {
  return /^snap_[a-z0-9_]+_\d{14}(_\d+)?$/.test(name) && Buffer.byteLength(name) <= POSTGRES_NAME_MAX;
}
