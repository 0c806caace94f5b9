/**
 * compat: classifies every migration of Prisma histories (folders of
 * <name>/migration.sql, read from disk: no network) and checks the issue-24
 * promise: every statement that drops a column, renames, changes a column's
 * type or sets NOT NULL is in a migration classified `contract`, with a reason
 * at that statement's line.
 *
 *   npm run bench -- compat <migrations dir>... [--list <rule|all>]
 *
 * Prints per history: migrations, expand/contract, the four counts with how
 * many of them are contract, misses (none expected), and the reasons by rule.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { classifyMigration, type MigrationCompatibility } from "../infra/core/compat";
import { loadSqlParser, SourceFile } from "../infra/core/lint/source";
import { BenchSetupError } from "./lib/common";

export const PATTERNS = {
  "DROP COLUMN": /\bDROP\s+COLUMN\b/i,
  RENAME: /\bRENAME\b/i,
  "ALTER ... TYPE": /\bALTER\s+(COLUMN\s+)?("[^"]+"|\w+)\s+(SET\s+DATA\s+)?TYPE\b/i,
  "SET NOT NULL": /\bSET\s+NOT\s+NULL\b/i,
} as const;
export type Pattern = keyof typeof PATTERNS;

export interface Hit {
  migration: string;
  line: number;
  statement: string;
  pattern: Pattern;
  /** The rule of the reason at that line; undefined when the statement got none. */
  rule?: string;
}

export interface HistoryCount {
  dir: string;
  migrations: number;
  expand: number;
  contract: number;
  /** Per pattern: statements containing it, how many carry a contract reason, how many are in a contract migration. */
  patterns: Record<Pattern, { statements: number; contract: number; inContractMigration: number }>;
  hits: Hit[];
  /** Reasons by rule, over the whole history. */
  rules: Record<string, number>;
  results: { migration: string; result: MigrationCompatibility }[];
}

/** Classifies every `<dir>/<name>/migration.sql`, in name order. */
export async function countHistory(dir: string): Promise<HistoryCount> {
  await loadSqlParser();
  const names = (await fs.readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort((a, b) => a.localeCompare(b));
  const count: HistoryCount = {
    dir,
    migrations: 0,
    expand: 0,
    contract: 0,
    patterns: Object.fromEntries(Object.keys(PATTERNS).map((p) => [p, { statements: 0, contract: 0, inContractMigration: 0 }])) as HistoryCount["patterns"],
    hits: [],
    rules: {},
    results: [],
  };
  for (const name of names) {
    let sql: string;
    try {
      sql = await fs.readFile(path.join(dir, name, "migration.sql"), "utf8");
    } catch {
      continue;
    }
    const result = await classifyMigration(sql);
    count.migrations++;
    count[result.compatibility]++;
    count.results.push({ migration: name, result });
    for (const r of result.reasons) count.rules[r.rule] = (count.rules[r.rule] ?? 0) + 1;
    // Pattern search on each statement's code tokens only: comments and string contents do not count.
    const source = new SourceFile(sql);
    for (const statement of source.statements) {
      const code = source.tokens
        .filter((t) => !t.comment && t.start >= statement.start && t.start < statement.end && !t.text.startsWith("'") && !t.text.startsWith("$"))
        .map((t) => t.text)
        .join(" ");
      const line = source.position(statement.start).line;
      for (const [pattern, re] of Object.entries(PATTERNS) as [Pattern, RegExp][]) {
        if (!re.test(code)) continue;
        const rule = result.reasons.find((r) => r.line === line)?.rule;
        count.patterns[pattern].statements++;
        if (rule) count.patterns[pattern].contract++;
        if (result.compatibility === "contract") count.patterns[pattern].inContractMigration++;
        count.hits.push({ migration: name, line, statement: code.slice(0, 160), pattern, rule });
      }
    }
  }
  return count;
}

export async function compatBench(argv: string[]): Promise<void> {
  const listIdx = argv.indexOf("--list");
  const list = listIdx >= 0 ? argv[listIdx + 1] : undefined;
  const dirs = argv.filter((_, i) => listIdx < 0 || (i !== listIdx && i !== listIdx + 1));
  if (dirs.length === 0) throw new BenchSetupError("usage: npm run bench -- compat <migrations dir>... [--list <rule|all>]: give the folders holding <name>/migration.sql.");
  for (const dir of dirs) {
    const ok = await fs.stat(dir).then((st) => st.isDirectory(), () => false);
    if (!ok) throw new BenchSetupError(`${dir} is not a folder: give the migrations folder of a Prisma history (holding <name>/migration.sql).`);
  }
  const out: string[] = [];
  for (const dir of dirs) {
    const c = await countHistory(dir);
    out.push(`## ${dir}`, "", `${c.migrations} migrations: ${c.expand} expand, ${c.contract} contract`, "");
    out.push("| statements containing | found | with a contract reason | in a contract migration |", "| --- | --- | --- | --- |");
    for (const [p, v] of Object.entries(c.patterns)) out.push(`| ${p} | ${v.statements} | ${v.contract} | ${v.inContractMigration} |`);
    out.push("", "Reasons by rule: " + Object.entries(c.rules).sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r} ${n}`).join(", "), "");
    const misses = c.hits.filter((h) => !h.rule);
    out.push(`Statements found without a contract reason: ${misses.length}`);
    const classOf = new Map(c.results.map((r) => [r.migration, r.result.compatibility]));
    for (const m of misses) out.push(`- ${m.migration}:${m.line} [${m.pattern}] (migration ${classOf.get(m.migration)}) ${m.statement}`);
    if (list) {
      out.push("", `Reasons of rule ${list}:`);
      for (const { migration, result } of c.results) for (const r of result.reasons) if (list === "all" || r.rule === list) out.push(`- ${migration}:${r.line} ${r.rule} ${r.statement}`);
    }
    out.push("");
  }
  process.stdout.write(out.join("\n") + "\n");
}
