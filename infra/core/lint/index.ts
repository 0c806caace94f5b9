import { promises as fs } from "node:fs";
import * as path from "node:path";
import { PgstackError } from "../errors";
import { checksumOf } from "../migrations/checksum";
import { discoverMigrations, hasNoTransactionMarker, MIGRATION_NAME_PATTERN, type Migration } from "../migrations/discover";
import { executionModeOf } from "../migrations/mode";
import { splitStatements } from "../migrations/sql";
import type { MigrationStatus } from "../migrations/status";
import { pgstackChecks, type RawFinding } from "./checks";
import { summarize, type LintFinding, type LintReport } from "./findings";
import { PGSTACK_RULES, SQUAWK_RULES, squawkRule, type RuleSpec } from "./rules";
import { findNodes, loadSqlParser, onlyNewObjects, SourceFile } from "./source";
import { runSquawk, squawkBinary } from "./squawk";
import { applySuppressions, type LocatedFinding } from "./suppress";

export type { LintFinding, LintReport, Severity } from "./findings";
export { PGSTACK_RULES, SQUAWK_RULES } from "./rules";

export interface LintOptions {
  /** Paths in findings are shown relative to this folder (default: the working directory). */
  cwd?: string;
  /** The Squawk binary (default: the one from squawk-cli's platform package). */
  squawkBinary?: string;
  /**
   * Every migration's state from the ledger, when a database is at hand:
   * applied migrations edited since are reported too.
   */
  status?: MigrationStatus[];
  /** Squawk processes run at once. */
  concurrency?: number;
}

/**
 * Lints migrations with Squawk plus pgstack's own checks, and classifies every
 * finding as blocking or warning (see rules.ts). Pure with respect to the
 * database: drift comes in through `options.status`.
 */
export async function lintMigrations(migrations: Migration[], options: LintOptions = {}): Promise<LintReport> {
  const cwd = options.cwd ?? process.cwd();
  const findings: LintFinding[] = [];
  if (migrations.length > 0) {
    const binary = options.squawkBinary ?? squawkBinary();
    await loadSqlParser();
    const perFile = await mapLimit(migrations, options.concurrency ?? 8, (m) => lintOne(m, binary, cwd));
    findings.push(...perFile.flat());
  }
  if (options.status) {
    const linted = new Set(migrations.map((m) => m.name));
    findings.push(...driftFindings(options.status.filter((s) => linted.has(s.name)), { cwd }));
  }
  return summarize(findings);
}

/**
 * Applied migrations whose file changed since they ran (state `drifted` in
 * computeStatus): the deploy refuses them, so lint says so first.
 */
export function driftFindings(status: MigrationStatus[], options: { cwd?: string } = {}): LintFinding[] {
  const cwd = options.cwd ?? process.cwd();
  return status
    .filter((s) => s.state === "drifted")
    .map((s) => ({
      migration: s.name,
      file: displayPath(s.migration?.sqlPath ?? path.join(s.name, "migration.sql"), cwd),
      line: 1,
      column: 1,
      rule: "applied-migration-edited",
      message: `Migration ${s.name} was applied to the database${s.appliedAt ? ` on ${s.appliedAt.toISOString()}` : ""} and its migration.sql has changed since.`,
      help: "Restore the original migration.sql from version control and put the change in a new migration.",
      severity: "blocking" as const,
      source: "pgstack" as const,
    }));
}

/** The one-sentence failure for a report with unaccepted blocking findings. */
export function lintError(report: LintReport): PgstackError | undefined {
  if (report.blocking === 0) return undefined;
  const names = [...new Set(report.findings.filter((f) => !f.suppressed && f.severity === "blocking").map((f) => f.migration))];
  const where = names.length <= 3 ? `${names.length > 1 ? "migrations" : "migration"} ${names.join(", ")}` : `${names.length} migrations`;
  return new PgstackError(
    "E_LINT",
    `${report.blocking} blocking finding(s) in ${where}: fix them, or accept each with \`-- pgstack:allow <rule> <reason>\` on the line before it.`,
    { blocking: report.blocking, migrations: names },
  );
}

