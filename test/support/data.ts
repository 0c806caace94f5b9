import { adminQuery, withDb } from "./cluster";

/**
 * Per-table digests of every row (md5 of the rows' text, ordered), ledger
 * included: equal maps = identical data in every table of `schema`.
 */
export async function tableDigests(url: string, schema = "public"): Promise<Record<string, string>> {
  return withDb(url, async (c) => {
    const { rows } = await c.query<{ t: string }>("SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname = $1 ORDER BY 1", [schema]);
    const out: Record<string, string> = {};
    for (const { t } of rows) {
      const r = await c.query(`SELECT count(*)::int AS n, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS d FROM ${t} x`);
      out[t] = `${r.rows[0].n}:${r.rows[0].d}`;
    }
    return out;
  });
}

/** Databases of the test cluster whose name starts with `prefix`, sorted. */
export async function databasesLike(prefix: string): Promise<string[]> {
  const { rows } = await adminQuery("SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1", [prefix]);
  return rows.map((r) => r.datname as string);
}

/** Whether `database` exists and takes new sessions. */
export async function acceptsConnections(database: string): Promise<boolean> {
  const { rows } = await adminQuery("SELECT datallowconn FROM pg_database WHERE datname = $1", [database]);
  return rows[0]?.datallowconn === true;
}

/** Granted advisory locks held in `database` (any key). */
export async function advisoryLocks(database: string): Promise<{ pid: number; objid: number }[]> {
  const { rows } = await adminQuery(
    `SELECT l.pid, l.objid::int AS objid FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = $1)`,
    [database],
  );
  return rows as { pid: number; objid: number }[];
}

/** Polls `check` until it returns true or `ms` pass; returns its last answer. */
export async function eventually(check: () => Promise<boolean>, ms = 10_000, every = 100): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, every));
  }
}

/** The `postgres` database of the server of `url` (another cluster than the test cluster: an e2e stack's). */
function adminUrlOf(url: string): string {
  const u = new URL(url);
  u.pathname = "/postgres";
  return u.toString();
}

/** Databases of the server of `url` whose name starts with `prefix`, sorted. */
export async function databasesAt(url: string, prefix: string): Promise<string[]> {
  const { rows } = await withDb(adminUrlOf(url), (c) => c.query("SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1", [prefix]));
  return rows.map((r) => r.datname as string);
}

/** Whether `database` on the server of `url` exists and takes new sessions. */
export async function acceptsConnectionsAt(url: string, database: string): Promise<boolean> {
  const { rows } = await withDb(adminUrlOf(url), (c) => c.query("SELECT datallowconn FROM pg_database WHERE datname = $1", [database]));
  return rows[0]?.datallowconn === true;
}
