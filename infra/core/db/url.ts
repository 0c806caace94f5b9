import { PgstackError } from "../errors";

/** What pgstack needs from a connection URL, with the secret kept apart. */
export interface ConnectionTarget {
  /** URL handed to `pg`, without Prisma-only parameters such as `schema`. */
  connectionString: string;
  host: string;
  port: number;
  database: string;
  user: string;
  /** The schema Prisma would use (`?schema=`), where the ledger lives. */
  schema: string;
}

/**
 * Parses a PostgreSQL URL the way Prisma reads it. The error never repeats the
 * URL, which may carry a password.
 */
export function parseDatabaseUrl(url: string): ConnectionTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new PgstackError("E_SETTINGS", "The database URL is not a valid URL: expected postgresql://user:password@host:port/database.");
  }
  if (parsed.protocol !== "postgresql:" && parsed.protocol !== "postgres:") {
    throw new PgstackError(
      "E_SETTINGS",
      `The database URL must start with postgresql:// (got ${parsed.protocol}//).`,
    );
  }
  const schema = parsed.searchParams.get("schema") || "public";
  parsed.searchParams.delete("schema");
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || "postgres";
  return {
    connectionString: parsed.toString(),
    host: parsed.hostname || "localhost",
    port: parsed.port ? Number(parsed.port) : 5432,
    database,
    user: decodeURIComponent(parsed.username || "postgres"),
    schema,
  };
}

/** The one URL builder: `database` on host:port as `user`, every part encoded, `params` as the query. */
export function serverUrl(target: { user: string; password: string; host: string; port: number; database: string }, params: Record<string, string> = {}): string {
  const query = new URLSearchParams(params).toString();
  return `postgresql://${encodeURIComponent(target.user)}:${encodeURIComponent(target.password)}@${target.host}:${target.port}/${encodeURIComponent(target.database)}${query ? `?${query}` : ""}`;
}

/** The URL of `database` on a server listening on 127.0.0.1:`port` (the embedded and docker engines). */
export function localServerUrl(user: string, password: string, port: number, database: string): string {
  return serverUrl({ user, password, host: "127.0.0.1", port, database });
}

/** Same server and credentials, another database (used for copies and checks). */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = "/" + encodeURIComponent(database);
  return parsed.toString();
}

/** Double-quotes an identifier for SQL, so no name is ever pasted in raw. */
export function quoteIdent(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** Single-quotes a string literal for SQL (standard_conforming_strings, PostgreSQL's default since 9.1). */
export function quoteLiteral(text: string): string {
  return "'" + text.replace(/'/g, "''") + "'";
}

/**
 * libpq environment variables for a URL, so pg_dump/psql get the password
 * without it ever appearing on a command line (visible in `ps`).
 */
export function libpqEnv(url: string): Record<string, string> {
  const target = parseDatabaseUrl(url);
  const parsed = new URL(url);
  const env: Record<string, string> = {
    PGHOST: target.host,
    PGPORT: String(target.port),
    PGUSER: target.user,
    PGDATABASE: target.database,
  };
  if (parsed.password) env.PGPASSWORD = decodeURIComponent(parsed.password);
  const sslmode = parsed.searchParams.get("sslmode");
  if (sslmode) env.PGSSLMODE = sslmode;
  return env;
}
