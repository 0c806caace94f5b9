import { modeCell, type Plan } from "../../core/migrations/plan";
import type { Rehearsal } from "../../core/rehearsal/rehearse";
import type { LintReport } from "../../core/lint";
import type { MigrationCompatibility } from "../../core/compat";

export interface PlanReport {
  /** Stack name when the plan is for a Pulumi stack. */
  stack?: string;
  plan: Plan;
  /** Per pending migration, in the same order: expand or contract (core/compat). */
  compatibility?: MigrationCompatibility[];
  rehearsal?: Rehearsal;
  /** The snapshot the update would take, when it would take one. */
  snapshot?: string;
  /** Extra sections (lint findings) rendered by their owners. */
  sections?: string[];
  /** From the rehearsal: whether `npm run rollback -- --revert` could undo the deploy without loss. */
  revert?: Revertibility;
}

/** Per pending migration, in order: could a revert of it (and of those after it) give everything back? */
export type Revertibility = MigrationRevertibility[];

export interface MigrationRevertibility {
  migration: string;
  withoutLoss: boolean;
  /** What reverting it could not give back, one sentence each. */
  losses: string[];
  /** What reverting it would drop (created by it), as "kind name". */
  drops: string[];
}

const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ");

/** The PR comment: deterministic (no times, no hosts, no secrets) so it can be diffed and golden-tested. */
export function renderPlanMarkdown(report: PlanReport): string {
  const { plan } = report;
  const lines: string[] = [];
  lines.push(`### pgstack plan${report.stack ? ` for \`${report.stack}\`` : ""}`, "");
  if (plan.pending.length === 0) {
    lines.push("No migrations to apply: the database is up to date.", "");
  } else {
    lines.push(`**${plan.pending.length} migration(s) would run**, in this order:`, "");
    const compat = report.compatibility;
    lines.push(
      compat ? "| # | migration | statements | mode | compatibility |" : "| # | migration | statements | mode |",
      compat ? "| --- | --- | --- | --- | --- |" : "| --- | --- | --- | --- |",
    );
    plan.pending.forEach((p, i) =>
      lines.push(`| ${i + 1} | \`${p.name}\`${p.retry ? " (retry)" : ""} | ${p.statements} | ${modeCell(p)} |${compat ? ` ${compatCell(compat[i])} |` : ""}`),
    );
    lines.push("");
    if (compat) lines.push(...renderCompatibility(plan, compat));
    const notAtomic = plan.pending.filter((p) => !p.atomic);
    if (notAtomic.length > 0) {
      lines.push(
        `> **Not atomic:** ${notAtomic.map((p) => `\`${p.name}\``).join(", ")} commit${notAtomic.length > 1 ? "" : "s"} statement by statement (statements PostgreSQL refuses in a transaction, or the file's own BEGIN/COMMIT): a failure leaves the statements before it applied, recorded in the ledger and resumed by the next run.`,
        "",
      );
    }
    lines.push(report.snapshot ? `Snapshot before the first migration: \`${report.snapshot}\`` : "Snapshot before the first migration: taken by the stack's PreUpdateSnapshot.", "");
  }
  for (const b of plan.blockers) lines.push(`> **Blocked:** ${b.message}`, "");
  for (const note of plan.notes ?? []) lines.push(`> Note: ${cell(note)}`, "");
  for (const section of report.sections ?? []) lines.push(section, "");
  if (report.rehearsal) lines.push(...renderRehearsal(report.rehearsal), "");
  if (report.revert) lines.push(...renderRevertibility(report.revert), "");
  return lines.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd() + "\n";
}

function renderRehearsal(r: Rehearsal): string[] {
  const lines = [
    `#### Rehearsal ${r.ok ? "passed" : "FAILED"}`,
    "",
    r.copy === "template"
      ? "Applied to a throwaway copy of the database, with its data."
      : "Applied to a throwaway schema-only copy (the database had other sessions, so its data was not copied).",
    "",
    "| migration | result | duration | strongest lock on existing tables |",
    "| --- | --- | --- | --- |",
  ];
  for (const m of r.migrations) {
    const result =
      m.outcome === "applied" ? "applied" : m.outcome === "failed" ? `**failed at line ${m.line}:** ${cell(m.error ?? "")}` : "not run";
    const duration = m.durationMs === undefined ? "" : `${Math.max(1, Math.round(m.durationMs))} ms`;
    const locks = m.locks.map((l) => `\`${l.table}\` ${l.mode}${l.blocksReads ? " (blocks reads and writes)" : l.blocksWrites ? " (blocks writes)" : ""}`).join("<br>");
    lines.push(`| \`${m.name}\` | ${result} | ${duration} | ${locks || "-"} |`);
  }
  return lines;
}

