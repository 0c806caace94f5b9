import type { Severity } from "./findings";

export type RuleSeverity = Severity | "ignored";

export interface RuleSpec {
  severity: RuleSeverity;
  /**
   * The hazard exists only for a table that already has rows and readers: a
   * finding on a table created earlier in the same file is dropped.
   */
  existingTablesOnly?: boolean;
  /** Why pgstack classifies it this way. */
  why: string;
  /** The fix, where Squawk's finding has no help text of its own. */
  help?: string;
}

/**
 * Every rule squawk-cli 2.66.0 can report, and what pgstack makes of it.
 * pgstack decides what blocks a deploy: a blocking lock on an existing table,
 * or destroyed data. Squawk's own level ("Warning" for all of these) is not
 * used. Squawk runs with --assume-in-transaction for every file pgstack wraps
 * in a transaction, so its transaction-aware rules see what really happens.
 */
export const SQUAWK_RULES: Record<string, RuleSpec> = {
  // Blocking locks on existing tables.
  "require-concurrent-index-creation": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "CREATE INDEX without CONCURRENTLY holds a SHARE lock that blocks every write for the whole index build.",
  },
  "require-concurrent-index-deletion": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table, blocking reads and writes.",
  },
  "constraint-missing-not-valid": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "A CHECK/FOREIGN KEY/UNIQUE added without NOT VALID, or validated in the same transaction that added it, scans the table under a lock that blocks writes (or reads).",
  },
  "adding-foreign-key-constraint": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "FOREIGN KEY without NOT VALID scans the table under SHARE ROW EXCLUSIVE on both tables.",
  },
  "adding-field-with-default": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "A volatile default or a stored generated column rewrites the whole table under ACCESS EXCLUSIVE.",
  },
  "adding-required-field": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "ADD COLUMN ... NOT NULL without a default fails on a table that has rows.",
  },
  "adding-not-nullable-field": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "SET NOT NULL scans the table under ACCESS EXCLUSIVE unless a validated CHECK (col IS NOT NULL) proves it first.",
  },
  "adding-serial-primary-key-field": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "ADD PRIMARY KEY builds its index under ACCESS EXCLUSIVE.",
  },
  "disallowed-unique-constraint": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "ADD UNIQUE builds its index under ACCESS EXCLUSIVE.",
  },
  "changing-column-type": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "ALTER COLUMN TYPE rewrites the table under ACCESS EXCLUSIVE and breaks clients reading the column.",
    help: "Add a column of the new type, backfill it in batches, move the application to it, then drop the old one later.",
  },
  "renaming-column": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "The running application still uses the old name until its new version is out.",
    help: "Add the new column alongside, keep both in sync while the application moves over, then drop the old one later.",
  },
  "renaming-table": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "The running application still uses the old name until its new version is out.",
    help: "Rename it and leave a view with the old name until the application has moved over.",
  },
  "require-concurrent-reindex": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "REINDEX without CONCURRENTLY blocks reads and writes while it rebuilds.",
  },
  "require-concurrent-partition-detach": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the parent table.",
  },
  "prefer-repack": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "CLUSTER and VACUUM FULL rewrite the table under ACCESS EXCLUSIVE (Squawk only reports it for PostgreSQL 19+).",
  },
  "ban-alter-domain-with-add-constraint": {
    severity: "blocking",
    why: "ALTER DOMAIN ADD CONSTRAINT checks every column of that domain in every table, under lock.",
  },

  // Destroyed data.
  "ban-drop-table": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "DROP TABLE destroys the table's data.",
    help: "Once no released code reads it, drop it and accept the loss with `-- pgstack:allow ban-drop-table <reason>`.",
  },
  "ban-drop-column": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "DROP COLUMN destroys the column's data.",
    help: "Once no released code reads it, drop it and accept the loss with `-- pgstack:allow ban-drop-column <reason>`.",
  },
  "ban-drop-database": { severity: "blocking", why: "DROP DATABASE destroys a whole database.", help: "Drop databases outside migrations." },
  "ban-truncate-cascade": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "TRUNCATE ... CASCADE also empties every table with a foreign key to it.",
  },

  // Things that break pgstack's own transaction handling.
  "transaction-nesting": {
    severity: "blocking",
    why: "Raised only when a BEGIN nests inside another: a file with its own BEGIN/COMMIT runs as written (pgstack wraps nothing around it), so Squawk is not told to assume a transaction for it.",
  },
  "ban-uncommitted-transaction": {
    severity: "blocking",
    why: "A BEGIN without COMMIT leaves the migration's work uncommitted.",
  },

  // Style and compatibility: worth knowing, never a reason to stop a deploy.
  "prefer-bigint-over-int": { severity: "warning", why: "Style: a 32-bit key can run out." },
  "prefer-bigint-over-smallint": { severity: "warning", why: "Style: a 16-bit key can run out." },
  "prefer-identity": { severity: "warning", why: "Style: serial types are harder to manage than identity columns." },
  "prefer-text-field": { severity: "warning", why: "Style: a later varchar length change needs ACCESS EXCLUSIVE; this statement itself is harmless." },
  "prefer-timestamp-tz": { severity: "warning", why: "Style: timestamp without time zone drops the offset (Prisma's DateTime default)." },
  "ban-char-field": { severity: "warning", why: "Style: char(n) pads with spaces." },
  "ban-drop-not-null": { severity: "warning", why: "Compatibility: readers may start seeing NULLs; no lock hazard and no data lost." },
  "ban-create-domain-with-constraint": { severity: "warning", why: "A new object: changing its constraint later is the hard part." },
  "require-enum-value-ordering": { severity: "warning", why: "Style: ADD VALUE without BEFORE/AFTER appends to the enum's order." },
  "identifier-too-long": { severity: "warning", why: "PostgreSQL silently truncates names over 63 bytes." },
  "require-table-schema": { severity: "warning", why: "Opt-in style rule (not enabled by pgstack)." },
  "prefer-robust-stmts": {
    severity: "warning",
    why: "Squawk raises it only for files run outside pgstack's transaction (statement by statement, or as written); pgstack resumes such a file at the failed statement, but a statement interrupted by a crash may run again.",
  },
  "unused-ignore": { severity: "warning", why: "A `-- squawk-ignore` comment that ignores nothing (pgstack:allow is the way to accept findings)." },
  "syntax-error": {
    severity: "warning",
    why: "Squawk's own parser disagrees with PostgreSQL's; PostgreSQL's parser is the judge (pgstack's invalid-sql blocks), so this only means Squawk could not check that statement.",
  },

  // Answered by pgstack itself.
  "require-timeout-settings": { severity: "ignored", why: "pgstack sets lock_timeout and statement_timeout for every migration session." },
  "require-lock-timeout": { severity: "ignored", why: "pgstack sets lock_timeout for every migration session (and retries on timeout)." },
  "require-statement-timeout": { severity: "ignored", why: "pgstack sets statement_timeout for every migration session." },
  "ban-concurrent-index-creation-in-transaction": {
    severity: "ignored",
    why: "Reported by pgstack's concurrently-in-transaction, which also covers DROP INDEX, REINDEX and DETACH PARTITION CONCURRENTLY.",
  },
};

