import { randomBytes } from "node:crypto";
import * as path from "node:path";
import type { Client } from "pg";
import type { CloneDecision } from "../db/clone";
import { openSession, withClient } from "../db/client";
import { copyDatabase, decideCopy, drainSessions, serverNow } from "../db/copy";
import { parseDatabaseUrl, quoteIdent, quoteLiteral, withDatabase } from "../db/url";
import { PgstackError, isPgstackError, messageOf } from "../errors";
import { readLedger } from "../ledger/ledger";
import { failpoint } from "../failpoint";
import type { Logger } from "../logger";
import { beginOperation, endOperation, reopenKeepingMarker, rewriteOperation } from "./fence";
import { DEFAULT_MAX_PAUSE_MS, type CreateOptions, type SnapshotEngine, type SnapshotInfo } from "./engine";
import { isPostgresSnapshotName, postgresSnapshotName } from "./naming";
import { connectionEnded, withGuardian, type GuardedFailure } from "./guardian";
import { DEFAULT_SEAL_KEY_FILE, schemaDigestOn, sealKey, sealKeyIdOf, sealOf } from "./seal";
import { filesFingerprint, parseFingerprint } from "./fingerprint";
import { tableStatesOn, type TableStates } from "./tables";

/**
 * Server-side snapshots: `CREATE DATABASE <snapshot> TEMPLATE <db>`, a
 * file-level copy that takes seconds and needs no pg_dump. PostgreSQL refuses
 * it while anyone else is connected to the source, so the copy closes the
 * source to new connections, ends the sessions still in it (never a deployer
 * holding the migration lock), copies, and reopens it. Closing is recorded
 * in a marker (fence.ts) so that a process killed meanwhile is repaired by
 * the next pgstack command; fail-points (failpoint.ts) let tests kill it.
 *
 * Each snapshot database carries a JSON comment (who made it, of what, when,
 * before which migration set, and every table's content digest as taken),
 * which is how snapshots are listed. A snapshot is created closed to
 * connections and stays closed, with CONNECT revoked from PUBLIC; its owner
 * (often the role pgstack runs as) can still reopen it and rewrite the
 * comment, so the comment also holds a schema digest and a seal over all the
 * digests keyed by the project's secret (seal.ts), and a restore refuses a
 * snapshot whose seal, schema or contents no longer match. A
 * copy (CREATE DATABASE ... TEMPLATE) needs no connection to it; pgstack's
 * own reads open it only until their session is established
 * (withSnapshotSession).
 *
 * While the source is closed, a guardian process (guardian.ts) reopens it if
 * this process dies, within seconds and without anyone running pgstack.
 *
 * Every call takes a new copy, even for a key that already has one: the
 * database may have changed since (a stack destroyed and brought up again
 * over the same data dir), and a snapshot that is not the state right before
 * the migrations would make a rollback lose data.
 */
// SnapshotInfo lives with the engine interface; re-exported for the callers that import it from here.
export type { SnapshotInfo } from "./engine";

export type CreateSnapshotOptions = CreateOptions;

const MARK = "pgstack-snapshot";

/** The comment stored on a snapshot database. */
function commentOf(info: SnapshotInfo): string {
  return JSON.stringify({ [MARK]: 1, ...info });
}

function parseComment(name: string, comment: string | null): SnapshotInfo | undefined {
  if (!comment) return undefined;
  try {
    const data = JSON.parse(comment) as Record<string, unknown>;
    if (data[MARK] !== 1) return undefined;
    return {
      snapshotId: name,
      source: String(data.source),
      stack: String(data.stack),
      lastMigration: typeof data.lastMigration === "string" ? data.lastMigration : null,
      createdAt: String(data.createdAt),
      key: typeof data.key === "string" ? data.key : null,
      engine: "template",
      ...(typeof data.clean === "boolean" ? { clean: data.clean } : {}),
      ...(Array.isArray(data.restoredInto) ? { restoredInto: data.restoredInto.filter((o): o is number => typeof o === "number") } : {}),
      ...(data.states && typeof data.states === "object" ? { states: data.states as TableStates } : {}),
      ...(typeof data.schema === "string" ? { schema: data.schema } : {}),
      ...(data.files !== undefined ? { files: parseFingerprint(data.files) ?? { digest: "", files: -1, bytes: -1, catalogXmin: "" } } : {}),
      ...(typeof data.seal === "string" ? { seal: data.seal } : {}),
      ...(typeof data.sealKeyId === "string" ? { sealKeyId: data.sealKeyId } : {}),
      ...(data.method === "clone" || data.method === "template" ? { method: data.method } : {}),
      ...(typeof data.methodReason === "string" ? { methodReason: data.methodReason } : {}),
      ...(typeof data.pauseMs === "number" ? { pauseMs: data.pauseMs } : {}),
    };
  } catch {
    return undefined;
  }
}

