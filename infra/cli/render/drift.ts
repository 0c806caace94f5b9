import type { CheckResult, DriftedObject } from "../../core/verify";

/** The drifted objects of a drift check's details. */
export function driftObjects(check: CheckResult): DriftedObject[] {
  return (check.details.objects ?? []) as DriftedObject[];
}

/** Each drifted object and the DDL that reproduces it, indented under a check's line. Pure. */
export function driftLines(check: CheckResult, indent = "      "): string[] {
  const out: string[] = [];
  for (const o of driftObjects(check)) {
    out.push(`${indent}${o.allowed ? "allowed " : ""}${o.class} ${o.kind} ${o.name} (${o.how}):`);
    for (const s of o.ddl) out.push(s.split("\n").map((l) => `${indent}  ${l}`).join("\n"));
  }
  return out;
}

/** The PR comment's drift section: the check's sentence, then each object with its DDL. Pure. */
export function renderDriftMarkdown(check: CheckResult): string {
  const objects = driftObjects(check);
  const lines = ["#### Drift", ""];
  if (check.status === "pass" && objects.length === 0) {
    lines.push(`No drift: ${check.sentence}`);
    return lines.join("\n");
  }
  lines.push(`**${check.status === "fail" ? "Failing" : check.status === "warn" ? "Warning" : "Allowed"}:** ${check.details.sentence ?? check.sentence}`.replace(/\n/g, " "), "");
  for (const o of objects) {
    lines.push(`- ${o.allowed ? "(allowed) " : ""}**${o.class}** ${o.kind} \`${o.name}\` (${o.how}):`, "", "  ```sql", ...o.ddl.flatMap((s) => s.split("\n").map((l) => `  ${l}`)), "  ```", "");
  }
  return lines.join("\n").trimEnd();
}
