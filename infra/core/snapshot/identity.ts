import type { Client } from "pg";
import { withClient, type ConnectOptions } from "../db/client";

/**
 * A database's identity: what the migration commands' triggers carry, so
 * that a replaced or restored database (a new cluster, a new instance, a
 * database recreated from a snapshot) re-runs the migration chain against
 * itself instead of trusting a ledger it no longer has.
 *
 * `<system identifier>/<database name>/<database oid>`: the system identifier
 * is fixed at initdb (pg_control), so a new cluster has a new one; the oid
 * changes when the database is dropped and recreated (a restore). Servers that
 * do not let the user read pg_control (some managed services) give `-` there.
 */
export interface DatabaseIdentity {
  systemIdentifier: string | null;
  database: string;
  databaseOid: number;
  identity: string;
}

export async function databaseIdentity(url: string, connect: ConnectOptions = { applicationName: "pgstack identity" }): Promise<DatabaseIdentity> {
  return withClient(url, (client) => identityOn(client), connect);
}

/** The identity of the database `client` is connected to. */
export async function identityOn(client: Client): Promise<DatabaseIdentity> {
  const { rows } = await client.query<{ database: string; oid: number }>(
    "SELECT current_database() AS database, (SELECT oid::int FROM pg_database WHERE datname = current_database()) AS oid",
  );
  let systemIdentifier: string | null = null;
  try {
    const sys = await client.query<{ id: string }>("SELECT system_identifier::text AS id FROM pg_control_system()");
    systemIdentifier = sys.rows[0]?.id ?? null;
  } catch {
    systemIdentifier = null;
  }
  const { database, oid } = rows[0];
  return { systemIdentifier, database, databaseOid: oid, identity: formatIdentity(systemIdentifier, database, oid) };
}

export function formatIdentity(systemIdentifier: string | null, database: string, oid: number): string {
  return `${systemIdentifier ?? "-"}/${database}/${oid}`;
}
