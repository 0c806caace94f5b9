import { randomUUID } from "node:crypto";
import { Query, type Client, type DatabaseError } from "pg";
import { sleep, transactionStatus, withClient } from "../db/client";
import { MIGRATION_LOCK_KEY, withAdvisoryLock, type DeployerSession, type LockOptions } from "../db/deployers";
import type { ConnectionTarget } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import { backfillDirectiveOf, backfillPlanOf, runBackfill, type BackfillPlan } from "./backfill";
import { quoteIdent } from "../db/url";
import {
  ensureLedger,
  ledgerTable,
  readLedger,
  readLedgerIfExists,
  recordFailed,
  recordFinished,
  recordFinishedSql,
  recordProgress,
  recordStarted,
  recordStartedSql,
  rememberLedgerReads,
  supersedeFailedSql,
} from "../ledger/ledger";
import type { Logger } from "../logger";
import type { Settings } from "../settings";
import { compareMigrationNames, discoverMigrations, findMigration, type Migration } from "./discover";
import { executionModeOf, isAtomic, type ExecutionMode } from "./mode";
import { pendingFromLedger, upToPin } from "./pending";
import { errorLine, loadSqlParser, splitStatements, type Statement } from "./sql";
import { computeStatus, type MigrationStatus } from "./status";

/** `apply --all [--to x]` or `apply <name>`. */
export type ApplyTarget = { kind: "all"; to?: string } | { kind: "one"; name: string };

export interface AppliedMigration {
  name: string;
  checksum: string;
  mode: ExecutionMode;
  /** For a resumed migration: the statements a previous run had committed, skipped this time. */
  resumedAfter?: number;
  durationMs: number;
  /** Attempts it took (more than 1 when lock_timeout was hit and retried). */
  attempts: number;
}

export interface ApplyResult {
  applied: AppliedMigration[];
  /** Migrations that were already applied among those asked for. */
  alreadyApplied: string[];
  /** Every migration's state after the run (read only when asked for: `reportStatus`). */
  status?: MigrationStatus[];
}

const LOCK_NOT_AVAILABLE = "55P03";

/**
 * Looks inside a run without changing it; the rehearsal uses it to see which
 * locks each migration holds just before it commits.
 */
export interface ApplyObserver {
  beforeCommit?(client: Client, migration: Migration): Promise<void>;
  /** Read the ledger again after the run for `status` (apply --json); a migration step does without. */
  reportStatus?: boolean;
  /**
   * Log "applied <name> (<ms>, <mode>)" for each migration (default). A
   * migration step of `pulumi up` does not: Pulumi shows the step's name and
   * duration, and every line a step prints is kept in the stack's state.
   */
  logApplied?: boolean;
  /**
   * Run on this deployer's connection, which holds the migration lock from
   * one command to the next (a `pulumi up`'s deploy session), instead of a
   * connection and a lock of this run's own.
   */
  deployer?: DeployerSession;
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
  const migrations = await discoverMigrations(settings.migrationsDir, (note) => log.warn(note));
  if (target.kind === "all" && target.to) findMigration(migrations, target.to, "--to");
  if (target.kind === "one") findMigration(migrations, target.name, "Migration");

