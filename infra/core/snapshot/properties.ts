import type { Client } from "pg";
import { quoteIdent, quoteLiteral } from "../db/url";
import { messageOf } from "../errors";
import type { Logger } from "../logger";
import { ownComment } from "./fence";
import { plainComment } from "./intent";

/**
 * What a database is besides its contents, none of which a copy carries
 * (`CREATE DATABASE ... TEMPLATE` and pg_restore into a new database both
 * start from defaults): its ACL (`REVOKE CONNECT ... FROM PUBLIC`), its
 * connection limit, `ALTER DATABASE ... SET` and `ALTER ROLE ... IN DATABASE
 * ... SET` settings (pg_db_role_setting) and its comment. A restore carries
 * them from the database it replaces onto the copy before the swap.
 */
export interface DatabaseProperties {
  /** aclexplode(datacl), or null for the default ACL. */
  acl: { grantee: string | null; privilege: string; grantable: boolean }[] | null;
  connectionLimit: number;
  /** Per database (role null) and per role in the database: `name=value` entries as PostgreSQL stores them. */
  settings: { role: string | null; config: string[] }[];
  comment: string | null;
}

export async function readProperties(client: Client, db: string): Promise<DatabaseProperties> {
  const { rows } = await client.query<{ oid: number; acl: boolean; connlimit: number }>(
    "SELECT oid::int AS oid, datacl IS NOT NULL AS acl, datconnlimit AS connlimit FROM pg_database WHERE datname = $1",
    [db],
  );
  const d = rows[0];
  let acl: DatabaseProperties["acl"] = null;
  if (d.acl) {
    const { rows: entries } = await client.query<{ grantee: string | null; privilege: string; grantable: boolean }>(
      `SELECT CASE WHEN e.grantee = 0 THEN NULL ELSE pg_get_userbyid(e.grantee) END AS grantee, e.privilege_type AS privilege, e.is_grantable AS grantable
         FROM pg_database, aclexplode(datacl) e WHERE datname = $1 ORDER BY 1 NULLS FIRST, 2`,
      [db],
    );
    acl = entries;
  }
  const { rows: settings } = await client.query<{ role: string | null; config: string[] }>(
    `SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END AS role, s.setconfig AS config
       FROM pg_db_role_setting s WHERE s.setdatabase = $1 ORDER BY 1 NULLS FIRST`,
    [d.oid],
  );
  // Never a marker or a rollback's intent: they describe this database, not a copy (a restore records its own).
  return { acl, connectionLimit: d.connlimit, settings, comment: plainComment(await ownComment(client, db)) };
}

const grantee = (role: string | null) => (role === null ? "PUBLIC" : quoteIdent(role));

/** Gives database `target` the properties `props` (see the module comment); what cannot be carried is one warning each. */
export async function applyProperties(client: Client, target: string, props: DatabaseProperties, log: Logger): Promise<void> {
  const db = quoteIdent(target);
  const attempt = async (what: string, sql: string[]) => {
    await client.query("SAVEPOINT carry");
    try {
      for (const q of sql) await client.query(q);
      await client.query("RELEASE SAVEPOINT carry");
      return true;
    } catch (err) {
      await client.query("ROLLBACK TO SAVEPOINT carry");
      log.warn(`could not carry ${what} over to the restored database: ${messageOf(err).split("\n")[0]}`);
      return false;
    }
  };
  await client.query("BEGIN");
  try {
    await attempt("the connection limit", [`ALTER DATABASE ${db} CONNECTION LIMIT ${Number(props.connectionLimit)}`]);
    if (props.acl) {
      const { rows } = await client.query<{ owner: string }>("SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1", [target]);
      const sql = [`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`, `REVOKE ALL ON DATABASE ${db} FROM ${quoteIdent(rows[0].owner)}`];
      for (const e of props.acl) sql.push(`GRANT ${e.privilege} ON DATABASE ${db} TO ${grantee(e.grantee)}${e.grantable ? " WITH GRANT OPTION" : ""}`);
      await attempt("the access privileges", sql);
    }
    for (const s of props.settings) {
      const scope = s.role === null ? `DATABASE ${db}` : `ROLE ${quoteIdent(s.role)} IN DATABASE ${db}`;
      for (const entry of s.config) {
        const eq = entry.indexOf("=");
        const name = entry.slice(0, eq);
        const value = entry.slice(eq + 1);
        // set_config parses the value as PostgreSQL stored it (lists such as
        // search_path included); FROM CURRENT then stores exactly that.
        const ok = await attempt(`setting ${name}`, [`SELECT set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, true)`, `ALTER ${scope} SET ${quoteIdent(name)} FROM CURRENT`]);
        if (!ok) await attempt(`setting ${name} (as text)`, [`ALTER ${scope} SET ${quoteIdent(name)} = ${quoteLiteral(value)}`]);
      }
    }
    await attempt("the comment", [`COMMENT ON DATABASE ${db} IS ${props.comment === null ? "NULL" : quoteLiteral(props.comment)}`]);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}
