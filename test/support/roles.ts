import { randomBytes } from "node:crypto";
import { adminQuery, testCluster } from "./cluster";

/** A login role of the test cluster's own, with a throwaway password. */
export interface TestRole {
  name: string;
  password: string;
  /** URL of `database` as this role. */
  urlFor(database: string): string;
  drop(): Promise<void>;
}

/**
 * Creates a login role (NOCREATEDB unless asked). Roles are cluster-wide, so
 * the name carries a random suffix; drop it in afterAll (its objects first:
 * `drop` runs DROP OWNED and ends its sessions).
 */
export async function createTestRole(prefix: string, options: { createdb?: boolean } = {}): Promise<TestRole> {
  const name = `${prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomBytes(3).toString("hex")}`;
  const password = `p${randomBytes(12).toString("hex")}`;
  await adminQuery(`CREATE ROLE "${name}" LOGIN ${options.createdb ? "CREATEDB" : "NOCREATEDB"} NOSUPERUSER PASSWORD '${password}'`);
  return {
    name,
    password,
    urlFor(database: string) {
      const url = new URL(testCluster().adminUrl);
      url.username = name;
      url.password = password;
      url.pathname = "/" + database;
      return url.toString();
    },
    async drop() {
      await adminQuery("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [name]);
      const { rows } = await adminQuery("SELECT datname FROM pg_database WHERE datallowconn AND datname NOT IN ('template0', 'template1')");
      // DROP OWNED is per database: run it wherever the role may own something.
      for (const { datname } of rows) {
        const url = new URL(testCluster().adminUrl);
        url.pathname = "/" + String(datname);
        const { Client } = await import("pg");
        const c = new Client({ connectionString: url.toString() });
        await c.connect().catch(() => undefined);
        await c.query(`DROP OWNED BY "${name}"`).catch(() => undefined);
        await c.end().catch(() => undefined);
      }
      await adminQuery(`DROP ROLE IF EXISTS "${name}"`).catch(() => undefined);
    },
  };
}

/** A fresh database owned by `role` (created by the superuser: the role itself may not). */
export async function createDatabaseOwnedBy(prefix: string, role: TestRole): Promise<{ name: string; url: string }> {
  const name = `${prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomBytes(3).toString("hex")}`;
  await adminQuery(`CREATE DATABASE "${name}" OWNER "${role.name}"`);
  return { name, url: role.urlFor(name) };
}
