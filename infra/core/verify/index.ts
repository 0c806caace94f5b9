import type { Logger } from "../logger";
import { worst, type CheckResult } from "./check";
import { checkDrift, DEFAULT_DRIFT_POLICY, type DriftPolicy } from "./drift";
import { checkDatabase } from "./health";
import { checkLedger, readLedgerFacts } from "./ledger";
import type { ReplayOn } from "./replay";
import { latestSnapshot, verifySnapshot } from "./snapshot";
import type { StoreOptions } from "../snapshot/store";

export { worst, failureSentence, type CheckResult, type CheckStatus } from "./check";
export { DEFAULT_DRIFT_POLICY, compareSchemas, type DriftPolicy, type DriftedObject } from "./drift";
export type { ReplayOn } from "./replay";

export interface VerifyOptions {
  migrationsDir: string;
  log: Logger;
  policy?: DriftPolicy;
  /** The PostgreSQL major the stack is configured for (pgstack:postgresVersion). */
  expectedMajor?: string;
  cacheDir?: string;
  replayOn?: ReplayOn;
  /** Verify the database's latest snapshot (snapshot.ts) where its snapshots are; false: no snapshot check. */
  snapshots?: StoreOptions | false;
}

export interface Verification {
  status: CheckResult["status"];
  checks: CheckResult[];
}

/**
 * Every check of `pgstack verify`, in order: the database (when it cannot be
 * reached the others are not run), the ledger, the schema's drift, the
 * latest snapshot.
 */
export async function verifyDatabase(url: string, options: VerifyOptions): Promise<Verification> {
  const database = await checkDatabase(url, { expectedMajor: options.expectedMajor });
  const checks: CheckResult[] = [database];
  if (database.details.connected !== false) {
    const facts = await readLedgerFacts(url, options.migrationsDir, (note) => options.log.warn(note));
    checks.push(checkLedger(facts));
    checks.push(
      await checkDrift(url, facts, {
        migrationsDir: options.migrationsDir,
        policy: options.policy ?? DEFAULT_DRIFT_POLICY,
        cacheDir: options.cacheDir,
        replayOn: options.replayOn ?? "local",
        log: options.log,
      }),
    );
    if (options.snapshots !== false) checks.push(await checkLatestSnapshot(url, options.snapshots ?? {}, options.log));
  }
  return { status: worst(checks.map((c) => c.status)), checks };
}

/** Snapshot health: the database's latest snapshot exists (else a warning) and verifies. */
async function checkLatestSnapshot(url: string, store: StoreOptions, log: Logger): Promise<CheckResult> {
  const latest = await latestSnapshot(url, store).catch(() => undefined);
  if (!latest) {
    return { name: "snapshot", status: "warn", sentence: "The database has no snapshot to roll back to (the next update that applies migrations takes one; `pgstack snapshot create` takes one now).", details: { snapshotId: null } };
  }
  return verifySnapshot(url, latest.snapshotId, { ...store, log });
}

/** The drift check alone (plan, the program's gate): the ledger's applied migrations replayed and compared. */
export async function driftOf(url: string, options: { migrationsDir: string; policy: DriftPolicy; cacheDir?: string; replayOn?: ReplayOn; log: Logger }): Promise<CheckResult> {
  const facts = await readLedgerFacts(url, options.migrationsDir, (note) => options.log.warn(note));
  return checkDrift(url, facts, { ...options, replayOn: options.replayOn ?? "local" });
}

/**
 * The refusal of a strict stack's deploy onto drift that fails by its policy,
 * with the objects' DDL; undefined when nothing fails or it was accepted. Pure.
 */
export function driftRefusal(check: CheckResult, where: string): string | undefined {
  if (check.status !== "fail") return undefined;
  return `${where} refuses to deploy onto a database that differs from its migrations (lint: strict): ${check.sentence.replace(/\.$/, "")}; put the change in a migration or undo it, allow the object in pgstack:drift, or pass --accept-drift to deploy anyway.`;
}