/** Every pgstack snapshot on the server of `url`, oldest first. */
export async function listSnapshots(url: string, filter: { source?: string } = {}): Promise<SnapshotInfo[]> {
  return withClient(withDatabase(url, "postgres"), (client) => listOn(client, filter.source), { applicationName: "pgstack snapshot" });
}

export async function listOn(client: Client, source?: string): Promise<SnapshotInfo[]> {
  const { rows } = await client.query<{ datname: string; comment: string | null }>(
    "SELECT datname, shobj_description(oid, 'pg_database') AS comment FROM pg_database",
  );
  return rows
    .map((r) => parseComment(r.datname, r.comment))
    .filter((s): s is SnapshotInfo => s !== undefined && (source === undefined || s.source === source))
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.snapshotId.localeCompare(b.snapshotId));
}

/** The last migration applied in the database of `url`, from its ledger. */
export async function lastAppliedMigration(url: string): Promise<string | null> {
  return (await ledgerState(url)).lastMigration;
}

/**
 * What a snapshot records of the ledger: the last applied migration, and
 * whether every attempt finished (`clean`: the update before it, if any,
 * succeeded), which retention uses to keep every snapshot since the last
 * successful update.
 */
export async function ledgerState(url: string): Promise<{ lastMigration: string | null; clean: boolean }> {
  return withClient(
    url,
    async (client) => {
      const ledger = await readLedger(client);
      const applied = ledger
        .filter((r) => r.finishedAt !== null && r.rolledBackAt === null)
        .map((r) => r.migrationName)
        .sort();
      return {
        lastMigration: applied.length > 0 ? applied[applied.length - 1] : null,
        // A migration attempted but never applied is a failed update (rolled back or partly applied).
        clean: ledger.every((r) => applied.includes(r.migrationName)),
      };
    },
    { applicationName: "pgstack snapshot" },
  );
}

/** Copies the database of `url` into a new snapshot database on the same server and returns what it made. */
export async function createTemplateSnapshot(options: CreateSnapshotOptions): Promise<SnapshotInfo> {
  const target = parseDatabaseUrl(options.url);
  const source = target.database;
  if (source === "postgres" || source === "template0" || source === "template1") {
    throw new PgstackError("E_SNAPSHOT", `Refusing to snapshot the system database '${source}': point the URL at the application database.`);
  }
  const now = options.now ?? (() => new Date());
  const { lastMigration, clean } = await ledgerState(options.url);
  // Before anything is closed: a key that cannot be made or read refuses the snapshot.
  const key = await sealKey(path.resolve(options.sealKeyFile ?? DEFAULT_SEAL_KEY_FILE));
  const admin = withDatabase(options.url, "postgres");

  return withClient(
    admin,
    async (client) => {
      const at = now();
      const reserved = new Set(options.reserved ?? []);
      const snapshotId = options.name
        ? await takenCheck(client, options.name, reserved)
        : await freeName(client, postgresSnapshotName({ stack: options.stack, lastMigration: lastMigration ?? undefined, at }), reserved);
      const info: SnapshotInfo = { snapshotId, source, stack: options.stack, lastMigration, createdAt: at.toISOString(), key: options.key ?? null, engine: "template", clean };
      const state = { closed: false, labelled: false };
      const sealed = await withGuardian(
        options.url,
        options.log,
        () => copySnapshot(client, source, snapshotId, options, info, key, state),
        (err, failure) => snapshotFailure(err, failure, source, snapshotId, state),
      );
      options.log.info(
        `snapshot ${snapshotId} of ${source} taken by ${sealed.method === "clone" ? "clone" : "template copy"}, ${source} closed for ${sealed.pauseMs} ms (${sealed.methodReason}; last migration: ${lastMigration ?? "none"}; ${sealed.files ? `a fingerprint of its ${sealed.files.files} files (${(sealed.files.bytes / 2 ** 30).toFixed(2)} GiB) and a schema digest recorded, sealed: a clone's rows are not read` : `${Object.keys(sealed.states ?? {}).length} table digest(s) and a schema digest recorded, sealed`})`,
      );
      return sealed;
    },
    { applicationName: "pgstack snapshot" },
  );
}