  const lock: LockOptions = {
    waitSeconds: settings.lockWaitSeconds,
    onWait: (holder) =>
      log.info(`waiting up to ${settings.lockWaitSeconds}s for another deployer${holder ? ` (pid ${holder.pid}, ${holder.applicationName || "no application_name"})` : ""}`),
  };
  const underLock = (run: (client: Client, db: ConnectionTarget) => Promise<ApplyResult>) =>
    observer.deployer
      ? observer.deployer.run(settings.databaseUrl, lock, run)
      : withClient(settings.databaseUrl, (client, db) => withAdvisoryLock(client, db, lock, () => run(client, db)));
  return underLock(async (client, db) => {
    // A deployer reads the ledger at each of its steps: only what changed since its last read.
    if (observer.deployer) rememberLedgerReads(client);
    const ledger = await readLedgerIfExists(client, db.schema);
    const status = computeStatus(migrations, ledger ?? []);
    assertNoDrift(status, settings.migrationsDir);
    const selected = selectMigrations(status, migrations, target);
    const alreadyApplied = selectedApplied(status, migrations, target);
    if (selected.length === 0) {
      return { applied: [], alreadyApplied, ...(observer.reportStatus ? { status } : {}) };
    }
    // Parse everything first: a syntax error in the third file must not
    // leave the first two applied. (The parser is loaded only now: an
    // up-to-date database, every chain command but one, never needs it.)
    await loadSqlParser();
    const plans: RunPlan[] = selected.map((m) => {
      const statements = splitStatements(m.sql, m.name);
      const resume = status.find((s) => s.name === m.name)?.resume;
      const mode = executionModeOf(m, statements);
      const backfill = mode === "batches" ? backfillPlanOf(m, backfillDirectiveOf(m.sql, m.name)!) : undefined;
      return { migration: m, statements, mode, backfill, resume: resume && { ledgerId: resume.ledgerId, steps: resume.steps } };
    });
    if (ledger === undefined) await ensureLedger(client, db.schema);
    // From PostgreSQL 13 on, statement_timeout applies to each statement of
    // a multi-statement message, so the last statement may share its message
    // with the ledger UPDATE and COMMIT (see runBundled).
    const version = await serverVersion(client);
    const session = sessionSettingsSql(db.schema, settings, version);
    await client.query(session);
    const withLast = version >= 130000;
    const applied: AppliedMigration[] = [];
    for (const [i, plan] of plans.entries()) {
      // Every migration starts from a clean session: a SET, PREPARE, temporary
      // table or advisory lock of the previous file must not leak into it.
      if (i > 0) await client.query(session);
      applied.push(await applyWithRetries(client, db, plan, settings, log, observer, withLast, session));
    }
    return { applied, alreadyApplied, ...(observer.reportStatus ? { status: computeStatus(migrations, await readLedger(client, db.schema)) } : {}) };
  });
}

