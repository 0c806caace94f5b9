import { Command, Option } from "commander";
import { databaseIdentity } from "../../core/snapshot/identity";
import type { Context } from "../context";
import { databaseUrlFrom } from "../options";

/**
 * `pgstack identity --engine <engine>`: who the database is (system
 * identifier, database oid), for the docker and external engines' identity
 * command; a new identity re-runs every migration command after a snapshot.
 */
export function identityCommand(ctx: Context): Command {
  return new Command("identity")
    .description("the identity of the database (server system identifier and database oid)")
    .addOption(new Option("--url <url>", "database URL (default: $DATABASE_URL)"))
    .option("--engine <engine>", "prefix of the identity (the stack's engine)", "db")
    .addOption(new Option("--json", "machine-readable output on stdout"))
    .action(async (flags: { url?: string; engine: string; json?: boolean }) => {
      const id = await databaseIdentity(databaseUrlFrom(flags, ctx.env));
      const result = { ...id, identity: `${flags.engine}:${id.identity}` };
      ctx.output.out(flags.json ? JSON.stringify(result) : result.identity);
    });
}