/** A snapshot whose own session was ended under it, in one sentence saying where the database and the snapshot are now. */
function snapshotFailure(err: unknown, failure: GuardedFailure, source: string, snapshot: string, state: { closed: boolean; labelled: boolean }): unknown {
  if (!connectionEnded(err)) return err;
  const ended = "The snapshot's connection to the server was ended (terminated by an administrator, a failover or the network)";
  const made = state.labelled ? `snapshot '${snapshot}' was complete and is kept` : "no snapshot was made";
  const details = { reason: "connection-ended", sqlstate: (err as { code?: string }).code };
  if (failure.handedOver) {
    return new PgstackError(
      "E_SNAPSHOT",
      `${ended} and database '${source}' could not be repaired at once: pgstack's guardian reopens it as soon as the server answers (so does any pgstack command), and ${made}.`,
      details,
    );
  }
  return state.closed || failure.recoveries.some((r) => r.reopened)
    ? new PgstackError("E_SNAPSHOT", `${ended} while database '${source}' was closed; it has been reopened and ${made}.`, details)
    : new PgstackError("E_SNAPSHOT", `${ended}; database '${source}' is open and ${made}.`, details);
}

/** An explicit snapshot name: refused when malformed or when any database already has it. */
async function takenCheck(client: Client, name: string, reserved: Set<string> = new Set()): Promise<string> {
  if (!isPostgresSnapshotName(name)) {
    throw new PgstackError("E_SNAPSHOT", `Snapshot name '${name}' is not one pgstack makes (snap_<stack>_<migration>_<YYYYMMDDHHMMSS>, at most 63 bytes).`);
  }
  const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
  if (rowCount) throw new PgstackError("E_SNAPSHOT", `Snapshot name '${name}' is taken by an existing database: choose another name (nothing was copied).`);
  if (reserved.has(name)) throw new PgstackError("E_SNAPSHOT", `Snapshot name '${name}' is taken by a pg_dump snapshot: choose another name (nothing was copied).`);
  return name;
}

/** `base`, or `base_2`, `base_3`, ... when a database of that name exists (two snapshots in one second). */
async function freeName(client: Client, base: string, reserved: Set<string> = new Set()): Promise<string> {
  for (let n = 1; ; n++) {
    const name = n === 1 ? base : `${base.slice(0, 63 - String(n).length - 1)}_${n}`;
    if (reserved.has(name)) continue;
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (!rowCount) return name;
  }
}

/**
 * Copies `source` into `snapshot` (closed from its creation), reopens the
 * source, records the copy's content digests and labels it with them (what
 * makes it a listed snapshot). The marker stays on the source until the
 * label is written, so a process killed before it leaves no unlabelled copy.
 */
