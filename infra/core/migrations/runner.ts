import { randomUUID } from "node:crypto";
import { Query, type Client, type DatabaseError } from "pg";
import { withAdvisoryLock, withClient, sleep } from "../db/client";
import type { ConnectionTarget } from "../db/url";
import { PgstackError } from "../errors";
import {
  ensureLedger,
  readLedger,
  recordFailed,
  recordFinished,
  recordFinishedSql,
  recordStarted,
  recordStartedSql,
} from "../ledger/ledger";
import type { Logger } from "../logger";
import type { Settings } from "../settings";
import { discoverMigrations, findMigration, type Migration } from "./discover";
import { errorLine, isTransactionControl, loadSqlParser, splitStatements, type Statement } from "./sql";
import { computeStatus, type MigrationStatus } from "./status";

/** `apply --all [--to x]` or `apply <name>`. */
export type ApplyTarget = { kind: "all"; to?: string } | { kind: "one"; name: string };

export interface AppliedMigration {
  name: string;
  checksum: string;
  durationMs: number;
  /** Attempts it took (more than 1 when lock_timeout was hit and retried). */
  attempts: number;
}

export interface ApplyResult {
  applied: AppliedMigration[];
  /** Migrations that were already applied among those asked for. */
  alreadyApplied: string[];
  /** Every migration's state after the run. */
  status: MigrationStatus[];
}

const LOCK_NOT_AVAILABLE = "55P03";

/**
 * Looks inside a run without changing it; the rehearsal uses it to see which
 * locks each migration holds just before it commits.
 */
export interface ApplyObserver {
  beforeCommit?(client: Client, migration: Migration): Promise<void>;
}

/**
 * Applies pending migrations in name order, one transaction each, under the
 * deployer lock. Everything that can be checked without running SQL (folders,
 * names, syntax, drift, order) is checked before the first statement runs.
 */
export async function applyMigrations(
  settings: Settings,
  target: ApplyTarget,
  log: Logger,
  observer: ApplyObserver = {},
): Promise<ApplyResult> {
  const migrations = await discoverMigrations(settings.migrationsDir);
  if (target.kind === "all" && target.to) findMigration(migrations, target.to, "--to");
  if (target.kind === "one") findMigration(migrations, target.name, "Migration");

  return withClient(settings.databaseUrl, (client, db) =>
    withAdvisoryLock(
      client,
      db,
      {
        waitSeconds: settings.lockWaitSeconds,
        onWait: (holder) =>
          log.info(
            `waiting up to ${settings.lockWaitSeconds}s for another deployer${holder ? ` (pid ${holder.pid}, ${holder.applicationName || "no application_name"})` : ""}`,
          ),
      },
      async () => {
        const status = computeStatus(migrations, await readLedger(client));
        assertNoDrift(status, settings.migrationsDir);
        const selected = selectMigrations(status, migrations, target);
        const alreadyApplied = selectedApplied(status, migrations, target);
        if (selected.length === 0) {
          return { applied: [], alreadyApplied, status };
        }
        // Parse everything first: a syntax error in the third file must not
        // leave the first two applied. (The parser is loaded only now: an
        // up-to-date database, every chain command but one, never needs it.)
        await loadSqlParser();
        const plans = selected.map((m) => ({ migration: m, statements: splitStatements(m.sql, m.name) }));
        await ensureLedger(client, db.schema);
        // From PostgreSQL 13 on, statement_timeout applies to each statement of
        // a multi-statement message, so the last statement may share its message
        // with the ledger UPDATE and COMMIT (see runBundled).
        const withLast = (await setTimeouts(client, settings)) >= 130000;
        const applied: AppliedMigration[] = [];
        for (const plan of plans) {
          applied.push(await applyWithRetries(client, db, plan.migration, plan.statements, settings, log, observer, withLast));
        }
        return { applied, alreadyApplied, status: computeStatus(migrations, await readLedger(client)) };
      },
    ),
  );
}

