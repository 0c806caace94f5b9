import type { Client } from "pg";
import { withClient } from "../db/client";
import { quoteIdent } from "../db/url";

/** Exact row counts per table, keyed `schema.table` (user tables only). */
export type TableCounts = Record<string, number>;

/**
 * A table's contents as one value: its row count and an order-independent
 * digest of every row's text (md5 of the sorted md5s of `row::text`). Equal
 * counts say nothing about equal contents (an UPDATE of every row keeps the
 * count); equal digests do.
 */
export interface TableState {
  rows: number;
  digest: string;
}

export type TableStates = Record<string, TableState>;

/**
 * Row text depends on session settings (a timestamptz prints in TimeZone, a
 * bytea in bytea_output): fixed here, so two databases with different
 * per-database settings digest equal rows equally.
 */
async function fixOutputSettings(client: Client): Promise<void> {
  await client.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'");
}

async function userTables(client: Client): Promise<{ schema: string; table: string }[]> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    `SELECT n.nspname AS schema, c.relname AS table
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
        AND n.nspname NOT LIKE 'pg\\_temp%'
      ORDER BY 1, 2`,
  );
  return rows;
}

export const qualified = (t: { schema: string; table: string }) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;

/** Every user table's TableState, keyed `schema.table`. */
export async function tableStatesOn(client: Client): Promise<TableStates> {
  await fixOutputSettings(client);
  const out: TableStates = {};
  for (const t of await userTables(client)) {
    const { rows } = await client.query<{ n: string; d: string }>(
      `SELECT count(*)::text AS n, md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS d FROM (SELECT md5(x::text) AS h FROM ${qualified(t)} x) s`,
    );
    out[`${t.schema}.${t.table}`] = { rows: Number(rows[0].n), digest: rows[0].d };
  }
  return out;
}

export async function tableStates(url: string): Promise<TableStates> {
  return withClient(url, tableStatesOn, { applicationName: "pgstack snapshot" });
}

/** Tables whose state differs between `actual` and `expected` (digests where both have one, else row counts). */
export function differingTables(actual: TableStates, expected: TableStates): string[] {
  const names = [...new Set([...Object.keys(actual), ...Object.keys(expected)])].sort();
  return names.filter((n) => {
    const a = actual[n];
    const e = expected[n];
    if (!a || !e) return true;
    return a.rows !== e.rows || (Boolean(a.digest) && Boolean(e.digest) && a.digest !== e.digest);
  });
}

/** One readable phrase for a failed verification. */
export function describeStateMismatch(actual: TableStates, expected: TableStates): string {
  return differingTables(actual, expected)
    .slice(0, 3)
    .map((n) => {
      const a = actual[n];
      const e = expected[n];
      if (!a || !e) return `${n} ${a ? "is extra" : "is missing"}`;
      return a.rows !== e.rows ? `${n} has ${a.rows} rows, expected ${e.rows}` : `${n} has the expected ${e.rows} rows but different contents`;
    })
    .join("; ");
}

/** What turning a table's contents `from` into `to` takes, row by row. */
export interface TableDiff {
  table: string;
  /** Rows in `from` not in `to` (by primary key; by content for tables without one). */
  inserted: number;
  /** Rows with the same primary key whose contents differ (0 for tables without a primary key). */
  updated: number;
  /** Rows in `to` not in `from`. */
  deleted: number;
}