async function lintOne(m: Migration, binary: string, cwd: string): Promise<LintFinding[]> {
  const source = new SourceFile(m.sql);
  // Lint sees the file the way the runner will run it (see migrations/mode.ts).
  const inTransaction = source.syntaxError ? !m.noTransaction : executionModeOf(m, splitStatements(m.sql, m.name)) === "transaction";
  const file = displayPath(m.sqlPath, cwd);
  const violations = await runSquawk(m.sql, { binary, assumeInTransaction: inTransaction, displayPath: file });

  const located: (LocatedFinding & { spec: RuleSpec; source: "squawk" | "pgstack" })[] = [];
  const add = (raw: RawFinding, spec: RuleSpec, origin: "squawk" | "pgstack") => {
    if (spec.severity === "ignored") return;
    // Objects created in this same migration are not "existing": nobody
    // reads them yet, so locking or emptying them costs nothing.
    const statement = source.statementAt(raw.byte);
    if (spec.existingTablesOnly && statement && onlyNewObjects(statement)) return;
    located.push({ ...raw, line: source.position(raw.byte).line, spec, source: origin });
  };

  const foreignKeyFlagged = new Set(
    violations.filter((v) => v.rule_name === "adding-foreign-key-constraint").map((v) => source.statementAt(source.byteAt(v.line, v.column))),
  );
  for (const v of violations) {
    // PostgreSQL's parser is the judge of syntax; Squawk's repeat is noise.
    if (v.rule_name === "syntax-error" && source.syntaxError) continue;
    if (v.rule_name === "constraint-missing-not-valid") {
      const statement = source.statementAt(source.byteAt(v.line, v.column));
      // One finding per foreign key; and NOT VALID is no advice for UNIQUE or
      // PRIMARY KEY, which PostgreSQL refuses to add NOT VALID.
      if (statement && (foreignKeyFlagged.has(statement) || addsOnlyKeyConstraints(statement.node))) continue;
    }
    const spec = squawkRule(v.rule_name);
    const help =
      v.rule_name in SQUAWK_RULES
        ? (v.help ?? spec.help)
        : `pgstack does not classify Squawk rule ${v.rule_name} yet, so it blocks: add it to infra/core/lint/rules.ts.`;
    add({ rule: v.rule_name, byte: source.byteAt(v.line, v.column), message: v.message, help: help ?? null }, spec, "squawk");
  }
  if (source.syntaxError) {
    add(
      {
        rule: "invalid-sql",
        byte: source.syntaxError.byte,
        message: `PostgreSQL cannot parse this migration: ${source.syntaxError.message}.`,
        help: "Fix the SQL: the deploy would stop here.",
      },
      PGSTACK_RULES["invalid-sql"],
      "pgstack",
    );
  }
  for (const raw of pgstackChecks(source, inTransaction)) add(raw, PGSTACK_RULES[raw.rule], "pgstack");
  if (path.basename(m.sqlPath) === "migration.sql" && !MIGRATION_NAME_PATTERN.test(m.name)) {
    add(
      {
        rule: "nonstandard-folder-name",
        byte: 0,
        message: `Folder '${m.name}' is not <14-digit timestamp>_<name>; it runs in Prisma's order (localeCompare) among the others.`,
        help: "Name new migrations as `prisma migrate dev` does; never rename one that ran (its ledger row is keyed by the name).",
      },
      PGSTACK_RULES["nonstandard-folder-name"],
      "pgstack",
    );
  }
  for (const raw of applySuppressions(source, located)) add(raw, PGSTACK_RULES[raw.rule], "pgstack");

  return located.map((f) => {
    const { line, column } = source.position(f.byte);
    return {
      migration: m.name,
      file,
      line,
      column,
      rule: f.rule,
      message: f.message,
      help: f.help,
      severity: f.spec.severity === "blocking" ? "blocking" : "warning",
      source: f.source,
      ...(f.suppressed ? { suppressed: f.suppressed } : {}),
    };
  });
}

/** True when every constraint the statement adds is UNIQUE or PRIMARY KEY (an index-backed key). */
function addsOnlyKeyConstraints(node: unknown): boolean {
  const constraints = findNodes(node, "Constraint").map(({ value }) => value.contype);
  return constraints.length > 0 && constraints.every((c) => c === "CONSTR_UNIQUE" || c === "CONSTR_PRIMARY");
}

/**
 * The migrations `pgstack lint <paths>` names: migration folders, .sql files,
 * or a whole migrations folder.
 */
export async function migrationsAt(paths: string[], cwd = process.cwd()): Promise<Migration[]> {
  const found = new Map<string, Migration>();
  for (const p of paths) {
    const full = path.resolve(cwd, p);
    const stat = await fs.stat(full).catch(() => undefined);
    if (!stat) throw new PgstackError("E_USAGE", `'${p}' does not exist: pass migration folders or .sql files.`);
    let list: Migration[];
    if (stat.isDirectory()) {
      const sqlPath = path.join(full, "migration.sql");
      const hasSql = await fs
        .stat(sqlPath)
        .then((s) => s.isFile())
        .catch(() => false);
      list = hasSql ? [await migrationFromFile(sqlPath)] : await discoverMigrations(full);
    } else if (stat.isFile() && full.toLowerCase().endsWith(".sql")) {
      list = [await migrationFromFile(full)];
    } else {
      throw new PgstackError("E_USAGE", `'${p}' is neither a migration folder nor a .sql file: pass migration folders or .sql files.`);
    }
    for (const m of list) found.set(m.sqlPath, m);
  }
  return [...found.values()];
}

/** A Migration for any .sql file; named after its folder when that is a migration folder. */
export async function migrationFromFile(sqlPath: string): Promise<Migration> {
  const bytes = await fs.readFile(sqlPath);
  const sql = bytes.toString("utf8");
  const folder = path.basename(path.dirname(sqlPath));
  // Any folder holding a migration.sql is a migration, as for Prisma.
  const named = path.basename(sqlPath) === "migration.sql";
  const name = named ? folder : path.basename(sqlPath);
  return {
    name,
    slug: (named && MIGRATION_NAME_PATTERN.exec(folder)?.[2]) || name,
    dir: path.dirname(sqlPath),
    sqlPath,
    bytes,
    sql,
    checksum: checksumOf(bytes),
    noTransaction: hasNoTransactionMarker(sql),
  };
}

function displayPath(file: string, cwd: string): string {
  const rel = path.relative(cwd, file);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : file;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}