/** Drift and vanished files stop a deploy before anything runs. */
export function assertNoDrift(status: MigrationStatus[], dir: string): void {
  const drifted = status.filter((s) => s.state === "drifted");
  if (drifted.length > 0) {
    const names = drifted.map((s) => s.name).join(", ");
    throw new PgstackError(
      "E_DRIFT",
      `Applied migration ${names} was edited after it ran (its checksum no longer matches the database's record): restore the original migration.sql from version control and put the change in a new migration.`,
      { migrations: drifted.map((s) => s.name) },
    );
  }
  const missing = status.filter((s) => s.state === "missing-from-disk");
  if (missing.length > 0) {
    const names = missing.map((s) => s.name).join(", ");
    throw new PgstackError(
      "E_MISSING_FROM_DISK",
      `Applied migration ${names} is missing from ${dir}: restore its folder from version control (a migration that ran must stay in the history).`,
      { migrations: missing.map((s) => s.name) },
    );
  }
}

/** The migrations a target would run, in order. Pure. */
export function selectMigrations(status: MigrationStatus[], migrations: Migration[], target: ApplyTarget): Migration[] {
  const runnable = (s: MigrationStatus) => s.state === "pending" || s.state === "failed";
  if (target.kind === "one") {
    const wanted = findMigration(migrations, target.name, "Migration");
    const own = status.find((s) => s.name === wanted.name)!;
    if (!runnable(own)) return [];
    const earlier = status.filter((s) => s.name < wanted.name && runnable(s));
    if (earlier.length > 0) {
      throw new PgstackError(
        "E_MIGRATION_ORDER",
        `Migration ${wanted.name} cannot run before ${earlier.map((s) => s.name).join(", ")}, which come${earlier.length > 1 ? "" : "s"} first and ${earlier.length > 1 ? "are" : "is"} not applied: run \`pgstack apply --all --to ${wanted.name}\`.`,
      );
    }
    return [wanted];
  }
  const last = target.to ? findMigration(migrations, target.to, "--to").name : undefined;
  return status
    .filter((s) => runnable(s) && (last === undefined || s.name <= last))
    .map((s) => s.migration!)
    .filter(Boolean);
}

function selectedApplied(status: MigrationStatus[], migrations: Migration[], target: ApplyTarget): string[] {
  if (target.kind === "one") {
    const wanted = findMigration(migrations, target.name, "Migration");
    return status.filter((s) => s.name === wanted.name && s.state === "applied").map((s) => s.name);
  }
  const last = target.to ? findMigration(migrations, target.to, "--to").name : undefined;
  return status.filter((s) => s.state === "applied" && (last === undefined || s.name <= last)).map((s) => s.name);
}

/** Sets the session's timeouts; returns server_version_num. */
async function setTimeouts(client: Client, settings: Settings): Promise<number> {
  await client.query(`SET lock_timeout = ${Math.trunc(settings.lockTimeoutMs)}`);
  await client.query(`SET statement_timeout = ${Math.trunc(settings.statementTimeoutMs)}`);
  // If pgstack is killed mid-statement, make the server notice within a second
  // and roll back (releasing the deployer lock) instead of finishing the work.
  const { rows } = await client.query<{ v: number }>("SELECT current_setting('server_version_num')::int AS v");
  if (rows[0].v >= 140000) await client.query("SET client_connection_check_interval = 1000");
  return rows[0].v;
}

