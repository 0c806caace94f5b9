import { randomUUID } from "node:crypto";
import type { Client } from "pg";
import { sleep } from "../db/client";
import { quoteIdent } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import { failpoint } from "../failpoint";
import { ledgerTable } from "../ledger/ledger";
import type { Logger } from "../logger";
import type { Settings } from "../settings";
import type { Migration } from "./discover";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const pgQuery = require("libpg-query") as typeof import("libpg-query");

/**
 * A backfill migration (what `pgstack split` writes as `<ts>_<name>_2_backfill`)
 * is one plain `UPDATE ... WHERE <rows still to copy>`, which is what
 * `prisma migrate deploy` runs, in one transaction. Headed by
 *
 *   -- pgstack:backfill key="id" batch=10000
 *
 * pgstack runs the same UPDATE in batches of `batch` rows by ranges of the
 * unique, non-null `key`, each batch its own short transaction under the
 * session's lock_timeout (retried with back-off, as a migration is), and
 * records the migration in the ledger (with its checksum) only when the last
 * batch is done. A run killed midway leaves its committed batches; the next
 * run starts at the first row the WHERE clause still selects.
 */
export const BACKFILL_DIRECTIVE = "-- pgstack:backfill";

export interface BackfillDirective {
  key: string;
  batch: number;
}

const DIRECTIVE_LINE = /^--\s*pgstack:backfill\b(.*)$/m;

/** Whether the file has a backfill directive line (well-formed or not: the runner names a malformed one). */
export function hasBackfillDirective(sql: string): boolean {
  return DIRECTIVE_LINE.test(sql);
}

/** The directive of a migration file, if it has one (a malformed one is an error: the user meant one). */
export function backfillDirectiveOf(sql: string, migrationName = "this migration"): BackfillDirective | undefined {
  const match = DIRECTIVE_LINE.exec(sql);
  if (!match) return undefined;
  const args = match[1];
  const key = /\bkey\s*=\s*"((?:[^"]|"")+)"/.exec(args)?.[1]?.replace(/""/g, '"');
  const batchText = /\bbatch\s*=\s*(\d+)\b/.exec(args)?.[1];
  const batch = batchText === undefined ? 10_000 : Number(batchText);
  if (!key || !(batch >= 1)) {
    throw new PgstackError(
      "E_BACKFILL",
      `Migration ${migrationName} has a malformed backfill directive: write it as \`${BACKFILL_DIRECTIVE} key="<unique not-null column>" batch=<rows>\`.`,
      { migration: migrationName },
    );
  }
  return { key, batch };
}

/** What a batch runs: the file's UPDATE cut in two around its top-level WHERE. */
export interface BackfillPlan {
  directive: BackfillDirective;
  /** Schema-qualified (when the UPDATE qualifies it) and quoted table name. */
  table: string;
  /** `UPDATE <table> SET ...`, everything before the WHERE. */
  head: string;
  /** The WHERE clause's condition: the rows still to copy. */
  condition: string;
}

/**
 * Checks that the file is exactly one `UPDATE <table> SET ... WHERE ...`
 * (no FROM, WITH or RETURNING, which batching by key range would change) and
 * cuts it. Call loadSqlParser() first.
 */
export function backfillPlanOf(migration: Pick<Migration, "name" | "sql">, directive: BackfillDirective): BackfillPlan {
  const refuse = (what: string) =>
    new PgstackError(
      "E_BACKFILL",
      `Migration ${migration.name} has a backfill directive but ${what}: a backfill migration holds a single \`UPDATE <table> SET ... WHERE <rows still to copy>\` (pgstack runs it in batches).`,
      { migration: migration.name },
    );
  const parsed = pgQuery.parseSync(migration.sql);
  const stmts = parsed.stmts ?? [];
  if (stmts.length !== 1) throw refuse(`${stmts.length} statements`);
  const update = (stmts[0].stmt as Record<string, any>).UpdateStmt;
  if (!update) throw refuse("its statement is not an UPDATE");
  if (!update.whereClause) throw refuse("its UPDATE has no WHERE clause");
  if (update.fromClause || update.withClause || update.returningList) throw refuse("its UPDATE has a FROM, WITH or RETURNING clause");
  if (update.relation?.alias) throw refuse("its UPDATE gives the table an alias");
  const bytes = Buffer.from(migration.sql, "utf8");
  const start = stmts[0].stmt_location ?? 0;
  const end = stmts[0].stmt_len ? start + stmts[0].stmt_len : bytes.length;
  const text = bytes.subarray(start, end).toString("utf8");
  const textBytes = Buffer.from(text, "utf8");
  // The WHERE of the UPDATE itself: the first one outside parentheses (a subquery's is inside).
  let depth = 0;
  let where: { start: number; end: number } | undefined;
  for (const token of pgQuery.scanSync(text).tokens) {
    if (token.text === "(") depth++;
    else if (token.text === ")") depth--;
    else if (depth === 0 && token.text.toUpperCase() === "WHERE") {
      where = { start: token.start, end: token.end };
      break;
    }
  }
  if (!where) throw refuse("its WHERE clause could not be found");
  const table = (update.relation.schemaname ? quoteIdent(update.relation.schemaname) + "." : "") + quoteIdent(update.relation.relname);
  return {
    directive,
    table,
    head: textBytes.subarray(0, where.start).toString("utf8").trim(),
    condition: textBytes.subarray(where.end).toString("utf8").trim().replace(/;\s*$/, ""),
  };
}