async function copySnapshot(
  client: Client,
  source: string,
  snapshot: string,
  options: CreateSnapshotOptions,
  info: SnapshotInfo,
  key: Buffer,
  state: { closed: boolean; labelled: boolean },
): Promise<SnapshotInfo> {
  const until = Date.now() + (options.drainTimeoutMs ?? 15_000);
  const { rows } = await client.query<{ allowed: boolean }>("SELECT datallowconn AS allowed FROM pg_database WHERE datname = $1", [source]);
  if (rows.length === 0) {
    throw new PgstackError("E_DB_MISSING", `Database '${source}' does not exist, so there is nothing to snapshot.`);
  }
  // Decided before anything is closed: the probe is not part of the pause.
  const how = options.chosen?.how ?? (await decideCopy(client, options.copyMethod));
  const maxPauseMs = options.maxPauseMs ?? DEFAULT_MAX_PAUSE_MS;
  // FILE_COPY starts with a checkpoint: flushed now, with the database open, it has little left to write inside the
  // pause (measured: 9.7 s of a 1 GiB clone's pause right after loading it). Needs superuser or pg_checkpoint; else skipped.
  if (how.clone) await client.query("CHECKPOINT").catch(() => undefined);
  const closedAt = await serverNow(client);
  // Closed and marked in one transaction, so a process killed from here on is
  // reopened by its guardian (or the next pgstack command: fence.ts); the
  // finally only covers a process that lives.
  await beginOperation(client, source, { op: "snapshot", copy: snapshot }, { close: rows[0].allowed });
  const closedSince = Date.now();
  state.closed = rows[0].allowed;
  let labelled = false;
  try {
    failpoint("snapshot:closed");
    // The bounded pause: each session is ended once the transaction it had open at the close is over.
    const { busy } = await drainSessions(client, source, { closedAt, graceMs: maxPauseMs, log: options.log, purpose: "snapshot" });
    failpoint("snapshot:drained");
    if (busy > 0 && options.giveUpAtBound) {
      await endOperation(client, source);
      state.closed = false;
      const pauseMs = Date.now() - closedSince;
      throw new PgstackError(
        "E_SNAPSHOT",
        `${busy} session(s) of '${source}' were still in a transaction after ${maxPauseMs} ms, so it was reopened (closed for ${pauseMs} ms) and no copy was made.`,
        { reason: "pause-exceeded", busy, pauseMs, maxPauseMs },
      );
    }
    if (busy > 0) options.log.warn(`${busy} session(s) of ${source} were still in a transaction after ${maxPauseMs} ms: ending them (their transactions roll back)`);
    try {
      // Closed to new sessions now; the copy ends any still in it.
      await copyDatabase(client, source, snapshot, { how, whenBusy: { mode: "end-sessions", log: options.log, until, purpose: "snapshot" }, failpoints: "snapshot", closed: true });
    } catch (err) {
      // A session ended under it is said by withGuardian, once the database is repaired.
      if (isPgstackError(err) || connectionEnded(err)) throw err;
      throw new PgstackError("E_SNAPSHOT", `Could not copy database '${source}' to snapshot '${snapshot}': ${messageOf(err).split("\n")[0]}.`);
    }
    failpoint("snapshot:copied");
    // The owner and superusers only, should it ever be opened.
    await client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${quoteIdent(snapshot)} FROM PUBLIC`);
    // The application may come back now; the digests are read from the copy, which nobody else can enter.
    if (rows[0].allowed) await reopenKeepingMarker(client, source);
    state.closed = false;
    const pauseMs = Date.now() - closedSince;
    // Not sealed (seal.ts): how the copy was made says nothing about what it holds, which the digests do.
    info = { ...info, method: how.clone ? "clone" : "template", methodReason: options.chosen?.reason ?? how.reason, pauseMs };
    // A clone's rows are not read (that grows with the database): its files are fingerprinted
    // (fingerprint.ts) before anything could enter it, and it is never opened: its schema digest is
    // read from a throwaway clone of it. Opening it for a session would let its owner in too, in that
    // window, and a row written then would be sealed as the snapshot's. A full copy's rows are digested.
    const files = how.clone ? await filesFingerprint(client, snapshot) : undefined;
    if (files && !files.fingerprint) options.log.warn(`snapshot ${snapshot}: its files cannot be fingerprinted (${files.reason}), so its rows are digested instead`);
    const schema = files?.fingerprint
      ? await schemaOfClone(client, options.url, source, snapshot, how)
      : await withSnapshotSession(client, options.url, snapshot, schemaDigestOn);
    const digests: Pick<SnapshotInfo, "states" | "files"> = files?.fingerprint
      ? { files: files.fingerprint }
      : { states: await withSnapshotSession(client, options.url, snapshot, tableStatesOn) };
    // The owner of the copy can rewrite this comment; not the seal, whose key stays with the deployer (seal.ts).
    const record = { ...info, ...digests, schema, seal: sealOf(key, { ...info, ...digests, schema }), sealKeyId: sealKeyIdOf(key) };
    await client.query(`COMMENT ON DATABASE ${quoteIdent(snapshot)} IS ${quoteLiteral(commentOf(record))}`);
    labelled = true;
    state.labelled = true;
    failpoint("snapshot:labelled");
    return record;
  } finally {
    if (!labelled) await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(snapshot)} WITH (FORCE)`).catch(() => undefined);
    await endOperation(client, source).catch(() => undefined);
  }
}

/**
 * The schema digest of clone snapshot `snapshot`, read from a throwaway clone
 * of it (cloning changes none of its files), so the snapshot itself is never
 * opened to connections. The clone is named in `source`'s operation marker
 * before it is made: a process killed with it on disk leaves it to the repair
 * (fence.ts).
 */