async function applyWithRetries(
  client: Client,
  db: ConnectionTarget,
  migration: Migration,
  statements: Statement[],
  settings: Settings,
  log: Logger,
  observer: ApplyObserver,
  withLast = false,
): Promise<AppliedMigration> {
  for (let attempt = 1; ; attempt++) {
    const started = process.hrtime.bigint();
    const outcome = migration.noTransaction
      ? await runOutsideTransaction(client, migration, statements)
      : statements.some(isTransactionControl)
        ? await runInTransaction(client, migration, statements, observer)
        : await runBundled(client, migration, statements, observer, withLast);
    if (outcome.ok) {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      log.info(`applied ${migration.name} (${durationMs.toFixed(0)} ms${attempt > 1 ? `, attempt ${attempt}` : ""})`);
      return { name: migration.name, checksum: migration.checksum, durationMs, attempts: attempt };
    }
    const { error, statement, stepsApplied } = outcome;
    const line = errorLine(migration.sql, statement, Number(error.position) || undefined);
    // A lock_timeout changed nothing; backing off lets the application's
    // queries through instead of queueing them behind our ALTER.
    if (error.code === LOCK_NOT_AVAILABLE && stepsApplied === 0 && attempt <= settings.retries) {
      const delay = settings.retryDelayMs * 2 ** (attempt - 1);
      log.warn(`${migration.name}: lock_timeout at line ${line} (${error.message}); retry ${attempt} of ${settings.retries} in ${delay} ms`);
      await sleep(delay);
      continue;
    }
    const rolledBack = !migration.noTransaction || stepsApplied === 0;
    await recordFailed(client, {
      id: outcome.ledgerId,
      name: migration.name,
      checksum: migration.checksum,
      logs: formatLogs(error, line),
      rolledBack,
      appliedSteps: stepsApplied,
    });
    const sqlstate = error.code ? ` (SQLSTATE ${error.code})` : "";
    const aftermath = rolledBack
      ? "nothing of it was applied"
      : `its first ${stepsApplied} statement(s) ran outside a transaction and stay applied, so make them safe to re-run (IF NOT EXISTS)`;
    throw new PgstackError(
      "E_MIGRATION_FAILED",
      `Migration ${migration.name} failed at line ${line} of migration.sql: ${error.message}${sqlstate}; ${aftermath}: fix it and run again.`,
      { migration: migration.name, line, sqlstate: error.code, error: error.message, attempts: attempt, database: db.database },
    );
  }
}

type Outcome =
  | { ok: true }
  | { ok: false; error: DatabaseError; statement: Statement; stepsApplied: number; ledgerId?: string };

/** The ledger row is written in the migration's own transaction: both land, or neither. */
async function runInTransaction(client: Client, migration: Migration, statements: Statement[], observer: ApplyObserver): Promise<Outcome> {
  await client.query("BEGIN");
  let current: Statement = statements[0] ?? { sql: "", line: 1, offset: 0 };
  try {
    const id = await recordStarted(client, migration.name, migration.checksum);
    for (const statement of statements) {
      current = statement;
      await client.query(statement.sql);
    }
    await recordFinished(client, id, 1);
    await observer.beforeCommit?.(client, migration);
    await client.query("COMMIT");
    return { ok: true };
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    return { ok: false, error: asDatabaseError(err), statement: current, stepsApplied: 0 };
  }
}

/**
 * The same transaction as `runInTransaction` with fewer round trips: BEGIN and
 * the ledger INSERT go to the server as one message, then each statement as
 * its own message, then the ledger UPDATE and COMMIT as one message: statements
 * + 2 round trips (as many as psql needs for the same file) instead of
 * statements + 4. With `withLast` (PostgreSQL 13+), the last statement heads
 * the UPDATE and COMMIT message: statements + 1. Every message starts with the
 * statement it runs, so pg_stat_activity still shows which one is running.
 * The server runs a message's parts in order and stops at the first error,
 * exactly as separate queries would; an error is reported with its position
 * relative to the part that failed, as it was when each part was a query.
 */
async function runBundled(
  client: Client,
  migration: Migration,
  statements: Statement[],
  observer: ApplyObserver,
  withLast: boolean,
): Promise<Outcome> {
  const id = randomUUID();
  const first: Statement = statements[0] ?? { sql: "", line: 1, offset: 0 };
  let current = first;
  try {
    await simpleQuery(client, ["BEGIN", recordStartedSql(client, id, migration.name, migration.checksum)]);
  } catch (err) {
    // BEGIN itself failing is not the migration's fault: thrown, as runInTransaction does.
    if ((err as PartError).part === 0) throw (err as PartError).failure;
    await client.query("ROLLBACK").catch(() => undefined);
    return { ok: false, error: asDatabaseError((err as PartError).failure), statement: current, stepsApplied: 0 };
  }
  const own = withLast && statements.length > 0 ? statements.length - 1 : statements.length;
  try {
    for (const statement of statements.slice(0, own)) {
      current = statement;
      await client.query(statement.sql);
    }
    const tail = statements.slice(own).map((s) => s.sql);
    if (tail.length > 0) current = statements[own];
    const finished = recordFinishedSql(client, id, 1);
    if (observer.beforeCommit) {
      await simpleQuery(client, [...tail, finished]);
      await observer.beforeCommit(client, migration);
      await client.query("COMMIT");
    } else {
      await simpleQuery(client, [...tail, finished, "COMMIT"]);
    }
    return { ok: true };
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    const cause = err instanceof PartError ? err.failure : err;
    return { ok: false, error: asDatabaseError(cause), statement: current, stepsApplied: 0 };
  }
}

