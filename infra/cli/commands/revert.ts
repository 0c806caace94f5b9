import { Command } from "commander";
import { PgstackError } from "../../core/errors";
import { executeRevert, planRevert, type DroppedObject, type RevertPlan } from "../../core/revert/revert";
import type { Context } from "../context";
import { settingsFrom, withDatabaseOptions, type DatabaseFlags } from "../options";
import { table } from "../output";

type RevertFlags = DatabaseFlags & { to?: string; yes?: boolean; acceptLoss?: boolean };

/** What a revert does, for people: what it reverts, what it drops with what that holds, what it cannot give back. */
function dropsTable(drops: DroppedObject[]): string {
  return table(
    ["KIND", "NAME", "HOLDS"],
    drops.map((d) => [d.kind, d.name, d.holds === undefined ? "-" : `${d.holds} ${d.kind === "column" ? "non-null values" : "rows"}`]),
  )
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}

/** What the reverse dropped, counted under its locks in its transaction: the final numbers. */
export function renderRevertResult(dropped: DroppedObject[]): string {
  if (dropped.length === 0) return "  The reverse dropped nothing that held data.";
  return ["  The reverse dropped, counted under its locks just before (final):", dropsTable(dropped)].join("\n");
}

export function renderRevertPlan(plan: RevertPlan): string {
  const lines = [
    `Revert on '${plan.database}' (keeps the data): ${plan.reverted.join(", ")} ${plan.reverted.length === 1 ? "is" : "are"} undone by ${plan.source === "down.sql" ? "their down.sql" : "a reverse computed from the schema"}, back to ${plan.target ?? "no migration"}.`,
  ];
  if (plan.drops.length === 0) lines.push("  The reverse drops nothing that holds data.");
  else {
    lines.push("  The reverse drops what the reverted migrations created, with what it holds now (an estimate: the revert counts again under its locks):");
    lines.push(dropsTable(plan.drops));
  }
  if (plan.losses.length > 0) {
    lines.push("  It cannot give back (refused without --accept-loss):");
    for (const loss of plan.losses) lines.push(`    - ${loss}`);
  }
  if (plan.drift.length > 0) {
    lines.push("  Left exactly as they are (drift: the migration history does not make them so):");
    for (const d of plan.drift) lines.push(`    - ${d}`);
  }
  lines.push("  Every other row stays as it is now.");
  return lines.join("\n");
}

export function revertJson(plan: RevertPlan) {
  return { database: plan.database, target: plan.target, reverted: plan.reverted, source: plan.source, drops: plan.drops, losses: plan.losses, drift: plan.drift, sql: plan.sql };
}

export function revertCommand(ctx: Context): Command {
  return withDatabaseOptions(new Command("revert"))
    .description("undo the migrations applied after --to by running their reverse (keeps the data; rehearsed on a copy first)")
    .option("--to <migration>", "the last migration to keep")
    .option("--yes", "revert (without it: only show what the revert would drop)")
    .option("--accept-loss", "revert even though the reverse cannot give back data the reverted migrations removed")
    .action(async (flags: RevertFlags) => {
      if (!flags.to) throw new PgstackError("E_USAGE", "Name the last migration to keep: pgstack revert --to <migration> (see `pgstack status`).");
      const settings = settingsFrom(flags, ctx.env);
      const log = ctx.logger(flags);
      const plan = await planRevert(settings, { to: flags.to, log });
      if (!flags.json) ctx.output.err(renderRevertPlan(plan));
      if (!flags.yes) {
        if (flags.json) ctx.output.out(JSON.stringify({ reverted: false, plan: revertJson(plan) }));
        else ctx.output.out("Nothing changed: run again with --yes to revert.");
        return;
      }
      const result = await executeRevert(settings, plan, { acceptLoss: Boolean(flags.acceptLoss), log });
      // After the plan's estimate, on the same stream: the numbers dropped.
      if (!flags.json) ctx.output.err(renderRevertResult(result.dropped));
      const counted = result.dropped.filter((d) => d.holds !== undefined).map((d) => `${d.kind} ${d.name} with ${d.holds} ${d.kind === "column" ? "non-null values" : "rows"}`);
      ctx.output.out(
        flags.json
          ? JSON.stringify({ reverted: true, plan: revertJson(plan), dropped: result.dropped, rehearsedOn: result.rehearsedOn, durationMs: result.durationMs })
          : `Reverted ${plan.reverted.join(", ")} on '${plan.database}'${counted.length > 0 ? `, dropping ${counted.join(", ")}` : ""}; the ledger marks them rolled back, so \`pgstack apply\` would run them again. ` +
              `If a stack deploys this database, pin its chain at ${plan.target} with \`npm run rollback -- --stack <name> --yes\` before its next \`pulumi up\` (it undoes nothing more).`,
      );
    });
}
