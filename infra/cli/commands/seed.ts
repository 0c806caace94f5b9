import { Command } from "commander";
import { DEFAULT_SEED_SCRIPT, SEED_REFUSED_ON_PROD, environmentOf } from "../../config/schema";
import { PgstackError } from "../../core/errors";
import { runProcess } from "../../core/process";
import type { Context } from "../context";

/**
 * `pgstack seed [script]`: runs the project's seed (TypeScript, through tsx)
 * with this environment (DATABASE_URL, PGSTACK_STACK, PGSTACK_ENV), as the
 * Seed component's command resource does. Refused on prod before anything runs.
 */
export function seedCommand(ctx: Context): Command {
  return new Command("seed")
    .description("seed the database with the project's seed script (never on prod)")
    .argument("[script]", "the seed script, relative to the project root", DEFAULT_SEED_SCRIPT)
    .action(async (script: string) => {
      const prod = (name: string | undefined) => name !== undefined && name !== "" && environmentOf(name) === "prod";
      if (prod(ctx.env.PGSTACK_STACK) || prod(ctx.env.PGSTACK_ENV)) throw new PgstackError("E_SEED", SEED_REFUSED_ON_PROD);
      if (!ctx.env.DATABASE_URL) throw new PgstackError("E_USAGE", "No database URL: set DATABASE_URL for the seed.");
      const { code } = await runProcess(process.execPath, [require.resolve("tsx/cli"), script], { env: ctx.env, inherit: true });
      if (code !== 0) throw new PgstackError("E_SEED", `The seed ${script} failed (exit ${code}); see its output above.`);
    });
}