async function schemaOfClone(client: Client, url: string, source: string, snapshot: string, how: CloneDecision): Promise<string> {
  const probe = `${snapshot.slice(0, 63 - "_schema_".length - 8)}_schema_${randomBytes(4).toString("hex")}`;
  await rewriteOperation(client, source, { probe });
  let made = false;
  try {
    if ((await copyDatabase(client, snapshot, probe, { how, whenBusy: { mode: "refuse" } })) === "busy") {
      throw new PgstackError("E_SNAPSHOT", `Snapshot '${snapshot}' had a session in it before it was labelled, so it was not kept.`, { reason: "snapshot-in-use" });
    }
    made = true;
    failpoint("snapshot:probe-copied");
    return await withClient(withDatabase(url, probe), (session) => schemaDigestOn(session), { applicationName: "pgstack snapshot" });
  } finally {
    if (made) await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(probe)} WITH (FORCE)`).catch(() => undefined);
  }
}

/**
 * Runs `fn` in a session of snapshot database `snapshot`, which is closed to
 * connections: opened (by `admin`, a session of the server's `postgres`
 * database) only until this session is established, then closed again. A
 * snapshot taken by an older pgstack, open, is left as it is.
 */
export async function withSnapshotSession<T>(admin: Client, url: string, snapshot: string, fn: (session: Client) => Promise<T>): Promise<T> {
  const { rows } = await admin.query<{ allowed: boolean }>("SELECT datallowconn AS allowed FROM pg_database WHERE datname = $1", [snapshot]);
  const closed = rows[0] !== undefined && !rows[0].allowed;
  if (closed) await admin.query(`ALTER DATABASE ${quoteIdent(snapshot)} ALLOW_CONNECTIONS true`);
  let session: Client;
  try {
    session = (await openSession(withDatabase(url, snapshot), { applicationName: "pgstack snapshot" })).client;
  } finally {
    if (closed) await admin.query(`ALTER DATABASE ${quoteIdent(snapshot)} ALLOW_CONNECTIONS false`);
  }
  try {
    return await fn(session);
  } finally {
    await session.end().catch(() => undefined);
  }
}

/** Drops a template snapshot database; refuses any database that is not one (no pgstack-snapshot comment). */
export async function dropTemplateSnapshot(url: string, snapshotId: string, log: Logger): Promise<void> {
  await withClient(
    withDatabase(url, "postgres"),
    async (client) => {
      const known = (await listOn(client)).some((s) => s.snapshotId === snapshotId);
      if (!known) throw new PgstackError("E_SNAPSHOT", `No snapshot '${snapshotId}' exists on this server (see \`pgstack snapshot list\`): nothing was deleted.`);
      // FORCE: a psql left open in a snapshot must not keep it on disk forever.
      await client.query(`DROP DATABASE ${quoteIdent(snapshotId)} WITH (FORCE)`);
    },
    { applicationName: "pgstack snapshot" },
  );
  log.info(`snapshot ${snapshotId} deleted`);
}

/** The template engine behind the SnapshotEngine interface. */
export const templateEngine: SnapshotEngine = {
  kind: "template",
  create: (options) => createTemplateSnapshot(options),
  list: (url, filter) => listSnapshots(url, filter),
  // As recorded when it was taken; a snapshot of an older pgstack has none: read as it is now.
  tableStates: async (url, snapshot) => {
    // A session in a clone snapshot would change the files its seal fingerprints (fingerprint.ts).
    if (snapshot.files) throw new PgstackError("E_SNAPSHOT", `Snapshot '${snapshot.snapshotId}' is a clone sealed by its files: its rows are not read in place.`);
    return snapshot.states ?? withClient(withDatabase(url, "postgres"), (admin) => withSnapshotSession(admin, url, snapshot.snapshotId, tableStatesOn), { applicationName: "pgstack snapshot" });
  },
  async markRestored(url, snapshot, oid) {
    const info: SnapshotInfo = { ...snapshot, restoredInto: [...new Set([...(snapshot.restoredInto ?? []), oid])] };
    await withClient(withDatabase(url, "postgres"), (c) => c.query(`COMMENT ON DATABASE ${quoteIdent(snapshot.snapshotId)} IS ${quoteLiteral(commentOf(info))}`), {
      applicationName: "pgstack restore",
    });
  },
  async materialize(url, snapshot, target, log, options) {
    const how = await withClient(
      withDatabase(url, "postgres"),
      async (client) => {
        const how = await decideCopy(client, options?.copyMethod);
        const started = Date.now();
        // Nobody should be in a snapshot, but a psql left open would make the copy fail: ended, without retrying.
        await copyDatabase(client, snapshot.snapshotId, target, { how, whenBusy: { mode: "end-sessions", log, until: 0, purpose: "restore" }, closed: options?.closed });
        if (options?.closed) await client.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${quoteIdent(target)} FROM PUBLIC`);
        return { ...how, ms: Date.now() - started };
      },
      { applicationName: "pgstack restore" },
    );
    log.info(`copied snapshot ${snapshot.snapshotId} into ${target} by ${how.clone ? "clone" : "template copy"} in ${how.ms} ms (${how.reason})`);
    return { method: how.clone ? "clone" : "template", reason: how.reason };
  },
  remove: (url, snapshot, log) => dropTemplateSnapshot(url, snapshot.snapshotId, log),
};

