import { Command } from "commander";
import { withClient } from "../../core/db/client";
import { PgstackError, isPgstackError } from "../../core/errors";
import type { Context } from "../context";
import { settingsFrom, withDatabaseOptions, type DatabaseFlags } from "../options";

/** What to do when a deploy cannot reach its database: the deploy runs in the wrong place. */
export const UNREACHABLE_ADVICE =
  "run the deploy where the database is reachable (in CI: runner labels in the PGSTACK_DEPLOY_RUNNER repository variable) or allow this machine in the database's security group";

/**
 * Connects once and says which server answered. The stack runs it before a
 * snapshot on remote engines, so an unreachable database stops the update before
 * anything is taken or applied.
 */
export function pingCommand(ctx: Context): Command {
  return withDatabaseOptions(new Command("ping"))
    .description("check that the database answers: host, port and server version")
    .action(async (flags: DatabaseFlags) => {
      const settings = settingsFrom(flags, ctx.env);
      try {
        const answer = await withClient(settings.databaseUrl, async (client, target) => {
          const { rows } = await client.query<{ server_version: string }>("SHOW server_version");
          return { host: target.host, port: target.port, database: target.database, version: rows[0].server_version };
        });
        ctx.output.out(flags.json ? JSON.stringify(answer) : `PostgreSQL ${answer.version} answers at ${answer.host}:${answer.port} (database ${answer.database}).`);
      } catch (err) {
        if (isPgstackError(err) && err.code === "E_DB_UNREACHABLE") {
          throw new PgstackError(err.code, `${err.message.replace(/\.$/, "")}; ${UNREACHABLE_ADVICE}.`);
        }
        throw err;
      }
    });
}
