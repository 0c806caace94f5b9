import { randomUUID } from "node:crypto";
import type { Client } from "pg";
import { quoteIdent } from "../db/url";

/**
 * The ledger is Prisma Migrate's own `_prisma_migrations` table, created
 * exactly as Prisma creates it, so `prisma migrate status` and pgstack read
 * the same history and a project moves between the two with no baseline step.
 */
export const LEDGER_TABLE = "_prisma_migrations";

/**
 * The ledger's name qualified with its schema (Prisma's `?schema=`, default
 * public): a migration may empty search_path (pg_dump-style baselines run
 * `set_config('search_path', '', false)`), and the ledger statements that run
 * after it must still find the table.
 */
export function ledgerTable(schema: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(LEDGER_TABLE)}`;
}

const createLedgerSql = (schema: string) => `CREATE TABLE IF NOT EXISTS ${ledgerTable(schema)} (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

/** One row: one attempt at one migration. */
export interface LedgerRow {
  id: string;
  checksum: string;
  migrationName: string;
  startedAt: Date;
  finishedAt: Date | null;
  rolledBackAt: Date | null;
  logs: string | null;
  appliedStepsCount: number;
}

/** Creates the ledger in `schema` when missing. */
export async function ensureLedger(client: Client, schema: string): Promise<void> {
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
  await client.query(createLedgerSql(schema));
  remembered.get(client)?.seen.add(schema);
}

/** Whether the ledger exists in `schema` (default: the session's current schema). */
export async function ledgerExists(client: Client, schema?: string): Promise<boolean> {
  const { rows } = await client.query<{ found: boolean }>(
    `SELECT to_regclass(quote_ident(coalesce($1, current_schema())) || '.${LEDGER_TABLE}') IS NOT NULL AS found`,
    [schema ?? null],
  );
  return rows[0].found;
}

/**
 * What a long-lived session (a deploy session's deployer, which reads the
 * ledger at every step) remembers of its reads: the schemas whose ledger it
 * has seen, and each row it read with the row's version (xmin). Its next read
 * fetches only the rows added or changed since, and returns exactly what a
 * full read would, in the same order. Only reads outside a transaction are
 * remembered by this session (its deployer lets go of a connection left in one).
 */
interface Remembered {
  seen: Set<string>;
  rows: Map<string, Map<string, { version: string; row: LedgerRow }>>;
}
const remembered = new WeakMap<Client, Remembered>();

/** From now on `client` remembers its ledger reads (see Remembered). */
export function rememberLedgerReads(client: Client): void {
  if (!remembered.has(client)) remembered.set(client, { seen: new Set(), rows: new Map() });
}

/** Every attempt, oldest first (a read-only view; never creates the table). */
export async function readLedger(client: Client, schema?: string): Promise<LedgerRow[]> {
  return (await readLedgerIfExists(client, schema)) ?? [];
}

const LEDGER_COLUMNS = "id, checksum, migration_name, started_at, finished_at, rolled_back_at, logs, applied_steps_count, xmin::text AS version";

/** Every attempt, oldest first; undefined when there is no ledger table yet. */
export async function readLedgerIfExists(client: Client, schema?: string): Promise<LedgerRow[] | undefined> {
  const memory = schema === undefined ? undefined : remembered.get(client);
  if (!memory?.seen.has(schema!)) {
    if (!(await ledgerExists(client, schema))) return undefined;
    memory?.seen.add(schema!);
  }
  const table = schema ? ledgerTable(schema) : quoteIdent(LEDGER_TABLE);
  const known = memory?.rows.get(table);
  if (known) {
    const { rows: versions } = await client.query<{ id: string; version: string }>(`SELECT id, xmin::text AS version FROM ${table} ORDER BY started_at, migration_name`);
    const stale = versions.filter((v) => known.get(v.id)?.version !== v.version).map((v) => v.id);
    const fresh = new Map<string, { version: string; row: LedgerRow }>();
    if (stale.length > 0) {
      const { rows } = await client.query(`SELECT ${LEDGER_COLUMNS} FROM ${table} WHERE id = ANY($1)`, [stale]);
      for (const r of rows) fresh.set(r.id, { version: r.version, row: ledgerRow(r) });
    }
    const next = new Map<string, { version: string; row: LedgerRow }>();
    for (const v of versions) {
      const entry = fresh.get(v.id) ?? known.get(v.id);
      // Changed again between the two reads (a writer that does not take the lock): read it all.
      if (!entry || entry.version !== v.version) return fullRead(client, table, memory);
      next.set(v.id, entry);
    }
    memory!.rows.set(table, next);
    return [...next.values()].map((e) => e.row);
  }
  return fullRead(client, table, memory);
}

async function fullRead(client: Client, table: string, memory: Remembered | undefined): Promise<LedgerRow[]> {
  const { rows } = await client.query(`SELECT ${LEDGER_COLUMNS} FROM ${table} ORDER BY started_at, migration_name`);
  const read = rows.map((r) => ({ version: r.version as string, row: ledgerRow(r) }));
  memory?.rows.set(table, new Map(read.map((e) => [e.row.id, e])));
  return read.map((e) => e.row);
}

function ledgerRow(r: Record<string, any>): LedgerRow {
  return {
    id: r.id,
    checksum: r.checksum,
    migrationName: r.migration_name,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    rolledBackAt: r.rolled_back_at,
    logs: r.logs,
    appliedStepsCount: r.applied_steps_count,
  };
}

/** Opens an attempt, as Prisma does before running a script. Returns its id. */
export async function recordStarted(client: Client, schema: string, name: string, checksum: string): Promise<string> {
  const id = randomUUID();
  await client.query(
    `INSERT INTO ${ledgerTable(schema)} (id, checksum, migration_name, started_at, applied_steps_count)
     VALUES ($1, $2, $3, clock_timestamp(), 0)`,
    [id, checksum, name],
  );
  return id;
}

/**
 * The same INSERT as `recordStarted`, as SQL text with the values inlined, for
 * the runner to send in one message with the migration's statements (a
 * simple-query message cannot carry parameters). The values are a UUID, a hex
 * checksum and a folder name, quoted as literals all the same.
 */
export function recordStartedSql(client: Client, schema: string, id: string, name: string, checksum: string): string {
  return `INSERT INTO ${ledgerTable(schema)} (id, checksum, migration_name, started_at, applied_steps_count)
     VALUES (${client.escapeLiteral(id)}, ${client.escapeLiteral(checksum)}, ${client.escapeLiteral(name)}, clock_timestamp(), 0)`;
}

/** The same UPDATE as `recordFinished`, as SQL text (see `recordStartedSql`). */
export function recordFinishedSql(client: Client, schema: string, id: string, appliedSteps: number): string {
  return `UPDATE ${ledgerTable(schema)} SET finished_at = clock_timestamp(), applied_steps_count = ${Math.trunc(appliedSteps)} WHERE id = ${client.escapeLiteral(id)}`;
}

export async function recordFinished(client: Client, schema: string, id: string, appliedSteps: number): Promise<void> {
  await client.query(
    `UPDATE ${ledgerTable(schema)} SET finished_at = clock_timestamp(), applied_steps_count = $2 WHERE id = $1`,
    [id, appliedSteps],
  );
}

/**
 * Records a failed attempt. `rolledBack` is true when the migration's
 * transaction was rolled back, so the schema is as before and the next run may
 * retry it (Prisma reads rolled_back_at the same way).
 */
export async function recordFailed(
  client: Client,
  schema: string,
  attempt: { id?: string; name: string; checksum: string; logs: string; rolledBack: boolean; appliedSteps: number },
): Promise<void> {
  if (attempt.id) {
    await client.query(
      `UPDATE ${ledgerTable(schema)} SET logs = $2, rolled_back_at = CASE WHEN $3 THEN clock_timestamp() END,
              applied_steps_count = $4 WHERE id = $1`,
      [attempt.id, attempt.logs, attempt.rolledBack, attempt.appliedSteps],
    );
    return;
  }
  await client.query(
    `INSERT INTO ${ledgerTable(schema)} (id, checksum, migration_name, started_at, logs, rolled_back_at, applied_steps_count)
     VALUES ($1, $2, $3, clock_timestamp(), $4, CASE WHEN $5 THEN clock_timestamp() END, $6)`,
    [randomUUID(), attempt.checksum, attempt.name, attempt.logs, attempt.rolledBack, attempt.appliedSteps],
  );
}

/**
 * Marks the migration's other unfinished attempts (a failed `prisma migrate
 * deploy` leaves one with neither finished_at nor rolled_back_at) rolled back,
 * as SQL text for the message that finishes the successful attempt: Prisma
 * counts such a row as a failed migration even after a later success.
 */
export function supersedeFailedSql(client: Client, schema: string, name: string, keepId: string): string {
  return `UPDATE ${ledgerTable(schema)} SET rolled_back_at = clock_timestamp()
     WHERE migration_name = ${client.escapeLiteral(name)} AND finished_at IS NULL AND rolled_back_at IS NULL AND id <> ${client.escapeLiteral(keepId)}`;
}

/** Progress of a non-atomic attempt: how many statements are committed. */
export async function recordProgress(client: Client, schema: string, id: string, appliedSteps: number): Promise<void> {
  await client.query(`UPDATE ${ledgerTable(schema)} SET applied_steps_count = $2 WHERE id = $1`, [id, appliedSteps]);
}

/**
 * `prisma migrate resolve --applied`: the failed attempts are marked rolled
 * back and a finished row is added, as Prisma's mark_migration_applied does.
 */
export async function recordResolvedApplied(client: Client, schema: string, name: string, checksum: string): Promise<void> {
  await client.query(
    `UPDATE ${ledgerTable(schema)} SET rolled_back_at = clock_timestamp()
      WHERE migration_name = $1 AND finished_at IS NULL AND rolled_back_at IS NULL`,
    [name],
  );
  await client.query(
    `INSERT INTO ${ledgerTable(schema)} (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
     VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp(), 0)`,
    [randomUUID(), checksum, name],
  );
}

/** `prisma migrate resolve --rolled-back`: the failed attempts are marked rolled back. Returns how many. */
export async function recordResolvedRolledBack(client: Client, schema: string, name: string): Promise<number> {
  const { rowCount } = await client.query(
    `UPDATE ${ledgerTable(schema)} SET rolled_back_at = clock_timestamp()
      WHERE migration_name = $1 AND finished_at IS NULL AND rolled_back_at IS NULL`,
    [name],
  );
  return rowCount ?? 0;
}