export interface BackfillResult {
  /** Rows the run copied (updated). */
  rows: number;
  batches: number;
  /** The longest batch transaction: the longest any row lock of the backfill was held. */
  longestBatchMs: number;
}

const RETRYABLE = new Set(["55P03", "40P01", "40001"]);

/**
 * Runs a backfill migration in batches on `client` (which holds the deployer
 * lock and has the migration session's settings), then records it applied.
 */
export async function runBackfill(
  client: Client,
  schema: string,
  migration: Migration,
  plan: BackfillPlan,
  settings: Pick<Settings, "retries" | "retryDelayMs">,
  log: Logger,
): Promise<BackfillResult> {
  const key = quoteIdent(plan.directive.key);
  const where = `(${plan.condition})`;
  const withRetries = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run();
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (!code || !RETRYABLE.has(code) || attempt > settings.retries) throw err;
        const delay = settings.retryDelayMs * 2 ** (attempt - 1);
        log.warn(`${migration.name}: ${what}: ${messageOf(err)}; retry ${attempt} of ${settings.retries} in ${delay} ms`);
        await sleep(delay);
      }
    }
  };
  // Rows still to copy, and the first of them: where this run starts (after a kill, past what was committed).
  // The first by ORDER BY ... LIMIT 1, not min(): a key of any btree-ordered type (uuid, a text cuid) has no min().
  const todo = await withRetries("counting the rows to copy", async () => ({
    total: Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${plan.table} WHERE ${where}`)).rows[0].n),
    first: (await client.query<{ k: string }>(`SELECT ${key}::text AS k FROM ${plan.table} WHERE ${where} ORDER BY ${key} LIMIT 1`)).rows[0]?.k ?? null,
  })).catch(async (err) => {
    throw failed(migration, plan, 0, undefined, err, await offendingRow(client, plan, null, null, err, "count"));
  });
  const total = todo.total;
  let lo = todo.first;
  log.info(`${migration.name}: backfill of ${plan.table}: ${total} row(s) to copy in batches of ${plan.directive.batch}${lo !== null ? `, the first at ${plan.directive.key} = ${lo}` : ""}`);
  const started = Date.now();
  let lastReport = started;
  let rows = 0;
  let batches = 0;
  let longestBatchMs = 0;
  const nextStart = `SELECT ${key}::text AS k FROM ${plan.table} WHERE ${key} >= $1 ORDER BY ${key} OFFSET ${plan.directive.batch} LIMIT 1`;
  const bounded = `${plan.head} WHERE ${where} AND ${key} >= $1 AND ${key} < $2`;
  const last = `${plan.head} WHERE ${where} AND ${key} >= $1`;
  while (lo !== null) {
    const from = lo;
    // The batch is [lo, hi): the next `batch` keys from lo; its UPDATE is one short transaction.
    const hi = (await withRetries("finding the next batch", () => client.query<{ k: string }>(nextStart, [from])).catch((err) => {
      throw failed(migration, plan, batches, from, err, undefined, true);
    })).rows[0]?.k ?? null;
    const t0 = process.hrtime.bigint();
    const result = await withRetries(`batch ${batches + 1} (${plan.directive.key} from ${from})`, () =>
      hi === null ? client.query(last, [from]) : client.query(bounded, [from, hi]),
    ).catch(async (err) => {
      throw failed(migration, plan, batches, from, err, await offendingRow(client, plan, from, hi, err, "update"));
    });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    longestBatchMs = Math.max(longestBatchMs, ms);
    rows += result.rowCount ?? 0;
    batches++;
    failpoint(`backfill-batch-${batches}`);
    lo = hi;
    const now = Date.now();
    if (now - lastReport >= 2000 || lo === null) {
      lastReport = now;
      const rate = rows / Math.max((now - started) / 1000, 0.001);
      log.info(`${migration.name}: ${rows} of ${total} row(s) copied (${total ? Math.min(100, Math.round((rows / total) * 100)) : 100}%, ${Math.round(rate)} rows/s, batch ${batches})`);
    }
  }
  // Applied only now, in one statement (with the file's checksum, as Prisma records it); an
  // attempt left open by a failed run is closed (Prisma counts it as failed otherwise).
  await client.query(
    `WITH closed AS (UPDATE ${ledgerTable(schema)} SET rolled_back_at = clock_timestamp()
       WHERE migration_name = $2 AND finished_at IS NULL AND rolled_back_at IS NULL)
     INSERT INTO ${ledgerTable(schema)} (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
     VALUES ($3, $1, $2, $4, clock_timestamp(), 1)`,
    [migration.checksum, migration.name, randomUUID(), new Date(started)],
  );
  return { rows, batches, longestBatchMs };
}

/**
 * The key of the row a data error comes from (a value the conversion refuses: too long, out of range, not a
 * number), found by halving the range [from, to) that failed: each half is tried again in a transaction rolled
 * back (the batch's UPDATE, which locks no more rows than the batch did) or, for the count, a plain SELECT.
 * Undefined when the error is not about data or the rows changed meanwhile (then the message names the batch).
 */
async function offendingRow(client: Client, plan: BackfillPlan, from: string | null, to: string | null, err: unknown, stage: "count" | "update"): Promise<string | undefined> {
  const code = (err as { code?: string }).code ?? "";
  if (!/^2[23]/.test(code)) return undefined;
  const key = quoteIdent(plan.directive.key);
  const range = (lo: string | null, hi: string | null, params: string[]) => {
    const parts: string[] = [];
    if (lo !== null) parts.push(`${key} >= $${params.push(lo)}`);
    if (hi !== null) parts.push(`${key} < $${params.push(hi)}`);
    return parts.length ? parts.join(" AND ") : "true";
  };
  const fails = async (lo: string | null, hi: string | null): Promise<boolean> => {
    const params: string[] = [];
    const sql =
      stage === "update"
        ? `${plan.head} WHERE (${plan.condition}) AND ${range(lo, hi, params)}`
        : `SELECT count(*) FROM ${plan.table} WHERE ${range(lo, hi, params)} AND (${plan.condition})`;
    try {
      if (stage === "update") await client.query("BEGIN");
      await client.query(sql, params);
      return false;
    } catch (e) {
      // Only a data error counts: a lock timeout meanwhile says nothing about the rows.
      return /^2[23]/.test((e as { code?: string }).code ?? "");
    } finally {
      if (stage === "update") await client.query("ROLLBACK").catch(() => undefined);
    }
  };
  try {
    let lo = from;
    let hi = to;
    for (let step = 0; step < 64; step++) {
      const params: string[] = [];
      const n = Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${plan.table} WHERE ${range(lo, hi, params)}`, params)).rows[0].n);
      if (n === 0) return undefined;
      if (n === 1) {
        const p: string[] = [];
        const row = (await client.query<{ k: string }>(`SELECT ${key}::text AS k FROM ${plan.table} WHERE ${range(lo, hi, p)}`, p)).rows[0]?.k;
        return row !== undefined && (await fails(row, hi)) ? row : undefined;
      }
      const p: string[] = [];
      const mid = (await client.query<{ k: string }>(`SELECT ${key}::text AS k FROM ${plan.table} WHERE ${range(lo, hi, p)} ORDER BY ${key} OFFSET ${Math.floor(n / 2)} LIMIT 1`, p)).rows[0]?.k;
      if (mid === undefined) return undefined;
      if (await fails(lo, mid)) hi = mid;
      else if (await fails(mid, hi)) lo = mid;
      else return undefined; // the rows changed since: the batch is named instead
    }
  } catch {
    // Only a better message was at stake.
  }
  return undefined;
}

