import { Command } from "commander";
import { PgstackError } from "../../core/errors";
import { resolveMigration } from "../../core/migrations/resolve";
import type { Context } from "../context";
import { settingsFrom, withDatabaseOptions, type DatabaseFlags } from "../options";
import { statusJson } from "../output";

type ResolveFlags = DatabaseFlags & { applied?: string; rolledBack?: string };

export function resolveCommand(ctx: Context): Command {
  return withDatabaseOptions(new Command("resolve"))
    .description("record by hand what happened to a failed migration, as `prisma migrate resolve` does")
    .option("--applied <name>", "you finished the migration by hand: record it as applied")
    .option("--rolled-back <name>", "you undid the migration's partial work: the next apply runs it from the start")
    .action(async (flags: ResolveFlags) => {
      if (Boolean(flags.applied) === Boolean(flags.rolledBack)) {
        throw new PgstackError("E_USAGE", "Give exactly one of --applied <name> or --rolled-back <name>.");
      }
      const resolution = flags.applied ? "applied" : "rolled-back";
      const status = await resolveMigration(settingsFrom(flags, ctx.env), (flags.applied ?? flags.rolledBack)!, resolution);
      if (flags.json) {
        ctx.output.out(JSON.stringify({ resolved: resolution, ...statusJson([status]) }));
        return;
      }
      ctx.output.out(
        resolution === "applied"
          ? `Migration ${status.name} is recorded as applied.`
          : `Migration ${status.name} is recorded as rolled back; \`pgstack apply\` will run it from its first statement.`,
      );
    });
}
