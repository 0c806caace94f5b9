import type { Client, DatabaseError } from "pg";
import { withAdvisoryLock, withClient, sleep } from "../db/client";
import type { ConnectionTarget } from "../db/url";
import { PgstackError } from "../errors";
import { ensureLedger, readLedger, recordFailed, recordFinished, recordStarted } from "../ledger/ledger";
import type { Logger } from "../logger";
import type { Settings } from "../settings";
import { discoverMigrations, findMigration, type Migration } from "./discover";
import { errorLine, loadSqlParser, splitStatements, type Statement } from "./sql";
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
  await loadSqlParser();

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
        // leave the first two applied.
        const plans = selected.map((m) => ({ migration: m, statements: splitStatements(m.sql, m.name) }));
        await ensureLedger(client, db.schema);
        await setTimeouts(client, settings);
        const applied: AppliedMigration[] = [];
        for (const plan of plans) {
          applied.push(await applyWithRetries(client, db, plan.migration, plan.statements, settings, log, observer));
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

async function setTimeouts(client: Client, settings: Settings): Promise<void> {
  await client.query(`SET lock_timeout = ${Math.trunc(settings.lockTimeoutMs)}`);
  await client.query(`SET statement_timeout = ${Math.trunc(settings.statementTimeoutMs)}`);
  // If pgstack is killed mid-statement, make the server notice within a second
  // and roll back (releasing the deployer lock) instead of finishing the work.
  const { rows } = await client.query<{ v: number }>("SELECT current_setting('server_version_num')::int AS v");
  if (rows[0].v >= 140000) await client.query("SET client_connection_check_interval = 1000");
}

async function applyWithRetries(
  client: Client,
  db: ConnectionTarget,
  migration: Migration,
  statements: Statement[],
  settings: Settings,
  log: Logger,
  observer: ApplyObserver,
): Promise<AppliedMigration> {
  for (let attempt = 1; ; attempt++) {
    const started = process.hrtime.bigint();
    const outcome = migration.noTransaction
      ? await runOutsideTransaction(client, migration, statements)
      : await runInTransaction(client, migration, statements, observer);
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
