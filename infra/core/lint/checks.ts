import type { Node } from "libpg-query";
import { findNodes, type ObjectName, type ParsedStatement, type SourceFile } from "./source";

/** A finding before it is tied to a migration: rule, byte offset, words. */
export interface RawFinding {
  rule: string;
  byte: number;
  message: string;
  help: string | null;
}

/**
 * pgstack's own checks, for what Squawk 2.66 has no rule for, all on
 * PostgreSQL's parse tree: TRUNCATE, DELETE without WHERE, CONCURRENTLY inside
 * pgstack's transaction, and Squawk's reason-less ignore comments.
 */
export function pgstackChecks(source: SourceFile, inTransaction: boolean): RawFinding[] {
  const findings: RawFinding[] = [];
  for (const statement of source.statements) {
    findings.push(...destructive(statement));
    findings.push(...locking(statement));
    if (inTransaction) {
      const what = concurrentOperation(statement.node);
      if (what) {
        const token = source.tokens.find((t) => t.keyword === "CONCURRENTLY" && t.start >= statement.start && t.start < statement.end);
        findings.push({
          rule: "concurrently-in-transaction",
          byte: token?.start ?? statement.start,
          message: `${what} CONCURRENTLY cannot run inside a transaction block, and pgstack runs this migration in one, so the deploy would fail.`,
          help: "Make `-- pgstack:no-transaction` the first line of this migration.sql, with the CONCURRENTLY statements alone in it.",
        });
      }
    }
  }
  const last = source.statements[source.statements.length - 1] as ParsedStatement | undefined;
  const lastKind = (last?.node as { TransactionStmt?: { kind?: string } } | undefined)?.TransactionStmt?.kind;
  if (last && (lastKind === "TRANS_STMT_ROLLBACK" || lastKind === "TRANS_STMT_ROLLBACK_TO")) {
    findings.push({
      rule: "rollback-discards-migration",
      byte: last.start,
      message: "The file ends in ROLLBACK: its last transaction is discarded, yet the migration is recorded applied (by Prisma too).",
      help: "Remove the dry run from the history, or end the transaction with COMMIT if the change is wanted.",
    });
  }
  for (const t of source.tokens) {
    if (t.comment && /^(--|\/\*)\s*squawk-ignore/.test(t.text)) {
      findings.push({
        rule: "squawk-ignore-comment",
        byte: t.start,
        message: "Squawk's ignore comments hide findings without saying why.",
        help: "Replace it with `-- pgstack:allow <rule> <reason>` on the line before the statement.",
      });
    }
  }
  return findings;
}

function destructive(statement: ParsedStatement): RawFinding[] {
  const node = statement.node;
  if ("TruncateStmt" in node) {
    return [
      {
        rule: "ban-truncate",
        byte: statement.start,
        message: `TRUNCATE deletes every row of ${names(statement.targets)}.`,
        help: "Delete only the rows you mean to (DELETE ... WHERE), or keep the data elsewhere first.",
      },
    ];
  }
  // A DELETE may also hide in a WITH clause; each one without WHERE counts.
  return findNodes(node, "DeleteStmt")
    .filter(({ value }) => value.whereClause === undefined)
    .map(({ value, path }) => {
      const relation = value.relation as { relname?: string; schemaname?: string; location?: number } | undefined;
      const target = relation?.relname ? [{ schema: relation.schemaname, name: relation.relname }] : [];
      return {
        rule: "ban-delete-without-where",
        byte: path.length === 0 ? statement.start : (relation?.location ?? statement.start),
        message: `DELETE without WHERE deletes every row of ${names(target)}.`,
        help: "Add a WHERE clause naming the rows to delete.",
      };
    });
}

/** LOCK TABLE (SHARE or stronger), UPDATE without WHERE, DDL hidden in a DO block. */
function locking(statement: ParsedStatement): RawFinding[] {
  const node = statement.node as unknown as Record<string, Record<string, unknown>>;
  const findings: RawFinding[] = [];
  if (node.LockStmt && Number(node.LockStmt.mode ?? 8) >= SHARE_LOCK) {
    findings.push({
      rule: "lock-table",
      byte: statement.start,
      message: `LOCK TABLE ${names(statement.targets)} in ${LOCK_MODES[Number(node.LockStmt.mode ?? 8)]} mode blocks the application's writes${Number(node.LockStmt.mode ?? 8) === 8 ? " and reads" : ""} until the migration commits.`,
      help: "Leave locking to the statements that need it, with pgstack's lock_timeout; or accept it with `-- pgstack:allow lock-table <reason>`.",
    });
  }
  if (node.UpdateStmt && node.UpdateStmt.whereClause === undefined) {
    findings.push({
      rule: "update-without-where",
      byte: statement.start,
      message: `UPDATE without WHERE rewrites every row of ${names(statement.targets)} in one transaction.`,
      help: "On a large table, backfill in batches (WHERE on a key range) outside the schema migration.",
    });
  }
  if (node.DoStmt) {
    const body = findNodes(node.DoStmt, "String").map(({ value }) => String(value.sval ?? "")).join("\n");
    const ddl = /\b(ALTER\s+TABLE|CREATE\s+(UNIQUE\s+)?INDEX|DROP\s+(TABLE|INDEX)|TRUNCATE|LOCK\s+TABLE)\b/i.exec(body);
    if (ddl) {
      findings.push({
        rule: "ddl-in-do-block",
        byte: statement.start,
        message: `This DO block runs ${ddl[1].replace(/\s+/g, " ").toUpperCase()} inside its body, where lint cannot check the locks it takes.`,
        help: "Write the DDL as plain statements (IF EXISTS / IF NOT EXISTS cover most conditions) so lint can check them.",
      });
    }
  }
  return findings;
}

const SHARE_LOCK = 5;
const LOCK_MODES = ["", "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"];

/** What in this statement needs to run outside a transaction block, if anything. */
function concurrentOperation(node: Node): string | undefined {
  if ("IndexStmt" in node && node.IndexStmt.concurrent) return "CREATE INDEX";
  if ("DropStmt" in node && node.DropStmt.concurrent) return "DROP INDEX";
  if ("ReindexStmt" in node && (node.ReindexStmt.params ?? []).some((p) => "DefElem" in p && p.DefElem.defname === "concurrently")) {
    return "REINDEX";
  }
  if ("AlterTableStmt" in node) {
    const detach = (node.AlterTableStmt.cmds ?? []).some(
      (c) => "AlterTableCmd" in c && c.AlterTableCmd.subtype === "AT_DetachPartition" && c.AlterTableCmd.def !== undefined && "PartitionCmd" in c.AlterTableCmd.def && c.AlterTableCmd.def.PartitionCmd.concurrent,
    );
    if (detach) return "DETACH PARTITION";
  }
  // REFRESH MATERIALIZED VIEW CONCURRENTLY is allowed in a transaction.
  return undefined;
}

function names(objects: ObjectName[]): string {
  if (objects.length === 0) return "the table";
  return objects.map((o) => `"${o.schema ? `${o.schema}.` : ""}${o.name}"`).join(", ");
}
