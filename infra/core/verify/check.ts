/**
 * One check of `pgstack verify` and of the verification step of an update:
 * a name, a status, one sentence a person reads, and machine-readable details.
 * This is the `--json` schema (README, "Verify"): one object per check.
 */
export type CheckStatus = "pass" | "warn" | "fail";

export interface CheckResult {
  /** "ledger", "database", "drift" (or "snapshot"). */
  name: string;
  status: CheckStatus;
  /** One sentence: what was found, and for a warning or failure what to do. */
  sentence: string;
  details: Record<string, unknown>;
}

const RANK: Record<CheckStatus, number> = { pass: 0, warn: 1, fail: 2 };

/** The worst of some statuses ("pass" for none). Pure. */
export function worst(statuses: CheckStatus[]): CheckStatus {
  return statuses.reduce<CheckStatus>((a, b) => (RANK[b] > RANK[a] ? b : a), "pass");
}

/** The sentence of the first failing check, then of the others, for an error that names them all. Pure. */
export function failureSentence(checks: CheckResult[]): string | undefined {
  const failed = checks.filter((c) => c.status === "fail");
  if (failed.length === 0) return undefined;
  return failed.map((c) => `${c.name}: ${c.sentence}`).join(" ");
}
