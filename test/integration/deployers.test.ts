/** The deployer-lock module: one holder query, and busy errors known by their code and sqlstate, never by their text. */
import { Client } from "pg";
import { withClient } from "../../infra/core/db/client";
import { MIGRATION_LOCK_KEY, deployerBusy, isBusyError, migrationLockHolder } from "../../infra/core/db/deployers";
import { PgstackError } from "../../infra/core/errors";
import { adminQuery, createTestDatabase } from "../support/cluster";
import { expectFailure } from "../support/sentence";

jest.setTimeout(60_000);

describe("deployer lock", () => {
  it("names the session holding the migration lock in that database only", async () => {
    const url = await createTestDatabase("deplock");
    const other = await createTestDatabase("deplock_other");
    const db = new URL(url).pathname.slice(1);
    const holder = new Client({ connectionString: url, application_name: "other deploy" });
    await holder.connect();
    try {
      const { rows } = await holder.query("SELECT pg_backend_pid() AS pid, pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      expect(await withClient(url, (c) => migrationLockHolder(c))).toEqual({ pid: rows[0].pid, applicationName: "other deploy" });
      expect(await withClient(other, (c) => migrationLockHolder(c, db))).toEqual({ pid: rows[0].pid, applicationName: "other deploy" });
      expect(await withClient(other, (c) => migrationLockHolder(c))).toBeUndefined();
    } finally {
      await holder.end();
    }
    expect(await withClient(url, (c) => migrationLockHolder(c))).toBeUndefined();
  });

  it("a database closed to connections is busy by its sqlstate; a refusal is busy by its code, not by its words", async () => {
    const url = await createTestDatabase("depclosed");
    const db = new URL(url).pathname.slice(1);
    await adminQuery(`ALTER DATABASE "${db}" WITH ALLOW_CONNECTIONS false`);
    try {
      const closed = await expectFailure(withClient(url, async () => undefined));
      expect(closed.details).toEqual({ sqlstate: "55000" });
      expect(isBusyError(closed)).toBe(true);
    } finally {
      await adminQuery(`ALTER DATABASE "${db}" WITH ALLOW_CONNECTIONS true`);
    }
    const busy = deployerBusy("snapshot", db, { pid: 1, applicationName: "x" });
    expect(isBusyError(busy)).toBe(true);
    expect(isBusyError(new PgstackError("E_SNAPSHOT", busy.message))).toBe(false);
    expect(isBusyError(new Error("database is not currently accepting connections"))).toBe(false);
  });
});
