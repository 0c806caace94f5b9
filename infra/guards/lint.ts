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

/** The last successful update's `appliedMigrations`, read through a reference to this very stack. */
export async function previouslyAppliedMigrations(): Promise<string[] | undefined> {
  const self = new pulumi.StackReference("pgstack-self", {
    name: `organization/${pulumi.getProject()}/${pulumi.getStack()}`,
  });
  const details = await self.getOutputDetails("appliedMigrations");
  return stringList(details.value ?? details.secretValue);
}

/** A list output as read back: an array, or (through some runtimes) an object keyed 0..n-1. */
export function stringList(value: unknown): string[] | undefined {
  if (Array.isArray(value)) return value.map(String);
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.every(([k], i) => k === String(i))) return entries.map(([, v]) => String(v));
  }
  return undefined;
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