/** One migration about to run: its statements, its mode and, for a partly applied one, where to pick up. */
interface RunPlan {
  migration: Migration;
  statements: Statement[];
  mode: ExecutionMode;
  resume?: { ledgerId: string; steps: number };
  /** A backfill migration: its UPDATE cut for running in batches. */
  backfill?: BackfillPlan;
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
  const editedPartial = status.filter((s) => s.resume && s.resume.steps > 0 && !s.resume.sameFile);
  if (editedPartial.length > 0) {
    const s = editedPartial[0];
    throw new PgstackError(
      "E_FAILED_NEEDS_ATTENTION",
      `Migration ${s.name} failed after ${s.resume!.steps} of its statements were committed, and its migration.sql changed since, so pgstack cannot tell which statements of the new file already ran: restore the file to resume, or finish it by hand and run \`pgstack resolve --applied ${s.name}\` (or undo it and run \`pgstack resolve --rolled-back ${s.name}\`).`,
      { migrations: editedPartial.map((m) => m.name) },
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
    const earlier = status.filter((s) => compareMigrationNames(s.name, wanted.name) < 0 && runnable(s));
    if (earlier.length > 0) {
      throw new PgstackError(
        "E_MIGRATION_ORDER",
        `Migration ${wanted.name} cannot run before ${earlier.map((s) => s.name).join(", ")}, which come${earlier.length > 1 ? "" : "s"} first and ${earlier.length > 1 ? "are" : "is"} not applied: run \`pgstack apply --all --to ${wanted.name}\`.`,
      );
    }
    return [wanted];
  }
  return pendingFromLedger(status, target.to ? findMigration(migrations, target.to, "--to").name : undefined);
}

function selectedApplied(status: MigrationStatus[], migrations: Migration[], target: ApplyTarget): string[] {
  if (target.kind === "one") {
    const wanted = findMigration(migrations, target.name, "Migration");
    return status.filter((s) => s.name === wanted.name && s.state === "applied").map((s) => s.name);
  }
  const last = target.to ? findMigration(migrations, target.to, "--to").name : undefined;
  return upToPin(status, last)
    .filter((s) => s.state === "applied")
    .map((s) => s.name);
}

/** Per connection: a deploy session's deployer connection asks once, not at every step. */
const versions = new WeakMap<Client, number>();

async function serverVersion(client: Client): Promise<number> {
  const known = versions.get(client);
  if (known !== undefined) return known;
  const { rows } = await client.query<{ v: number }>("SELECT current_setting('server_version_num')::int AS v");
  versions.set(client, rows[0].v);
  return rows[0].v;
}

/**
 * Releases the session advisory locks a migration took (shared or not, however
 * often), except the deployer lock this connection holds for the whole run or
 * deploy session: pg_advisory_unlock_all (what DISCARD ALL runs) would let
 * another deployer in between two migrations. A migration that took the
 * deployer key again keeps that extra hold until the session ends.
 */
const UNLOCK_OTHER_ADVISORY_LOCKS = `DO $pgstack$ DECLARE l record; BEGIN
  FOR l IN SELECT classid::bigint AS hi, objid::bigint AS lo, objsubid, mode FROM pg_catalog.pg_locks
    WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted
      AND NOT (classid = 0 AND objid = ${MIGRATION_LOCK_KEY} AND objsubid = 1)
  LOOP
    IF l.objsubid = 1 AND l.mode = 'ExclusiveLock' THEN
      WHILE pg_catalog.pg_advisory_unlock((l.hi << 32) | l.lo) LOOP END LOOP;
    ELSIF l.objsubid = 1 THEN
      WHILE pg_catalog.pg_advisory_unlock_shared((l.hi << 32) | l.lo) LOOP END LOOP;
    ELSIF l.mode = 'ExclusiveLock' THEN
      WHILE pg_catalog.pg_advisory_unlock(l.hi::bit(32)::int4, l.lo::bit(32)::int4) LOOP END LOOP;
    ELSE
      WHILE pg_catalog.pg_advisory_unlock_shared(l.hi::bit(32)::int4, l.lo::bit(32)::int4) LOOP END LOOP;
    END IF;
  END LOOP;
END $pgstack$`;

/**
 * The session every migration starts from, as one message: what DISCARD ALL
 * clears (cursors, the session's role, settings, prepared statements,
 * LISTENs, cached plans, temporary tables, sequence state, advisory locks)
 * but the deployer lock, then the Prisma schema and pgstack's timeouts.
 * If pgstack is killed mid-statement, client_connection_check_interval
 * (PostgreSQL 14+) makes the server notice within a second and roll back,
 * releasing the deployer lock, instead of finishing the work.
 */
export function sessionSettingsSql(schema: string, settings: Settings, version: number): string {
  return [
    "CLOSE ALL",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "DEALLOCATE ALL",
    "UNLISTEN *",
    UNLOCK_OTHER_ADVISORY_LOCKS,
    "DISCARD PLANS",
    "DISCARD TEMP",
    "DISCARD SEQUENCES",
    `SET search_path TO ${quoteIdent(schema)}`,
    `SET lock_timeout = ${Math.trunc(settings.lockTimeoutMs)}`,
    `SET statement_timeout = ${Math.trunc(settings.statementTimeoutMs)}`,
    ...(version >= 140000 ? ["SET client_connection_check_interval = 1000"] : []),
  ].join("; ");
}

async function applyWithRetries(
  client: Client,
  db: ConnectionTarget,
  plan: RunPlan,
  settings: Settings,
  log: Logger,
  observer: ApplyObserver,
  withLast: boolean,
  session: string,
): Promise<AppliedMigration> {
  const { migration, statements, mode } = plan;
  if (plan.backfill) return applyBackfill(client, db, plan, plan.backfill, settings, log, observer);
  let resume = plan.resume;
  if (resume && resume.steps > 0 && !isAtomic(mode)) log.info(`${migration.name}: resuming after the ${resume.steps} statement(s) a previous run committed`);
  for (let attempt = 1; ; attempt++) {
    const started = process.hrtime.bigint();
    const outcome = isAtomic(mode)
      ? await runBundled(client, db.schema, migration, statements, observer, withLast, Boolean(plan.resume))
      : await runStatementByStatement(client, db.schema, migration, statements, resume, log);
    if (outcome.ok) {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      if (observer.logApplied !== false || attempt > 1) {
        log.info(`applied ${migration.name} (${durationMs.toFixed(0)} ms, ${mode}${attempt > 1 ? `, attempt ${attempt}` : ""})`);
      }
      return {
        name: migration.name,
        checksum: migration.checksum,
        durationMs,
        attempts: attempt,
        mode,
        ...(plan.resume?.steps && !isAtomic(mode) ? { resumedAfter: plan.resume.steps } : {}),
      };
    }
    const { error, statement, stepsApplied } = outcome;
    const line = errorLine(migration.sql, statement, Number(error.position) || undefined);
    const committedBefore = resume?.steps ?? 0;
    // A lock_timeout changed nothing the run has not recorded: backing off lets
    // the application's queries through instead of queueing them behind our ALTER.
    if (error.code === LOCK_NOT_AVAILABLE && attempt <= settings.retries && (isAtomic(mode) || outcome.ledgerId)) {
      const delay = settings.retryDelayMs * 2 ** (attempt - 1);
      log.warn(`${migration.name}: lock_timeout at line ${line} (${error.message}); retry ${attempt} of ${settings.retries} in ${delay} ms`);
      await sleep(delay);
      if (!isAtomic(mode)) resume = { ledgerId: outcome.ledgerId!, steps: stepsApplied };
      await client.query(session);
      continue;
    }
    // Nothing committed (a rolled-back transaction, or a non-atomic run that
    // failed before its first commit): the attempt is rolled back and a retry starts afresh.
    const rolledBack = isAtomic(mode) || stepsApplied === 0;
    await recordFailed(client, db.schema, {
      id: outcome.ledgerId,
      name: migration.name,
      checksum: migration.checksum,
      logs: formatLogs(error, line),
      rolledBack,
      appliedSteps: stepsApplied,
    });
    const sqlstate = error.code ? ` (SQLSTATE ${error.code})` : "";
    let aftermath: string;
    if (rolledBack) {
      aftermath = "nothing of it was applied: fix it and run again";
    } else {
      const last = statements[stepsApplied - 1];
      const newly = stepsApplied - committedBefore;
      aftermath =
        `it runs ${mode === "as-written" ? "as written (its own transactions)" : "statement by statement"}, so its first ${stepsApplied} of ${statements.length} statement(s) (through line ${last.line}) ` +
        `are committed${committedBefore > 0 ? ` (${newly} by this run)` : ""} and recorded (applied_steps_count = ${stepsApplied}); the next run resumes at line ${statements[stepsApplied].line}` +
        (outcome.invalidIndex ? `, after dropping the index ${outcome.invalidIndex} this failed build left INVALID` : "") +
        `: remove the cause and run again, or finish it by hand and run \`pgstack resolve --applied ${migration.name}\``;
    }
    throw new PgstackError(
      "E_MIGRATION_FAILED",
      `Migration ${migration.name} failed at line ${line} of migration.sql: ${error.message}${sqlstate}; ${aftermath}.`,
      {
        migration: migration.name,
        line,
        sqlstate: error.code,
        error: error.message,
        attempts: attempt,
        database: db.database,
        mode,
        appliedSteps: stepsApplied,
        statements: statements.length,
      },
    );
  }
}

/** A backfill migration: batches (each retried on lock_timeout by itself), then its ledger row. */
async function applyBackfill(
  client: Client,
  db: ConnectionTarget,
  plan: RunPlan,
  backfill: BackfillPlan,
  settings: Settings,
  log: Logger,
  observer: ApplyObserver,
): Promise<AppliedMigration> {
  const { migration } = plan;
  const started = process.hrtime.bigint();
  try {
    const result = await runBackfill(client, db.schema, migration, backfill, settings, log);
    const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
    if (observer.logApplied !== false) {
      log.info(`applied ${migration.name} (${durationMs.toFixed(0)} ms, batches: ${result.rows} row(s) in ${result.batches}, longest batch ${result.longestBatchMs.toFixed(0)} ms)`);
    }
    return { name: migration.name, checksum: migration.checksum, durationMs, attempts: 1, mode: plan.mode };
  } catch (err) {
    // Each batch is one autocommitted statement: nothing is left open. Recorded as a failed attempt, not rolled back: the committed batches stay (consistent with the
    // trigger that keeps both columns in step); the next run continues from the first row still to copy.
    await recordFailed(client, db.schema, {
      name: migration.name,
      checksum: migration.checksum,
      logs: `Backfill stopped: ${messageOf(err)}`,
      rolledBack: false,
      appliedSteps: 0,
    }).catch(() => undefined);
    throw err;
  }
}

type Outcome =
  | { ok: true }
  | { ok: false; error: DatabaseError; statement: Statement; stepsApplied: number; ledgerId?: string; invalidIndex?: string };

/**
 * The migration and its ledger row in one transaction, both land or neither,
 * in few round trips: BEGIN and
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
  schema: string,
  migration: Migration,
  statements: Statement[],
  observer: ApplyObserver,
  withLast: boolean,
  /** An earlier attempt is open (failed under Prisma): mark it rolled back when this one commits. */
  supersede = false,
): Promise<Outcome> {
  const id = randomUUID();
  const first: Statement = statements[0] ?? { sql: "", line: 1, offset: 0, kind: "plain" };
  let current = first;
  try {
    await simpleQuery(client, ["BEGIN", recordStartedSql(client, schema, id, migration.name, migration.checksum)]);
  } catch (err) {
    // BEGIN itself failing is not the migration's fault: thrown.
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
    const finished = [recordFinishedSql(client, schema, id, 1), ...(supersede ? [supersedeFailedSql(client, schema, migration.name, id)] : [])].join(";\n");
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

/**
 * The non-atomic modes: each statement is sent on its own, with nothing
 * wrapped around it, so the file's own BEGIN/COMMIT (as-written) or
 * autocommit (statements) decide what is permanent. Whenever the session is
 * back outside a transaction, everything so far is committed and the ledger's
 * applied_steps_count says so; a plain statement run outside a transaction
 * shares one message (one implicit transaction) with that ledger UPDATE, so
 * the count cannot lag behind the database even if pgstack is killed. A
 * statement that fails inside the file's own transaction rolls that
 * transaction back: the count stays at the last commit, where the next run
 * resumes.
 */
async function runStatementByStatement(
  client: Client,
  schema: string,
  migration: Migration,
  statements: Statement[],
  resume: { ledgerId: string; steps: number } | undefined,
  log: Logger,
): Promise<Outcome> {
  const txStatus = transactionStatus(client);
  const id = resume?.ledgerId ?? (await recordStarted(client, schema, migration.name, migration.checksum));
  let committed = resume?.steps ?? 0;
  const progressSql = (steps: number) => `UPDATE ${ledgerTable(schema)} SET applied_steps_count = ${steps} WHERE id = ${client.escapeLiteral(id)}`;
  for (let i = committed; i < statements.length; i++) {
    const statement = statements[i];
    let invalidIndex: string | undefined;
    try {
      if (statement.concurrentIndex) {
        await dropInvalidIndex(client, schema, statement.concurrentIndex, migration, log);
        // A run killed after this build finished but before its progress was
        // recorded left the index valid: the build is done, not to be repeated.
        if (resume && i === resume.steps && (await validIndexExists(client, schema, statement.concurrentIndex))) {
          log.info(`${migration.name}: index ${statement.concurrentIndex.name} at line ${statement.line} was built by the interrupted run; not building it again`);
          committed = i + 1;
          await recordProgress(client, schema, id, committed);
          continue;
        }
      }
      if (statement.kind === "plain" && txStatus() === "I") {
        await simpleQuery(client, [statement.sql, progressSql(i + 1)]);
        committed = i + 1;
        failPoint("statement-committed", i + 1);
        continue;
      }
      await client.query(statement.sql);
      failPoint("statement-committed", i + 1);
    } catch (err) {
      const failure = err instanceof PartError ? err.failure : err;
      if (txStatus() !== "I") await client.query("ROLLBACK").catch(() => undefined);
      if (statement.concurrentIndex) invalidIndex = (await invalidIndexName(client, schema, statement.concurrentIndex)) ?? undefined;
      return { ok: false, error: asDatabaseError(failure), statement, stepsApplied: committed, ledgerId: id, invalidIndex };
    }
    if (txStatus() === "I") {
      committed = i + 1;
      await recordProgress(client, schema, id, committed);
    }
  }
  if (txStatus() !== "I") {
    // The file ends inside its own transaction: PostgreSQL would roll it back
    // when the session ends, so pgstack rolls it back now and says so.
    await client.query("ROLLBACK").catch(() => undefined);
    const last = statements[statements.length - 1];
    return {
      ok: false,
      error: { message: "migration.sql ends inside a transaction it opened (BEGIN without COMMIT), so its last transaction was rolled back" } as DatabaseError,
      statement: last,
      stepsApplied: committed,
      ledgerId: id,
    };
  }
  await recordFinished(client, schema, id, statements.length);
  return { ok: true };
}

/**
 * Test hook: PGSTACK_FAILPOINT=<point>:<n> kills the process (SIGKILL, no
 * cleanup) when it reaches <point> for the n-th time in a migration, so tests
 * can prove what a crash there leaves behind.
 */
function failPoint(point: string, n: number): void {
  if (process.env.PGSTACK_FAILPOINT === `${point}:${n}`) process.kill(process.pid, "SIGKILL");
}

async function validIndexExists(client: Client, schema: string, index: NonNullable<Statement["concurrentIndex"]>): Promise<boolean> {
  const { rows } = await client.query(
    `SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = $1 AND n.nspname = $2 AND i.indisvalid`,
    [index.name, index.schema ?? schema],
  );
  return rows.length > 0;
}

/** Name of the INVALID index a CONCURRENTLY build of `index` left behind, if any. */
async function invalidIndexName(client: Client, schema: string, index: NonNullable<Statement["concurrentIndex"]>): Promise<string | null> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = $1 AND n.nspname = $2 AND NOT i.indisvalid`,
    [index.name, index.schema ?? schema],
  );
  return rows[0]?.name ?? null;
}

/**
 * An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index behind: the
 * rebuild would fail on its name, or, with IF NOT EXISTS, skip and leave an
 * index that is never used. pgstack drops it (concurrently) before the build runs again.
 */
async function dropInvalidIndex(
  client: Client,
  schema: string,
  index: NonNullable<Statement["concurrentIndex"]>,
  migration: Migration,
  log: Logger,
): Promise<void> {
  const name = await invalidIndexName(client, schema, index);
  if (!name) return;
  log.warn(`${migration.name}: index ${name} is INVALID (an earlier CONCURRENTLY build was interrupted); dropping it to build it again`);
  await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
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
export async function migrationStatus(settings: Settings, onNote?: (note: string) => void): Promise<MigrationStatus[]> {
  const migrations = await discoverMigrations(settings.migrationsDir, onNote);
  return withClient(settings.databaseUrl, async (client, db) => computeStatus(migrations, await readLedger(client, db.schema)));
}
