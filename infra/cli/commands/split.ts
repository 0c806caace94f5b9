import { Command } from "commander";
import { PgstackError } from "../../core/errors";
import { splitMigration } from "../../core/split/split";
import { readStack } from "../../config/stack";
import type { Context } from "../context";
import { settingsFrom, withDatabaseOptions, type DatabaseFlags } from "../options";

export function splitCommand(ctx: Context): Command {
  return withDatabaseOptions(new Command("split"))
    .description("rewrite a migration that renames a column or changes its type into expand, backfill and contract migrations")
    .argument("<migration>", "migration folder name (or the part after its timestamp); not yet applied to the database")
    .option("--stack <name>", "read the column from a Pulumi stack's database (its databaseUrl output), instead of --url")
    .option("--batch <rows>", "rows per backfill transaction (default 10000)")
    .action(async (name: string, flags: DatabaseFlags & { stack?: string; batch?: string }) => {
      if (flags.stack && !flags.url) flags.url = (await readStack(flags.stack)).databaseUrl ?? flags.url;
      const batch = flags.batch === undefined ? undefined : Number(flags.batch);
      if (batch !== undefined && !(Number.isInteger(batch) && batch > 0)) {
        throw new PgstackError("E_USAGE", `--batch must be a whole number of rows, 1 or more (got '${flags.batch}').`);
      }
      const result = await splitMigration(settingsFrom(flags, ctx.env), name, { batch });
      if (flags.json) {
        ctx.output.out(JSON.stringify({ split: result }));
        return;
      }
      const part = (p: string) => result.migrations.filter((m) => m.part === p).map((m) => m.name);
      const [expand] = part("expand");
      const [contract] = part("contract");
      const indexes = part("index");
      ctx.output.out(
        [
          `Split ${result.original} into ${result.migrations.map((m) => m.name).join(", ")}.`,
          `Deploy ${expand} and ${part("backfill")[0]} (the old application version keeps working), then the application version that reads and writes ${result.table}.${result.applicationColumn}, then ${contract} once no instance of the old version runs.`,
          ...(indexes.length > 0 ? [`${indexes.join(", ")} build${indexes.length > 1 ? "" : "s"} the old column's indexes on the new one: deploy ${indexes.length > 1 ? "them" : "it"} before the rollout too, so the new version finds them (a unique one for its ON CONFLICT) from its first request.`] : []),
          `Until ${contract} runs, a trigger keeps ${result.column} and ${result.newColumn} in step.`,
          // The trigger cannot tell the new version's explicit NULL from the old version leaving the new column out.
          ...(!result.notNull && result.default !== null && result.applicationColumn !== result.column
            ? [`Until then, an INSERT of the new version that gives ${result.applicationColumn} NULL gets ${result.column}'s default (${result.default}) instead, as one of the old version would: set it to NULL with an UPDATE, which is kept.`]
            : []),
        ].join("\n"),
      );
    });
}
