import { Command } from "commander";
import { planMigrations, planError } from "../../core/migrations/plan";
import type { Context } from "../context";
import { settingsFrom, withDatabaseOptions, type DatabaseFlags } from "../options";
import { table } from "../output";

export function planCommand(ctx: Context): Command {
  return withDatabaseOptions(new Command("plan"))
    .description("what `apply --all` would do, without changing anything")
    .option("--to <name>", "stop after this migration")
    .action(async (flags: DatabaseFlags & { to?: string }) => {
      const plan = await planMigrations(settingsFrom(flags, ctx.env), flags.to);
      if (flags.json) {
        ctx.output.out(JSON.stringify({ pending: plan.pending, blockers: plan.blockers }));
      } else if (plan.pending.length === 0 && plan.blockers.length === 0) {
        ctx.output.out("Nothing to apply: the database is up to date.");
      } else {
        if (plan.pending.length > 0) {
          ctx.output.out(`${plan.pending.length} migration(s) would be applied, in this order:`);
          ctx.output.out(
            table(
              ["MIGRATION", "STATEMENTS", "MODE"],
              plan.pending.map((p) => [
                p.name + (p.retry ? " (retry of a failed attempt)" : ""),
                String(p.statements),
                p.noTransaction ? "no transaction" : "transaction",
              ]),
            ),
          );
        }
        for (const b of plan.blockers) ctx.output.out(`blocked: ${b.message}`);
      }
      const blocked = planError(plan);
      if (blocked) throw blocked;
    });
}
