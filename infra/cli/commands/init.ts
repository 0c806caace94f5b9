import { Command } from "commander";
import { PgstackError } from "../../core/errors";
import type { Context } from "../context";
import { describeInit, init, initFiles } from "../init/init";

/** `pgstack init [--show <file>]`: sets an existing Prisma application up for pgstack (see init/init.ts). */
export function initCommand(ctx: Context): Command {
  return new Command("init")
    .description("add what an application needs to deploy its database with pgstack (Pulumi.yaml, stack files, workflows, npm scripts)")
    .option("--show <file>", "print the file pgstack init writes, to merge with your own")
    .action((flags: { show?: string }) => {
      const dir = process.cwd();
      if (flags.show) {
        const file = initFiles(dir, { withProgram: true }).find((f) => f.path === flags.show);
        if (!file) throw new PgstackError("E_USAGE", `pgstack init writes no file ${flags.show}: give one of the paths it printed.`);
        ctx.output.out(file.text.trimEnd());
        return;
      }
      for (const line of describeInit(init(dir))) ctx.output.out(line);
    });
}
