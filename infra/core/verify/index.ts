import type { Logger } from "../logger";
import { worst, type CheckResult } from "./check";
import { checkDrift, DEFAULT_DRIFT_POLICY, type DriftPolicy } from "./drift";
import { checkDatabase } from "./health";
import { checkLedger, readLedgerFacts } from "./ledger";
import type { ReplayOn } from "./replay";

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
}

export interface Verification {
  status: CheckResult["status"];
  checks: CheckResult[];
}

/**
 * Every check of `pgstack verify`, in order: the database (when it cannot be
 * reached the others are not run), the ledger, the schema's drift.
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
  }
  return { status: worst(checks.map((c) => c.status)), checks };
}
