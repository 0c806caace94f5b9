/**
 * The deployer-lock module: one holder query, busy errors known by their code
 * and sqlstate, never by their text, and a deploy session's one deployer
 * across its steps (with the ledger reads it remembers).
 */
import { Client } from "pg";
import { withClient } from "../../infra/core/db/client";
import { MIGRATION_LOCK_KEY, deployerBusy, deployerSession, isBusyError, migrationLockHolder, withAdvisoryLock } from "../../infra/core/db/deployers";
import { parseDatabaseUrl } from "../../infra/core/db/url";
import { ensureLedger, readLedger, recordFinished, recordStarted, rememberLedgerReads } from "../../infra/core/ledger/ledger";
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

describe("deployerSession: one deployer across a chain's steps", () => {
  const lockHolder = (url: string) => withClient(url, (c) => migrationLockHolder(c));
  const lock = { waitSeconds: 1, pollMs: 50 };

  it("takes the lock at its first command and keeps it between commands, on one connection, until close", async () => {
    const url = await createTestDatabase("depsession");
    const deployer = deployerSession();
    try {
      const first = await deployer.run(url, lock, async (c) => (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
      // Between commands: held by the session's connection, so another deployer cannot take it.
      expect(await lockHolder(url)).toEqual({ pid: first, applicationName: "pgstack" });
      const other = await expectFailure(withClient(url, (c) => withAdvisoryLock(c, parseDatabaseUrl(url), lock, async () => "ran")));
      expect(other.code).toBe("E_LOCK_TIMEOUT");
      const second = await deployer.run(url, lock, async (c) => (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
      expect(second).toBe(first);
    } finally {
      await deployer.close();
    }
    expect(await lockHolder(url)).toBeUndefined();
  });

  it("lets go of the lock when a command fails or leaves a transaction open, and takes it again on a new connection next time", async () => {
    const url = await createTestDatabase("depsession_fail");
    const deployer = deployerSession();
    try {
      await expectFailure(
        deployer.run(url, lock, async () => {
          throw new PgstackError("E_MIGRATION_FAILED", "a failed step.");
        }),
      );
      expect(await lockHolder(url)).toBeUndefined();
      await deployer.run(url, lock, (c) => c.query("BEGIN"));
      expect(await lockHolder(url)).toBeUndefined();
      const pid = await deployer.run(url, lock, async (c) => (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
      expect(await lockHolder(url)).toEqual({ pid, applicationName: "pgstack" });
    } finally {
      await deployer.close();
    }
  });

  it("after the server ended its connection between commands, connects again and waits for the lock like any deployer", async () => {
    const url = await createTestDatabase("depsession_ended");
    const deployer = deployerSession();
    try {
      const first = await deployer.run(url, lock, async (c) => (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
      await adminQuery(`SELECT pg_terminate_backend(${Number(first)})`);
      // Another deployer took the lock meanwhile: the session waits for it, then fails naming it.
      const other = new Client({ connectionString: url, application_name: "other deploy" });
      await other.connect();
      try {
        await eventuallyTrue(async () => (await other.query("SELECT pg_try_advisory_lock($1) AS l", [MIGRATION_LOCK_KEY])).rows[0].l);
        const refused = await expectFailure(deployer.run(url, lock, async () => "ran"));
        expect(refused.code).toBe("E_LOCK_TIMEOUT");
        expect(refused.message).toContain("application_name 'other deploy'");
      } finally {
        await other.end();
      }
      const second = await deployer.run(url, lock, async (c) => (await c.query("SELECT pg_backend_pid() AS pid")).rows[0].pid);
      expect(second).not.toBe(first);
      expect(await lockHolder(url)).toEqual({ pid: second, applicationName: "pgstack" });
    } finally {
      await deployer.close();
    }
  });
});

describe("a session that remembers its ledger reads", () => {
  it("returns exactly what a full read returns, in order, whatever changed the ledger in between", async () => {
    const url = await createTestDatabase("ledger_memory");
    await withClient(url, async (writer) => {
      await ensureLedger(writer, "public");
      const remembering = new Client({ connectionString: url });
      await remembering.connect();
      try {
        rememberLedgerReads(remembering);
        const same = async () => {
          const fresh = await withClient(url, (c) => readLedger(c, "public"));
          expect(await readLedger(remembering, "public")).toEqual(fresh);
          return fresh;
        };
        expect(await same()).toEqual([]);
        const a = await recordStarted(writer, "public", "20250101000000_a", "c".repeat(64));
        await recordStarted(writer, "public", "20250102000000_b", "d".repeat(64));
        expect((await same()).map((r) => r.migrationName)).toEqual(["20250101000000_a", "20250102000000_b"]);
        await recordFinished(writer, "public", a, 1);
        expect((await same())[0].finishedAt).not.toBeNull();
        // Written by hand, without the lock: an edited checksum, a deleted row, a new one.
        await writer.query(`UPDATE "_prisma_migrations" SET checksum = $1 WHERE id = $2`, ["e".repeat(64), a]);
        await writer.query(`DELETE FROM "_prisma_migrations" WHERE migration_name = '20250102000000_b'`);
        await recordStarted(writer, "public", "20250103000000_c", "f".repeat(64));
        const after = await same();
        expect(after.map((r) => [r.migrationName, r.checksum])).toEqual([
          ["20250101000000_a", "e".repeat(64)],
          ["20250103000000_c", "f".repeat(64)],
        ]);
      } finally {
        await remembering.end();
      }
    });
  });
});

async function eventuallyTrue(probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}
