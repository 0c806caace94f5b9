import type { RawFinding } from "./checks";
import { canonicalRule, PGSTACK_RULES, SQUAWK_RULES } from "./rules";
import type { SourceFile } from "./source";

export const ALLOW_PREFIX = "pgstack:allow";

/**
 * Rules a comment cannot accept: the deploy would fail or refuse anyway, or
 * they are about the comments themselves.
 */
const UNSUPPRESSIBLE = new Set([
  "invalid-sql",
  "concurrently-in-transaction",
  "applied-migration-edited",
  "allow-without-reason",
  "squawk-ignore-comment",
  "unused-allow",
]);

interface Allow {
  byte: number;
  line: number;
  rule: string;
  reason: string;
  used: boolean;
}

/** A finding located in the file, as the suppression pass needs it. */
export interface LocatedFinding extends RawFinding {
  line: number;
  suppressed?: { reason: string };
}

/**
 * Marks each finding accepted by a `-- pgstack:allow <rule> <reason>` comment
 * in the comment lines right above it (or right above its statement, so one
 * comment covers a finding deep inside a multi-line statement), and returns
 * the findings about the comments themselves: no reason, or accepting nothing.
 */
export function applySuppressions(source: SourceFile, findings: LocatedFinding[]): RawFinding[] {
  const problems: RawFinding[] = [];
  const allows: Allow[] = [];
  for (const t of source.tokens) {
    if (!t.comment || !t.text.startsWith("--")) continue;
    const body = t.text.slice(2).trim();
    if (!(body === ALLOW_PREFIX || body.startsWith(ALLOW_PREFIX + " ") || body.startsWith(ALLOW_PREFIX + "\t"))) continue;
    const rest = body.slice(ALLOW_PREFIX.length).trim();
    const [rule = "", ...words] = rest.split(/\s+/).filter(Boolean);
    const reason = words.join(" ");
    if (!rule || !reason) {
      problems.push({
        rule: "allow-without-reason",
        byte: t.start,
        message: rule
          ? `\`-- pgstack:allow ${rule}\` gives no reason: write why this is safe after the rule name.`
          : "`-- pgstack:allow` names no rule and gives no reason: write `-- pgstack:allow <rule> <reason>`.",
        help: "For example: `-- pgstack:allow ban-drop-column legacy_flag is unused since v2.3 (see #123)`.",
      });
      continue;
    }
    allows.push({ byte: t.start, line: source.position(t.start).line, rule: canonicalRule(rule), reason, used: false });
  }
  if (allows.length === 0) return problems;

  const commentOnly = source.commentOnlyLines();
  const above = (line: number) => {
    const lines: number[] = [];
    for (let l = line - 1; commentOnly.has(l); l--) lines.push(l);
    return lines;
  };
  for (const finding of findings) {
    if (UNSUPPRESSIBLE.has(finding.rule)) continue;
    const statement = source.statementAt(finding.byte);
    const lines = new Set([...above(finding.line), ...(statement ? above(source.position(statement.start).line) : [])]);
    const allow = allows.find((a) => lines.has(a.line) && a.rule === finding.rule);
    if (allow) {
      allow.used = true;
      finding.suppressed = { reason: allow.reason };
    }
  }
  for (const a of allows.filter((x) => !x.used)) {
    const known = a.rule in SQUAWK_RULES || a.rule in PGSTACK_RULES;
    problems.push({
      rule: "unused-allow",
      byte: a.byte,
      message: !known
        ? `\`-- pgstack:allow ${a.rule}\` names no rule pgstack knows.`
        : UNSUPPRESSIBLE.has(a.rule)
          ? `\`-- pgstack:allow ${a.rule}\` cannot accept that rule: fix the SQL instead.`
          : `\`-- pgstack:allow ${a.rule}\` accepts nothing: no ${a.rule} finding follows it.`,
      help: "Put the comment on the line right before the statement it accepts, or remove it.",
    });
  }
  return problems;
}
