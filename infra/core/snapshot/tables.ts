import type { Client } from "pg";
import { withClient } from "../db/client";
import { quoteIdent } from "../db/url";

/** Exact row counts per table, keyed `schema.table` (user tables only). */
export type TableCounts = Record<string, number>;

/** One table's rows now and at the snapshot; null where the table does not exist. */
export interface TableChange {
  table: string;
  now: number | null;
  atSnapshot: number | null;
}

/**
 * Exact counts (count(*), not the planner's estimates): a restore is verified
 * with them and a rollback reports what it discards with them, so an estimate
 * could hide lost rows.
 */
export async function countRowsOn(client: Client): Promise<TableCounts> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    `SELECT n.nspname AS schema, c.relname AS table
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
        AND n.nspname NOT LIKE 'pg\\_temp%'
      ORDER BY 1, 2`,
  );
  const counts: TableCounts = {};
  for (const r of rows) {
    const { rows: n } = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${quoteIdent(r.schema)}.${quoteIdent(r.table)}`);
    counts[`${r.schema}.${r.table}`] = Number(n[0].n);
  }
  return counts;
}

export async function countRows(url: string): Promise<TableCounts> {
  return withClient(url, countRowsOn, { applicationName: "pgstack snapshot" });
}

/** Every table of either side, sorted; `changedOnly` leaves out the equal ones. */
export function compareCounts(now: TableCounts, atSnapshot: TableCounts, changedOnly = false): TableChange[] {
  const names = [...new Set([...Object.keys(now), ...Object.keys(atSnapshot)])].sort();
  return names
    .map((table) => ({ table, now: now[table] ?? null, atSnapshot: atSnapshot[table] ?? null }))
    .filter((c) => !changedOnly || c.now !== c.atSnapshot);
}

/** The tables whose counts differ, as one readable phrase (for error sentences). */
export function describeMismatch(changes: TableChange[]): string {
  return changes
    .filter((c) => c.now !== c.atSnapshot)
    .slice(0, 3)
    .map((c) => `${c.table} has ${c.now ?? "no table"} rows, expected ${c.atSnapshot ?? "no table"}`)
    .join("; ");
}