function failed(
  migration: Migration,
  plan: BackfillPlan,
  batches: number,
  from: string | null | undefined,
  err: unknown,
  row?: string,
  ownQuery = false,
): PgstackError {
  const e = err as { code?: string };
  const where = row !== undefined ? ` at the row ${plan.directive.key} = ${row}` : from != null ? ` (batch ${batches + 1}, ${plan.directive.key} from ${from})` : "";
  const kept = batches === 0 ? "no row was copied and it is not recorded as applied" : `the ${batches} batch(es) before it are committed and kept, and it is not recorded as applied`;
  const again = batches === 0 ? "run again" : "run again, the backfill continues from the first row still to copy";
  return new PgstackError(
    "E_MIGRATION_FAILED",
    `Migration ${migration.name} failed in its backfill of ${plan.table}${where}: ${messageOf(err).split("\n")[0]}${e.code ? ` (SQLSTATE ${e.code})` : ""}; ${kept}: ` +
      (ownQuery
        ? `the query that failed is pgstack's own (finding the next batch), not the migration's, so there is nothing in the migration to change: ${again}, and report it as a pgstack bug if it fails again.`
        : row !== undefined
          ? `change that row (through the old column: the trigger copies it) or the conversion, then ${again}.`
          : `remove the cause and ${again}.`),
    { migration: migration.name, sqlstate: e.code, batches, ...(row !== undefined ? { row } : {}) },
  );
}