export async function primaryKey(client: Client, t: { schema: string; table: string }): Promise<string[]> {
  const { rows } = await client.query<{ col: string }>(
    `SELECT a.attname AS col
       FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary
      ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [qualified(t)],
  );
  return rows.map((r) => r.col);
}

/** key -> row digest (keyed by the primary key), or digest -> multiplicity (`#` keys) without one. */
async function rowDigests(client: Client, t: { schema: string; table: string }, key: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (key.length > 0) {
    const k = `ROW(${key.map((c) => `x.${quoteIdent(c)}`).join(", ")})::text`;
    const { rows } = await client.query<{ k: string; h: string }>(`SELECT ${k} AS k, md5(x::text) AS h FROM ${qualified(t)} x`);
    for (const r of rows) out.set(r.k, r.h);
  } else {
    const { rows } = await client.query<{ h: string; n: string }>(`SELECT md5(x::text) AS h, count(*)::text AS n FROM ${qualified(t)} x GROUP BY 1`);
    for (const r of rows) out.set(`#${r.h}`, r.n);
  }
  return out;
}

/**
 * Both sessions' output settings fixed, and the user tables of either side:
 * `sorted` by `schema.table`, each side's list, and whether a side has one.
 */
export async function tablesOfBoth(now: Client, then: Client) {
  await fixOutputSettings(now);
  await fixOutputSettings(then);
  const nowTables = await userTables(now);
  const thenTables = await userTables(then);
  const names = new Map<string, { schema: string; table: string }>();
  for (const t of [...nowTables, ...thenTables]) names.set(`${t.schema}.${t.table}`, t);
  const has = (list: typeof nowTables, name: string) => list.some((t) => `${t.schema}.${t.table}` === name);
  const sorted = [...names].sort(([a], [b]) => a.localeCompare(b));
  return { sorted, nowTables, thenTables, has };
}

/**
 * Per table, the rows inserted, updated and deleted in `now` since `then`
 * (two sessions, one on each database), exactly: every row is compared by
 * content. Tables equal on both sides are left out. With `thenStates` (the
 * TableStates of `then`, already known) only tables whose digest differs are
 * compared row by row: a digest is computed in the server, rows are not
 * shipped, which keeps a restore's closed window short.
 */
export async function diffTablesOn(now: Client, then: Client, thenStates?: TableStates): Promise<TableDiff[]> {
  const nowStates = thenStates ? await tableStatesOn(now) : undefined;
  const unchanged = (name: string) =>
    nowStates !== undefined && thenStates !== undefined && nowStates[name] !== undefined && thenStates[name] !== undefined && !differingTables({ [name]: nowStates[name] }, { [name]: thenStates[name] }).length && Boolean(thenStates[name].digest);
  const { sorted, nowTables, thenTables, has } = await tablesOfBoth(now, then);
  const out: TableDiff[] = [];
  for (const [name, t] of sorted) {
    if (unchanged(name)) continue;
    const diff = await diffTableRows(now, then, t, has(nowTables, name), has(thenTables, name));
    if (diff.inserted || diff.updated || diff.deleted) out.push(diff);
  }
  return out;
}

/** One table's diff by reading all its rows on each side that has it (output settings already fixed on both). */
export async function diffTableRows(now: Client, then: Client, t: { schema: string; table: string }, onNow: boolean, onThen: boolean): Promise<TableDiff> {
  const nowKey = onNow ? await primaryKey(now, t) : [];
  const thenKey = onThen ? await primaryKey(then, t) : [];
  // The same key on both sides compares rows by key; otherwise by content only.
  const key = nowKey.join(",") === thenKey.join(",") ? nowKey : [];
  const a = onNow ? await rowDigests(now, t, key) : new Map<string, string>();
  const b = onThen ? await rowDigests(then, t, key) : new Map<string, string>();
  return compareDigests(`${t.schema}.${t.table}`, key.length > 0, a, b);
}

/** inserted/updated/deleted from two rowDigests-shaped maps (by key when `keyed`, else digest -> multiplicity). */
export function compareDigests(table: string, keyed: boolean, a: Map<string, string>, b: Map<string, string>): TableDiff {
  const diff: TableDiff = { table, inserted: 0, updated: 0, deleted: 0 };
  if (keyed) {
    for (const [k, h] of a) {
      const old = b.get(k);
      if (old === undefined) diff.inserted++;
      else if (old !== h) diff.updated++;
    }
    for (const k of b.keys()) if (!a.has(k)) diff.deleted++;
  } else {
    for (const [h, n] of a) diff.inserted += Math.max(0, Number(n) - Number(b.get(h) ?? 0));
    for (const [h, n] of b) diff.deleted += Math.max(0, Number(n) - Number(a.get(h) ?? 0));
  }
  return diff;
}

export async function diffTables(nowUrl: string, thenUrl: string): Promise<TableDiff[]> {
  return withClient(nowUrl, (now) => withClient(thenUrl, (then) => diffTablesOn(now, then), { applicationName: "pgstack restore" }), { applicationName: "pgstack restore" });
}
