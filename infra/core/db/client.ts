import { Client } from "pg";
import { PgstackError, messageOf } from "../errors";
import { ConnectionTarget, parseDatabaseUrl, quoteIdent } from "./url";

export interface ConnectOptions {
  /** Shown in pg_stat_activity, so an operator can tell who holds a lock. */
  applicationName?: string;
  connectTimeoutMs?: number;
}

/**
 * Opens a session, sets search_path to the Prisma schema, runs `fn`, and always
 * closes the session, whatever `fn` does.
 */
export async function withClient<T>(
  url: string,
  fn: (client: Client, target: ConnectionTarget) => Promise<T>,
  options: ConnectOptions = {},
): Promise<T> {
  const target = parseDatabaseUrl(url);
  const key = `${options.applicationName ?? "pgstack"}\n${target.connectionString}`;
  const client = (await reuse(key, target)) ?? (await connect(target, options));
  try {
    return await fn(client, target);
  } finally {
    await release(key, client);
  }
}

async function connect(target: ConnectionTarget, options: ConnectOptions): Promise<Client> {
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; ; attempt++) {
    const client = new Client({
      connectionString: target.connectionString,
      application_name: options.applicationName ?? "pgstack",
      connectionTimeoutMillis: timeoutMs,
    });
    // A dropped connection must surface as a failed query, not crash the process.
    client.on("error", () => undefined);
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      // A snapshot copy closes the database to new sessions for a few seconds
      // (ALLOW_CONNECTIONS false): wait for it, within the connect timeout.
      if ((err as { code?: string }).code === CLOSED_FOR_CONNECTIONS && Date.now() < deadline) {
        await sleep(Math.min(100 * attempt, 500));
        continue;
      }
      throw connectionError(err, target);
    }
    try {
      await client.query(`SET search_path TO ${quoteIdent(target.schema)}`);
      keptSessions?.add(client);
      return client;
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }
}

/**
 * Sessions kept open between commands while a deploy session serves a
 * `pulumi up` (keepSessionsOpen): connecting costs more than a whole
 * up-to-date migration step. Undefined otherwise: every command closes its own.
 */
let idleSessions: Map<string, Client[]> | undefined;
/** Every session opened while sessions are kept, idle or in use (for `abort`). */
let keptSessions: Set<Client> | undefined;

export interface KeptSessions {
  /** Closes them all. */
  close(): Promise<void>;
  /**
   * Drops every connection at once, also one running a query: the server
   * rolls back what was not committed and frees its locks, as when the
   * process is killed (the runner's client_connection_check_interval makes
   * it notice within a second even mid-statement).
   */
  abort(): void;
}

/**
 * From now on, withClient keeps each session it is done with for the next
 * call with the same URL and application_name, after DISCARD ALL (which also
 * releases any advisory lock, so no lock outlives the command that took it).
 * An idle kept session never keeps the process alive; one in use does.
 */
export function keepSessionsOpen(): KeptSessions {
  const sessions = (idleSessions ??= new Map());
  const all = (keptSessions ??= new Set());
  const stop = () => {
    idleSessions = undefined;
    keptSessions = undefined;
    sessions.clear();
    const open = [...all];
    all.clear();
    return open;
  };
  return {
    async close() {
      await Promise.all(stop().map((c) => c.end().catch(() => undefined)));
    },
    abort() {
      for (const c of stop()) streamOf(c)?.destroy();
    },
  };
}

/** The socket under a pg Client (not part of its typed surface). */
function streamOf(client: Client): import("node:net").Socket | undefined {
  return (client as unknown as { connection?: { stream?: import("node:net").Socket } }).connection?.stream;
}

/** A kept session, checked alive (a snapshot copy may have ended it) and set up as a new one is. */
async function reuse(key: string, target: ConnectionTarget): Promise<Client | undefined> {
  for (let client = idleSessions?.get(key)?.pop(); client; client = idleSessions?.get(key)?.pop()) {
    try {
      streamOf(client)?.ref();
      await client.query(`SET search_path TO ${quoteIdent(target.schema)}`);
      return client;
    } catch {
      keptSessions?.delete(client);
      await client.end().catch(() => undefined);
    }
  }
  return undefined;
}

async function release(key: string, client: Client): Promise<void> {
  if (idleSessions) {
    try {
      // Fails inside a transaction block: such a session is closed, not kept.
      await client.query("DISCARD ALL");
      const list = idleSessions.get(key) ?? [];
      list.push(client);
      idleSessions.set(key, list);
      // An idle kept session must not hold the process open (a Pulumi program ends once its loop is empty).
      streamOf(client)?.unref();
      return;
    } catch {
      // closed below
    }
  }
  keptSessions?.delete(client);
  await client.end().catch(() => undefined);
}

/** Runs `fn` in a transaction: COMMIT when it resolves, ROLLBACK when it throws. */
export async function withTransaction<T>(client: Client, fn: () => Promise<T>): Promise<T> {
  await client.query("BEGIN");
  try {
    const result = await fn();
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/** SQLSTATE of "database ... is not currently accepting connections" (ALLOW_CONNECTIONS false). */
export const CLOSED_FOR_CONNECTIONS = "55000";

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Turns a failed connect into one sentence that names the server but not the password. */
export function connectionError(err: unknown, target: ConnectionTarget): PgstackError {
  const where = `${target.host}:${target.port}`;
  const e = err as { code?: string; message?: string };
  switch (e.code) {
    case "ECONNREFUSED":
      return new PgstackError(
        "E_DB_UNREACHABLE",
        `Cannot reach PostgreSQL at ${where} (connection refused): check the host and port in the database URL and that the server is running.`,
      );
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new PgstackError(
        "E_DB_UNREACHABLE",
        `Cannot resolve the database host '${target.host}': check the host name in the database URL.`,
      );
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return new PgstackError(
        "E_DB_UNREACHABLE",
        `Cannot reach PostgreSQL at ${where} (${e.code}): check the host, port and network access to the server.`,
      );
    case "28P01":
    case "28000":
      return new PgstackError(
        "E_DB_AUTH",
        `PostgreSQL at ${where} rejected user '${target.user}' (${e.code === "28P01" ? "wrong password" : "not allowed"}): check the credentials in the database URL.`,
      );
    case CLOSED_FOR_CONNECTIONS:
      // A snapshot or restore has the database closed for a moment: the sqlstate says so, for callers that wait.
      return new PgstackError("E_DB_UNREACHABLE", `Cannot connect to PostgreSQL at ${where}: ${firstLine(messageOf(err))}.`, { sqlstate: CLOSED_FOR_CONNECTIONS });
    case "3D000":
      return new PgstackError(
        "E_DB_MISSING",
        `Database '${target.database}' does not exist on ${where}: create it, or fix the database name in the database URL.`,
      );
  }
  if (/timeout/i.test(messageOf(err))) {
    return new PgstackError(
      "E_DB_UNREACHABLE",
      `Cannot reach PostgreSQL at ${where} (connection timed out): check the host, port and network access to the server.`,
    );
  }
  return new PgstackError("E_DB_UNREACHABLE", `Cannot connect to PostgreSQL at ${where}: ${firstLine(messageOf(err))}.`);
}

function firstLine(text: string): string {
  return text.split("\n")[0].replace(/\.$/, "");
}
