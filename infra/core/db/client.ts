import type { Client as PgkitClient } from "@pgkit/client";
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
  const { client, target } = await openSession(url, options);
  try {
    return await fn(client, target);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Ends a @pgkit/client (its pg-promise pool) for good. Its end() resolves before
 * the idle connections' sockets are closed, and pg-promise removes the pool's
 * error handler at once: a server message still arriving on one of them (FATAL
 * 57P01 when the database is dropped WITH (FORCE) right after, as the revert's
 * throwaway database is) would be an unhandled 'error' event that ends the process.
 */
export async function endPgkitClient(client: PgkitClient): Promise<void> {
  client.pgp.$pool.on("error", () => undefined);
  await client.end().catch(() => undefined);
}

/**
 * Opens a session as withClient does (search_path set to the Prisma schema),
 * for a caller that keeps it past one call (a deploy session's deployer
 * connection) and closes it itself.
 */
export async function openSession(url: string, options: ConnectOptions = {}): Promise<{ client: Client; target: ConnectionTarget }> {
  const target = parseDatabaseUrl(url);
  return { client: await connect(target, options), target };
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
      return client;
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }
}

/** The socket under a pg Client (not part of its typed surface): to let an idle session not hold the process open, or to drop it at once. */
export function socketOf(client: Client): import("node:net").Socket | undefined {
  return (client as unknown as { connection?: { stream?: import("node:net").Socket } }).connection?.stream;
}

/**
 * The server's transaction status after the last completed query ('I' idle,
 * 'T' in a transaction, 'E' in a failed one), from its ReadyForQuery message:
 * what the SQL's BEGIN/COMMIT/ROLLBACK actually did, not what pgstack guesses.
 * Watches from the first call on (call it before the queries it judges).
 */
export function transactionStatus(client: Client): () => string {
  let status = transactionStatuses.get(client);
  if (!status) {
    const box = { value: "I" };
    const connection = (client as unknown as { connection: import("node:events").EventEmitter }).connection;
    connection.on("readyForQuery", (msg: { status?: string }) => {
      if (msg.status) box.value = msg.status;
    });
    status = () => box.value;
    transactionStatuses.set(client, status);
  }
  return status;
}
const transactionStatuses = new WeakMap<Client, () => string>();

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
