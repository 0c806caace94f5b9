import { withClient } from "../db/client";
import { isPgstackError, messageOf } from "../errors";
import type { CheckResult } from "./check";

/**
 * Database health: it connects, its round trip, no INVALID index (a failed
 * CREATE INDEX CONCURRENTLY leaves one: it slows writes and serves no read),
 * constraints left NOT VALID (a warning: the rows before it were never
 * checked), and the server's major as configured.
 */
export async function checkDatabase(url: string, options: { expectedMajor?: string } = {}): Promise<CheckResult> {
  try {
    return await withClient(
      url,
      async (c, target) => {
        const started = process.hrtime.bigint();
        await c.query("SELECT 1");
        const roundTripMs = Number(process.hrtime.bigint() - started) / 1e6;
        const version = (await c.query<{ v: string; full: string }>("SELECT current_setting('server_version_num') AS v, current_setting('server_version') AS full")).rows[0];
        const major = String(Math.floor(Number(version.v) / 10000));
        const invalid = (
          await c.query<{ name: string }>(
            `SELECT format('%I.%I', n.nspname, i.relname) AS name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace
              WHERE NOT x.indisvalid AND n.nspname = $1 ORDER BY 1`,
            [target.schema],
          )
        ).rows.map((r) => r.name);
        const notValid = (
          await c.query<{ name: string }>(
            `SELECT format('%I on %I.%I', c.conname, n.nspname, t.relname) AS name FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
              WHERE NOT c.convalidated AND n.nspname = $1 ORDER BY 1`,
            [target.schema],
          )
        ).rows.map((r) => r.name);
        const details = { roundTripMs: Math.round(roundTripMs * 100) / 100, serverVersion: version.full, major, expectedMajor: options.expectedMajor ?? null, invalidIndexes: invalid, notValidConstraints: notValid };
        const fails: string[] = [];
        if (invalid.length > 0) fails.push(`index ${invalid.join(", ")} ${invalid.length === 1 ? "is" : "are"} INVALID (a failed CREATE INDEX CONCURRENTLY: drop ${invalid.length === 1 ? "it" : "them"} and create again)`);
        if (options.expectedMajor && options.expectedMajor !== major) fails.push(`the server runs PostgreSQL ${major} but the stack is configured for ${options.expectedMajor} (pgstack:postgresVersion)`);
        if (fails.length > 0) return { name: "database", status: "fail", sentence: `The database is not healthy: ${fails.join("; ")}.`, details };
        if (notValid.length > 0) {
          return {
            name: "database",
            status: "warn",
            sentence: `Constraint ${notValid.join(", ")} ${notValid.length === 1 ? "is" : "are"} NOT VALID: rows written before ${notValid.length === 1 ? "it" : "they"} were added were never checked (ALTER TABLE ... VALIDATE CONSTRAINT in a migration).`,
            details,
          };
        }
        return { name: "database", status: "pass", sentence: `Connected to PostgreSQL ${version.full} (round trip ${details.roundTripMs} ms); no invalid index, no NOT VALID constraint.`, details };
      },
      { applicationName: "pgstack verify" },
    );
  } catch (err) {
    return { name: "database", status: "fail", sentence: isPgstackError(err) ? err.message : `Could not read the database: ${messageOf(err).split("\n")[0]}.`, details: { connected: false } };
  }
}