/** Checks Squawk does not have, done by pgstack on PostgreSQL's own parse tree. */
export const PGSTACK_RULES: Record<string, RuleSpec> = {
  "concurrently-in-transaction": {
    severity: "blocking",
    why: "CONCURRENTLY cannot run inside a transaction block: the deploy would fail unless the file starts with -- pgstack:no-transaction.",
  },
  "ban-truncate": { severity: "blocking", existingTablesOnly: true, why: "TRUNCATE destroys every row (Squawk only flags TRUNCATE ... CASCADE)." },
  "ban-delete-without-where": { severity: "blocking", existingTablesOnly: true, why: "DELETE without WHERE destroys every row." },
  "update-without-where": {
    severity: "warning",
    existingTablesOnly: true,
    why: "UPDATE without WHERE rewrites every row of an existing table and holds all their row locks until the migration commits; a backfill Prisma generates often is one, so it warns.",
  },
  "lock-table": {
    severity: "blocking",
    existingTablesOnly: true,
    why: "An explicit LOCK TABLE in SHARE mode or stronger blocks the application's writes (ACCESS EXCLUSIVE, the default, also its reads) until the migration commits.",
  },
  "nonstandard-folder-name": {
    severity: "warning",
    why: "Prisma and pgstack apply any folder name, in Prisma's order (localeCompare); a name that is not <14-digit timestamp>_<name> may sort where nobody expects.",
  },
  "rollback-discards-migration": {
    severity: "warning",
    why: "A file whose own ROLLBACK discards its work is recorded applied (as Prisma records it) though it changed nothing.",
  },
  "ddl-in-do-block": {
    severity: "warning",
    why: "Lint cannot see inside a DO block's body: DDL there on an existing table takes its locks unchecked.",
  },
  "invalid-sql": { severity: "blocking", why: "PostgreSQL's parser rejects the file: the deploy would fail." },
  "applied-migration-edited": {
    severity: "blocking",
    why: "The file no longer matches what ran on the database; the deploy refuses it.",
  },
  "allow-without-reason": { severity: "blocking", why: "Every accepted finding needs a reason a reviewer can read." },
  "squawk-ignore-comment": {
    severity: "blocking",
    why: "Squawk's own ignore comments hide findings without a reason; use -- pgstack:allow <rule> <reason>.",
  },
  "unused-allow": { severity: "warning", why: "A pgstack:allow comment that accepts nothing is stale or misspelt." },
};

/** Squawk accepts both spellings of this rule in ignore comments; so does pgstack:allow. */
export const RULE_ALIASES: Record<string, string> = { "prefer-timestamptz": "prefer-timestamp-tz" };

/** Squawk rules pgstack answers itself: not even run. */
export const SQUAWK_EXCLUDED = Object.entries(SQUAWK_RULES)
  .filter(([, spec]) => spec.severity === "ignored")
  .map(([name]) => name);

/**
 * A rule Squawk adds in a later version is blocking until someone classifies
 * it here: squawk-cli is pinned, so this shows up in the upgrade's own PR.
 */
export function squawkRule(name: string): RuleSpec {
  return (
    SQUAWK_RULES[name] ?? {
      severity: "blocking",
      why: "Not classified by pgstack yet.",
    }
  );
}

export function canonicalRule(name: string): string {
  return RULE_ALIASES[name] ?? name;
}