/** A failure in one part of a multi-part message, its position made relative to that part. */
class PartError extends Error {
  constructor(
    readonly part: number,
    readonly failure: unknown,
  ) {
    super(failure instanceof Error ? failure.message : String(failure));
  }
}

/**
 * Sends `parts` as one simple-query message. On an error, rejects with a
 * PartError naming the part that failed (from the error's position in the
 * message, else from how many parts completed) with the position rewritten
 * relative to that part.
 */
async function simpleQuery(client: Client, parts: string[]): Promise<void> {
  const starts: number[] = [];
  let text = "";
  for (const part of parts) {
    // On a line of its own: a statement may end in a -- comment.
    if (text) text += "\n;\n";
    starts.push(text.length);
    text += part;
  }
  const query = new Query(text);
  let completed = 0;
  const internals = query as unknown as QueryInternals;
  // pg's Query has no public per-statement event; counting completions only
  // refines which part an error without a position belongs to, so a pg
  // version without this method just loses that refinement.
  if (typeof internals.handleCommandComplete === "function") {
    const handleCommandComplete = internals.handleCommandComplete.bind(query);
    internals.handleCommandComplete = (message, connection) => {
      completed++;
      handleCommandComplete(message, connection);
    };
  }
  try {
    await new Promise<void>((resolve, reject) => {
      client.query(query as never, ((err: Error | undefined) => (err ? reject(err) : resolve())) as never);
    });
  } catch (err) {
    let part = Math.min(completed, parts.length - 1);
    const e = err as { position?: string };
    const position = Number(e?.position) || undefined;
    if (position !== undefined) {
      part = 0;
      while (part + 1 < starts.length && starts[part + 1] <= position - 1) part++;
      e.position = String(position - starts[part]);
    }
    throw new PartError(part, err);
  }
}

/** The parts of pg's Query hooked into here (not in its type declarations). */
interface QueryInternals {
  handleCommandComplete(message: unknown, connection: unknown): void;
}

/** For CREATE INDEX CONCURRENTLY and the like: statement by statement, autocommit. */
async function runOutsideTransaction(client: Client, migration: Migration, statements: Statement[]): Promise<Outcome> {
  const id = await recordStarted(client, migration.name, migration.checksum);
  let steps = 0;
  for (const statement of statements) {
    try {
      await client.query(statement.sql);
      steps++;
    } catch (err) {
      return { ok: false, error: asDatabaseError(err), statement, stepsApplied: steps, ledgerId: id };
    }
  }
  await recordFinished(client, id, steps);
  return { ok: true };
}

function asDatabaseError(err: unknown): DatabaseError {
  if (err && typeof err === "object" && "message" in err) return err as DatabaseError;
  return { message: String(err) } as DatabaseError;
}

/** The `logs` column, in the shape Prisma writes it. */
function formatLogs(error: DatabaseError, line: number): string {
  const parts = [`Database error code: ${error.code ?? "unknown"}`, "", "Database error:", `ERROR: ${error.message}`];
  if (error.detail) parts.push(`DETAIL: ${error.detail}`);
  if (error.hint) parts.push(`HINT: ${error.hint}`);
  parts.push("", `Line in migration.sql: ${line}`);
  return parts.join("\n");
}

/** Read-only: every migration's state, without taking the lock or creating the ledger. */
export async function migrationStatus(settings: Settings): Promise<MigrationStatus[]> {
  const migrations = await discoverMigrations(settings.migrationsDir);
  return withClient(settings.databaseUrl, async (client) => computeStatus(migrations, await readLedger(client)));
}
