/** What `pgstack lint` reports; also what `pgstack plan` shows per migration. */
export type Severity = "blocking" | "warning";

export interface LintFinding {
  /** Migration folder name (or the file name for a loose .sql file). */
  migration: string;
  /** Path of the SQL file, relative to the working directory when inside it. */
  file: string;
  /** 1-based line and column (in characters) of the offending SQL. */
  line: number;
  column: number;
  rule: string;
  message: string;
  help: string | null;
  severity: Severity;
  /** Squawk's rule, or one pgstack adds where Squawk has none. */
  source: "squawk" | "pgstack";
  /** Accepted with `-- pgstack:allow <rule> <reason>`; does not affect the exit code. */
  suppressed?: { reason: string };
}

export interface LintReport {
  findings: LintFinding[];
  /** Unsuppressed blocking findings: any makes `pgstack lint` fail. */
  blocking: number;
  /** Unsuppressed warnings. */
  warnings: number;
  /** Findings accepted with a reason. */
  suppressed: number;
}

export function summarize(findings: LintFinding[]): LintReport {
  const sorted = [...findings].sort(compareFindings);
  return {
    findings: sorted,
    blocking: sorted.filter((f) => !f.suppressed && f.severity === "blocking").length,
    warnings: sorted.filter((f) => !f.suppressed && f.severity === "warning").length,
    suppressed: sorted.filter((f) => f.suppressed).length,
  };
}

function compareFindings(a: LintFinding, b: LintFinding): number {
  return (
    cmp(a.migration, b.migration) || cmp(a.file, b.file) || a.line - b.line || a.column - b.column || cmp(a.rule, b.rule)
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