function renderRevertibility(r: Revertibility): string[] {
  const lines = ["#### Revert", "", "| migration | revertible without loss | what a revert could not give back |", "| --- | --- | --- |"];
  for (const m of r) lines.push(`| \`${m.migration}\` | ${m.withoutLoss ? "yes" : "**no**"} | ${m.losses.map(cell).join("<br>") || "-"} |`);
  const drops = r.flatMap((m) => m.drops);
  lines.push(
    "",
    r.every((m) => m.withoutLoss)
      ? `If this deploy has to be undone, \`npm run rollback -- --revert\` keeps every write${drops.length > 0 ? `; it would drop ${drops.map((d) => `\`${d}\``).join(", ")} and what they hold by then` : ""}.`
      : "Undoing a migration marked **no** would need `--accept-loss` for a revert, or a snapshot restore (which discards every write since the deploy).",
  );
  return lines;
}

/** Lint findings of the pending migrations, accepted ones with their reasons. */
export function renderLintMarkdown(lint: LintReport, strict: boolean): string {
  if (lint.findings.length === 0) return "#### Lint\n\nNo findings in the pending migrations.";
  const verdict =
    lint.blocking === 0
      ? "no blocking finding"
      : `**${lint.blocking} blocking finding(s)**${strict ? " (this stack is `lint: strict`: the deploy is refused until each is fixed or accepted)" : ""}`;
  const lines = [
    "#### Lint",
    "",
    `${verdict}; ${lint.warnings} warning(s); ${lint.suppressed} accepted.`,
    "",
    "| migration | line | finding | rule | message |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const f of lint.findings) {
    const kind = f.suppressed ? `accepted: ${cell(f.suppressed.reason)}` : f.severity === "blocking" ? "**blocking**" : "warning";
    lines.push(`| \`${f.migration}\` | ${f.line} | ${kind} | \`${f.rule}\` | ${cell(f.message)} |`);
  }
  return lines.join("\n");
}

/** The sentence for N > 0 contract migrations with no application rollout known to wait for. */
export function contractSentence(n: number): string {
  return `${n} contract migration${n === 1 ? "" : "s"} will run while the version of the application now running is live, unless the program waits for the rollout (\`contractAfter\`, README).`;
}

function compatCell(c: MigrationCompatibility): string {
  if (c.declaredExpand) return `expand, declared: ${cell(c.declaredExpand)}`;
  if (c.compatibility === "expand") return "expand";
  return c.acknowledged ? `**contract**, acknowledged: ${cell(c.acknowledged)}` : "**contract**";
}

/** Each contract migration's breaking statements, then those a `-- pgstack:expand` declaration overrules; nothing when none. */
function renderCompatibility(plan: Plan, compat: MigrationCompatibility[]): string[] {
  const named = plan.pending.map((p, i) => ({ name: p.name, ...compat[i] }));
  const declared = named.filter((c) => c.declaredExpand && c.reasons.length > 0);
  const overruled: string[] = [];
  if (declared.length > 0) {
    overruled.push(
      "#### Declared expand",
      "",
      "Their authors declare these migrations safe for the running version (`-- pgstack:expand <why>`), so they run before the rollout; pgstack found these statements that can make that version fail:",
      "",
      "| migration | line | rule | statement | why |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const c of declared) {
      for (const r of c.reasons) overruled.push(`| \`${c.name}\` | ${r.line} | \`${r.rule}\` | \`${cell(r.statement).replace(/`/g, "'")}\` | ${cell(r.reason)} |`);
    }
    overruled.push("");
  }
  return [...contractLines(named), ...overruled];
}

function contractLines(named: (MigrationCompatibility & { name: string })[]): string[] {
  const contract = named.filter((c) => c.compatibility === "contract");
  if (contract.length === 0) return [];
  const lines = [
    "#### Contract migrations",
    "",
    `${contractSentence(contract.length)} Each statement below can make that version fail:`,
    "",
    "| migration | line | rule | statement | why |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const c of contract) {
    for (const r of c.reasons) lines.push(`| \`${c.name}\` | ${r.line} | \`${r.rule}\` | \`${cell(r.statement).replace(/`/g, "'")}\` | ${cell(r.reason)} |`);
  }
  lines.push("");
  return lines;
}
