import { Command } from "commander";
import { migrationStatus } from "../../core/migrations/runner";
import { describeMode, pendingModes } from "../../core/migrations/mode";
import type { Context } from "../context";
import { settingsFrom, withDatabaseOptions, type DatabaseFlags } from "../options";
import { readStack } from "../../config/stack";
import { statusJson, table } from "../output";

export function statusCommand(ctx: Context): Command {
  return withDatabaseOptions(new Command("status"))
    .description("every migration with its checksum and state: applied, pending, failed, drifted or missing-from-disk")
    .option("--stack <name>", "the database of a Pulumi stack (its databaseUrl output), instead of --url")
    .action(async (flags: DatabaseFlags & { stack?: string }) => {
      if (flags.stack && !flags.url) flags.url = (await readStack(flags.stack)).databaseUrl ?? flags.url;
      const log = ctx.logger(flags);
      const status = await migrationStatus(settingsFrom(flags, ctx.env), (note) => log.warn(note));
      const modes = await pendingModes(status);
      if (flags.json) {
        ctx.output.out(JSON.stringify(statusJson(status, modes)));
        return;
      }
      if (status.length === 0) {
        ctx.output.out("No migrations found.");
        return;
      }
      ctx.output.out(
        table(
          ["MIGRATION", "STATE", "APPLIED AT", "CHECKSUM", "MODE"],
          status.map((s) => {
            const mode = modes.get(s.name);
            const steps = s.resume ? `, ${s.resume.steps} statement(s) committed` : "";
            return [s.name, s.state, s.appliedAt ? s.appliedAt.toISOString() : "-", s.checksum.slice(0, 12), (mode ? describeMode(mode) : "-") + steps];
          }),
        ),
      );
      const counts = new Map<string, number>();
      for (const s of status) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
      ctx.output.out([...counts].map(([state, n]) => `${n} ${state}`).join(", "));
    });
}
