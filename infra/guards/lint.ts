import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { lintError, lintMigrations, type LintReport } from "../core/lint";
import { discoverMigrations, type Migration } from "../core/migrations/discover";
import { pendingFromApplied } from "../core/migrations/pending";

/**
 * `lint: strict`: a preview or update that would run a migration with an
 * unaccepted blocking finding stops before anything is created or changed.
 *
 * What "would run" is, without connecting to the database (CI often cannot
 * reach prod): the migrations that are not in the stack's own last
 * `appliedMigrations` output. With strict on, everything that ever ran passed
 * this gate, so re-linting the ones a half-failed update already applied
 * changes nothing. A stack's first deployment has no such output: the gate
 * starts with the next change rather than failing on history that already ran
 * elsewhere.
 */
export function migrationsToGate(migrations: Migration[], previouslyApplied: string[] | undefined, pinned?: string): Migration[] {
  if (previouslyApplied === undefined) return [];
  return pendingFromApplied(migrations, previouslyApplied, pinned);
}

/** The gate's failure: one sentence, then one line per blocking finding. Pure. */
export function gateMessage(stack: string, report: LintReport): string | undefined {
  const failed = lintError(report);
  if (!failed) return undefined;
  const lines = report.findings
    .filter((f) => !f.suppressed && f.severity === "blocking")
    .map((f) => `  ${f.migration}/migration.sql:${f.line}: ${f.rule}: ${f.message}`);
  return [`Stack '${stack}' has lint: strict and ${failed.message.charAt(0).toLowerCase()}${failed.message.slice(1)}`, ...lines].join("\n");
}

/** Throws a RunError (no stack trace, one message) when the gate refuses. */
export async function enforceLintGate(options: {
  stack: string;
  projectDir: string;
  migrationsDir: string;
  pinnedMigration?: string;
  previouslyApplied: string[] | undefined;
}): Promise<void> {
  if (options.previouslyApplied === undefined) {
    pulumi.log.info("lint: strict starts with this stack's first successful update; nothing to gate yet.");
    return;
  }
  const migrations = await discoverMigrations(path.join(options.projectDir, options.migrationsDir));
  const gated = migrationsToGate(migrations, options.previouslyApplied, options.pinnedMigration);
  const report = await lintMigrations(gated, { cwd: path.join(options.projectDir, options.migrationsDir) });
  const message = gateMessage(options.stack, report);
  if (message) throw new pulumi.RunError(message);
  for (const f of report.findings.filter((x) => x.suppressed)) {
    pulumi.log.info(`lint: accepted ${f.rule} in ${f.migration}: ${f.suppressed!.reason}`);
  }
}

/** A pending migration with its classification (core/compat), as the chain holds it. */
export interface ClassifiedMigration {
  name: string;
  compatibility?: { compatibility: "expand" | "contract"; acknowledged?: string };
}

/** The pending contract migrations of a stack whose application rollout is not wired (`contractAfter`). Pure. */
export function pendingContract(pending: ClassifiedMigration[]): ClassifiedMigration[] {
  return pending.filter((m) => m.compatibility?.compatibility === "contract");
}

/** What the preview says of them, or undefined when there are none. Pure. */
export function contractNote(contract: ClassifiedMigration[]): string | undefined {
  if (contract.length === 0) return undefined;
  const n = contract.length;
  return `${n} contract migration${n === 1 ? "" : "s"} will run while the application version now running is live: ${contract.map((m) => m.name).join(", ")}; wire \`contractAfter\` (README).`;
}

/**
 * `lint: strict` without `contractAfter`: the refusal (one sentence naming the
 * unacknowledged contract migrations and the two ways out), or undefined when
 * each one carries `-- pgstack:allow-contract <why>`. Pure.
 */
export function contractGateMessage(stack: string, contract: ClassifiedMigration[]): string | undefined {
  const blocked = contract.filter((m) => !m.compatibility?.acknowledged);
  if (blocked.length === 0) return undefined;
  const n = blocked.length;
  return (
    `Stack '${stack}' has lint: strict and ${n === 1 ? "migration" : "migrations"} ${blocked.map((m) => m.name).join(", ")} ${n === 1 ? "breaks" : "break"} the application version now running ` +
    `(contract) with no application rollout wired: pass the rollout as \`contractAfter\` to PgStack so ${n === 1 ? "it runs" : "they run"} after it (README "Zero-downtime schema changes"), ` +
    `or acknowledge the downtime with a line \`-- pgstack:allow-contract <why>\` in ${n === 1 ? "its" : "each"} migration.sql.`
  );
}

/**
 * An update with the rollout wired whose pending expand migrations sort after
 * the first pending contract one: the chain keeps history order, so they run
 * after the rollout and the new version goes live without them. The warning
 * (or, on a strict stack, the refusal) naming them, the contract migration and
 * the fix. Pure.
 */
export function expandAfterContractMessage(stack: string, contract: ClassifiedMigration, later: ClassifiedMigration[], strict: boolean): string {
  const n = later.length;
  const them = n === 1 ? "it" : "them";
  const list = later.map((m) => m.name).join(", ");
  const what =
    `${n === 1 ? "expand migration" : "expand migrations"} ${list} ${n === 1 ? "sorts" : "sort"} after the contract migration ${contract.name}, ` +
    `so ${n === 1 ? "it runs" : "they run"} after the application rollout and the new version goes live without ${them}: ` +
    `rename ${them} so ${n === 1 ? "it sorts" : "they sort"} before ${contract.name}, or ship ${them} in an earlier update`;
  return strict
    ? `Stack '${stack}' has lint: strict and ${what}; if the new version does not need ${them}, acknowledge with a line \`-- pgstack:allow-contract <why>\` in ${n === 1 ? "its" : "each"} migration.sql.`
    : `${what.charAt(0).toUpperCase()}${what.slice(1)}.`;
}
