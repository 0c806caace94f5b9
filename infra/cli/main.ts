import { Command, CommanderError } from "commander";
import { errorSentence, isPgstackError } from "../core/errors";
import { applyCommand } from "./commands/apply";
import { lintCommand } from "./commands/lint";
import { planCommand } from "./commands/plan";
import { resolveCommand } from "./commands/resolve";
import { snapshotCommand } from "./commands/snapshot";
import { statusCommand } from "./commands/status";
import { processContext, type Context } from "./context";

export function buildProgram(ctx: Context): Command {
  const program = new Command("pgstack")
    .description("Prisma-format PostgreSQL migrations, applied safely (the engine behind the pgstack Pulumi stacks)")
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.output.out(s.trimEnd()), writeErr: (s) => ctx.output.err(s.trimEnd()) });
  for (const command of [statusCommand(ctx), applyCommand(ctx), planCommand(ctx), lintCommand(ctx), resolveCommand(ctx), snapshotCommand(ctx)]) {
    program.addCommand(command.exitOverride());
  }
  return program;
}

/**
 * Runs the CLI and returns the exit code: 0 on success, 1 when pgstack
 * refused or failed (one sentence on stderr), 2 for a malformed command line.
 */
export async function run(argv: string[], baseCtx: Context = processContext): Promise<number> {
  // Remember whether the command already printed its JSON, so a failure adds none.
  let printed = false;
  const ctx: Context = { ...baseCtx, output: { out: (t) => ((printed = true), baseCtx.output.out(t)), err: baseCtx.output.err } };
  const program = buildProgram(ctx);
  const wantsJson = argv.includes("--json");
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit through here with code 0.
      return err.exitCode === 0 ? 0 : 2;
    }
    const message = errorSentence(err);
    ctx.output.err(`pgstack: ${message}`);
    if (wantsJson && !printed) {
      ctx.output.out(
        JSON.stringify({ error: { code: isPgstackError(err) ? err.code : "E_INTERNAL", message, ...(isPgstackError(err) ? { details: err.details } : {}) } }),
      );
    }
    return isPgstackError(err) && err.code === "E_USAGE" ? 2 : 1;
  }
}

if (require.main === module) {
  run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
