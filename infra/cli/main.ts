import { Command, CommanderError } from "commander";
import { parseDatabaseUrl } from "../core/db/url";
import { errorSentence, exitCodeOf, isPgstackError, messageOf } from "../core/errors";
import * as path from "node:path";
import { removeAbandonedPartials } from "../core/snapshot/dump";
import { recoverInterrupted } from "../core/snapshot/fence";
import { DEFAULT_SNAPSHOTS_DIR } from "../core/snapshot/store";
import { applyCommand } from "./commands/apply";
import { clusterCommand } from "./commands/cluster";
import { identityCommand } from "./commands/identity";
import { initCommand } from "./commands/init";
import { lintCommand } from "./commands/lint";
import { pingCommand } from "./commands/ping";
import { planCommand } from "./commands/plan";
import { resolveCommand } from "./commands/resolve";
import { revertCommand } from "./commands/revert";
import { seedCommand } from "./commands/seed";
import { snapshotCommand } from "./commands/snapshot";
import { splitCommand } from "./commands/split";
import { statusCommand } from "./commands/status";
import { verifyCommand } from "./commands/verify";
import { processContext, type Context } from "./context";
import type { Logger } from "../core/logger";

export function buildProgram(ctx: Context): Command {
  const program = new Command("pgstack")
    .description("Prisma-format PostgreSQL migrations, applied safely (the engine behind the pgstack Pulumi stacks)")
    .version(packageVersion(), "-V, --version", "the pgstack version")
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.output.out(s.trimEnd()), writeErr: (s) => ctx.output.err(s.trimEnd()) });
  // A migration step runs `apply` (and the verification step `verify`) and nothing else: building the other commands would be most of its own cost.
  const commands = ctx.step
    ? [applyCommand(ctx), verifyCommand(ctx)]
    : [statusCommand(ctx), applyCommand(ctx), planCommand(ctx), lintCommand(ctx), resolveCommand(ctx), revertCommand(ctx), splitCommand(ctx), snapshotCommand(ctx), pingCommand(ctx), clusterCommand(ctx), identityCommand(ctx), seedCommand(ctx), initCommand(ctx), verifyCommand(ctx)];
  for (const command of commands) {
    program.addCommand(command.exitOverride());
  }
  program.hook("preAction", async (_program, action) => {
    // Only commands that take a database URL: `cluster` and `seed` must not touch whatever $DATABASE_URL names.
    if (!action.options.some((o) => o.long === "--url") || ctx.repaired) return;
    const flags = action.opts<{ url?: string; json?: boolean; verbose?: boolean }>();
    await recoverBeforeCommand(flags.url ?? ctx.env.DATABASE_URL, ctx.logger(flags), (flags as { snapshotsDir?: string }).snapshotsDir);
  });
  return program;
}

function packageVersion(): string {
  // Read at run time: the CLI runs from source or from a bundle, at different depths.
  const { version } = require(require("node:path").join((require("../core/project") as typeof import("../core/project")).packageDir(), "package.json")) as { version: string };
  return version;
}

/**
 * Every command with a database first repairs what an interrupted snapshot or
 * restore left (a database closed to connections, an unfinished copy; see
 * core/snapshot/fence.ts; an unfinished pg_dump file in the snapshots folder),
 * with one log line per repair. A server it cannot reach is the command's own
 * error to report, not this step's.
 */
export async function recoverBeforeCommand(url: string | undefined, log: Logger, snapshotsDir = DEFAULT_SNAPSHOTS_DIR): Promise<void> {
  if (!url) return;
  try {
    parseDatabaseUrl(url);
  } catch {
    return; // the command reports a malformed URL in its own words
  }
  await removeAbandonedPartials(path.resolve(snapshotsDir), log).catch((err) => log.warn(`could not check for unfinished pg_dump files: ${messageOf(err).split("\n")[0]}`));
  try {
    await recoverInterrupted(url, { log });
  } catch (err) {
    if (isPgstackError(err) && err.code === "E_DB_UNREACHABLE") return;
    log.warn(`could not check for interrupted snapshots or restores: ${messageOf(err).split("\n")[0]}`);
  }
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
    return exitCodeOf(err);
  }
}

if (require.main === module) {
  run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
