import type { CloneDecision } from "../db/clone";
import type { CopyMethod } from "../db/copy";
import type { Logger } from "../logger";
import type { FilesFingerprint } from "./fingerprint";
import type { TableCounts, TableStates } from "./tables";

/**
 * One interface over the ways pgstack snapshots a database it can reach with
 * a URL (the rds engine's aws.rds.Snapshot lives in the Pulumi components):
 *
 *   template  CREATE DATABASE <snapshot> TEMPLATE <db> on the same server: a
 *             file-level copy in seconds; needs a role that may create
 *             databases and owns the source (or a superuser).
 *   dump      pg_dump -Fc into a snapshots folder, for roles that may not.
 *
 * Restore (restore.ts) is the same for both: `materialize` the snapshot into
 * `<db>_restoring`, check it against `tableStates` (content digests), then swap names.
 */
export type SnapshotKind = "template" | "dump";

/** What a snapshot is, whichever engine holds it. */
export interface SnapshotInfo {
  /** The snapshot database's name. */
  snapshotId: string;
  /** The database it is a copy of. */
  source: string;
  stack: string;
  /** Last migration applied in the copy, or null when none was. */
  lastMigration: string | null;
  createdAt: string;
  /** The migration-set key it was taken before, when given. */
  key: string | null;
  /** Which engine holds it (absent in comments written before there were two: template). */
  engine?: SnapshotKind;
  /** dump only, older sidecars: rows per table at the moment of the dump. */
  tables?: TableCounts;
  /** Rows and content digest per table when it was taken (absent: taken by an older pgstack, or a dump sidecar with counts only). */
  states?: TableStates;
  /**
   * A clone snapshot's files when it was taken (fingerprint.ts), recorded instead of `states`: its rows
   * are not read, its files are checked unchanged (absent: a full copy, a dump, or an older pgstack).
   */
  files?: FilesFingerprint;
  /** Digest of the user schemas' catalog when it was taken (seal.ts; absent: an older pgstack). */
  schema?: string;
  /** HMAC of the recorded digests with the project's key (seal.ts; absent: an older pgstack). */
  seal?: string;
  /** Which key made `seal` (seal.ts sealKeyIdOf). */
  sealKeyId?: string;
  /** dump only: SHA-256 of the dump file when it was written (absent: an older pgstack). */
  fileDigest?: string;
  /** Whether every migration attempt in the ledger had finished when it was taken (absent: not recorded). */
  clean?: boolean;
  /** Oids of the databases restored from it (so retention keeps it while they live). */
  restoredInto?: number[];
  /** How the copy was made: "clone" (file_copy_method=clone, STRATEGY FILE_COPY on a file system that reflinks),
   *  "template" (CREATE DATABASE … TEMPLATE, a full copy) or "dump" (pg_dump). Absent: an older pgstack. */
  method?: SnapshotMethod;
  /** One sentence: why this method. */
  methodReason?: string;
  /** How long the source database was closed to the application, ms (0 for a dump that closed nothing). */
  pauseMs?: number;
}

export type SnapshotMethod = "clone" | "template" | "dump";

/** The default bound of a snapshot's (and a restore swap's) wait for the application's transactions, ms (pgstack:snapshots.maxPauseMs). */
export const DEFAULT_MAX_PAUSE_MS = 1000;

export interface CreateOptions {
  /** URL of the database to snapshot (its password is never logged). */
  url: string;
  stack: string;
  /** The migration set the update applies next (recorded with the snapshot). */
  key?: string;
  /** An exact id to use instead of a generated one; taken -> an error, never an overwrite. */
  name?: string;
  /**
   * Ids in use outside this engine (the other engine's snapshots, any database
   * of the server): taken too, so an id names one snapshot whatever its engine.
   */
  reserved?: string[];
  log: Logger;
  now?: () => Date;
  /** How long to keep trying while sessions linger in the source, ms. Default 15000. */
  drainTimeoutMs?: number;
  /** The project's seal key file (seal.ts), created when missing. Default `.pgstack/snapshot-seal.key`. */
  sealKeyFile?: string;
  /** Forces the template engine's copy method (tests, benches); default: detected (db/clone.ts). */
  copyMethod?: CopyMethod;
  /** How long the template engine waits, with the source closed, for transactions open at the close to finish. Default 1000. */
  maxPauseMs?: number;
  /** Set by the store (chooseEngine): why this engine, and the copy decision it already made. */
  chosen?: { reason: string; how?: CloneDecision; sessions?: number; pauseMs?: number };
  /**
   * Template engine: when sessions are still in a transaction at maxPauseMs,
   * reopen and fail with details.reason "pause-exceeded" (the store then
   * takes a dump) instead of ending them.
   */
  giveUpAtBound?: boolean;
}

export interface SnapshotEngine {
  readonly kind: SnapshotKind;
  /** Takes a snapshot of the database of `options.url`. */
  create(options: CreateOptions): Promise<SnapshotInfo>;
  /** This engine's snapshots of the server/folder of `url`, oldest first; `source` filters by database. */
  list(url: string, filter?: { source?: string }): Promise<SnapshotInfo[]>;
  /** Rows and content digest per table at the moment the snapshot was taken. */
  tableStates(url: string, snapshot: SnapshotInfo): Promise<TableStates>;
  /** Creates database `target` (which must not exist) on the server of `url` holding the snapshot's data. */
  /**
   * `closed`: `target` is created closed to connections and without PUBLIC's CONNECT and TEMPORARY
   * (the restore of a clone snapshot, whose copy's rows are not checked: nobody but the restorer may
   * write it before the swap; the restore gives PUBLIC's back with the database's own ACL).
   */
  materialize(url: string, snapshot: SnapshotInfo, target: string, log: Logger, options?: { copyMethod?: CopyMethod; closed?: boolean }): Promise<void | { method: SnapshotMethod; reason: string }>;
  /** Records that database `oid` was restored from the snapshot (retention keeps such a snapshot). */
  markRestored(url: string, snapshot: SnapshotInfo, oid: number): Promise<void>;
  /** Removes the snapshot, and nothing else. */
  remove(url: string, snapshot: SnapshotInfo, log: Logger): Promise<void>;
}
