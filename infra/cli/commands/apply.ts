import { Command } from "commander";
import { discoverMigrations } from "../../core/migrations/discover";
import { describeMode, EXECUTION_MODES, modesOf, type ExecutionMode } from "../../core/migrations/mode";
import { applyMigrations, type ApplyTarget } from "../../core/migrations/runner";
import { PgstackError } from "../../core/errors";
import type { Context } from "../context";
import { settingsFrom, withDatabaseOptions, type DatabaseFlags } from "../options";
import { statusJson } from "../output";

export function applyCommand(ctx: Context): Command {
  return withDatabaseOptions(new Command("apply"))
    .description("apply one migration by name, or every pending one with --all (idempotent)")
    .argument("[name]", "migration folder name (or the part after its timestamp)")
    .option("--all", "apply every pending migration in order")
    .option("--to <name>", "with --all: stop after this migration")
    .option("--mode <mode>", "refuse unless the migration runs in this mode (the one the Pulumi preview showed)")
    .action(async (name: string | undefined, flags: DatabaseFlags & { all?: boolean; to?: string; mode?: string }) => {
      const target = applyTarget(name, flags);
      const settings = settingsFrom(flags, ctx.env);
      if (flags.mode !== undefined && target.kind === "one") await expectMode(settings.migrationsDir, target.name, flags.mode);
      const log = ctx.logger(flags);
      const result = await applyMigrations(settings, target, log, { reportStatus: flags.json, logApplied: !ctx.step, deployer: ctx.step?.deployer });
      if (flags.json) {
        ctx.output.out(JSON.stringify({ applied: result.applied, alreadyApplied: result.alreadyApplied, ...statusJson(result.status ?? []) }));
        return;
      }
      if (result.applied.length === 0) {
        ctx.output.out(
          target.kind === "one"
            ? `Migration ${result.alreadyApplied[0] ?? target.name} is already applied; nothing to do.`
            : `Database is up to date (${result.alreadyApplied.length} migration(s) applied); nothing to do.`,
        );
        return;
      }
      if (!ctx.step) ctx.output.out(`Applied ${result.applied.length} migration(s): ${result.applied.map((a) => a.name).join(", ")}.`);
    });
}

export function applyTarget(name: string | undefined, flags: { all?: boolean; to?: string }): ApplyTarget {
  if (flags.all && name) {
    throw new PgstackError("E_USAGE", `Give either a migration name or --all, not both (got '${name}' and --all).`);
  }
  if (flags.to && !flags.all) {
    throw new PgstackError("E_USAGE", "--to goes with --all: run `pgstack apply --all --to <name>`.");
  }
  if (flags.all) return { kind: "all", to: flags.to };
  if (!name) throw new PgstackError("E_USAGE", "Name the migration to apply, or pass --all: `pgstack apply <name>` or `pgstack apply --all`.");
  return { kind: "one", name };
}

/** The step runs only in the mode the reviewer was shown; a file changed since then runs no statement. */
async function expectMode(dir: string, name: string, expected: string): Promise<void> {
  if (!(EXECUTION_MODES as readonly string[]).includes(expected)) {
    throw new PgstackError("E_USAGE", `--mode must be one of ${EXECUTION_MODES.join(", ")} (got '${expected}').`);
  }
  const migration = (await discoverMigrations(dir)).find((m) => m.name === name);
  if (!migration) return; // apply names what is missing
  const actual = (await modesOf([migration])).get(name);
  if (actual !== undefined && actual !== expected) {
    throw new PgstackError(
      "E_USAGE",
      `Migration ${name} runs ${describeMode(actual)}, not ${describeMode(expected as ExecutionMode)} as the update was planned: run \`pulumi preview\` again and review the new plan.`,
    );
  }
}
