import { Command, Option } from "commander";
import { lintError, lintMigrations, migrationsAt, type LintFinding } from "../../core/lint";
import { discoverMigrations } from "../../core/migrations/discover";
import { migrationStatus } from "../../core/migrations/runner";
import { resolveSettings } from "../../core/settings";
import type { Context } from "../context";

interface LintFlags {
  url?: string;
  dir?: string;
  json?: boolean;
  verbose?: boolean;
}

export function lintCommand(ctx: Context): Command {
  return new Command("lint")
    .description("unsafe or destructive SQL in migrations (Squawk plus pgstack's own checks); exits 1 on a blocking finding")
    .argument("[paths...]", "migration folders or .sql files (default: every migration under --dir)")
    .addOption(new Option("--dir <path>", "migrations folder").default("migrations"))
    .addOption(new Option("--url <url>", "database URL (default: $DATABASE_URL); with one, applied migrations edited since are reported too"))
    .addOption(new Option("--json", "machine-readable output on stdout"))
    .addOption(new Option("-v, --verbose", "more progress on stderr"))
    .action(async (paths: string[], flags: LintFlags) => {
      const log = ctx.logger(flags);
      // Linting files needs no database; one is used only when given.
      const url = flags.url || ctx.env.DATABASE_URL || undefined;
      const settings = resolveSettings({ url, dir: flags.dir }, process.cwd(), { requireUrl: false });
      const migrations = paths.length > 0 ? await migrationsAt(paths) : await discoverMigrations(settings.migrationsDir);
      let status;
      if (url) {
        status = await migrationStatus(settings);
      } else {
        log.debug("no database URL: linting the files only (edited applied migrations are not checked)");
      }
      const report = await lintMigrations(migrations, { status });

      if (flags.json) {
        ctx.output.out(
          JSON.stringify({ findings: report.findings, blocking: report.blocking, warnings: report.warnings, suppressed: report.suppressed }),
        );
      } else {
        for (const f of report.findings) ctx.output.out(findingLine(f));
        const counts =
          report.findings.length === 0
            ? "no findings"
            : `${report.blocking} blocking, ${report.warnings} warning(s), ${report.suppressed} accepted`;
        ctx.output.out(`${migrations.length} migration(s) linted: ${counts}.`);
      }
      const failed = lintError(report);
      if (failed) throw failed;
    });
}

/** `path:line:col  severity  rule  message`, grep- and editor-friendly. */
export function findingLine(f: LintFinding): string {
  const where = `${f.file}:${f.line}:${f.column}`;
  if (f.suppressed) return `${where}  accepted  ${f.rule}  ${f.message} (accepted: ${f.suppressed.reason})`;
  // The fix is spelled out for what must change; warnings stay one sentence shorter.
  const help = f.severity === "blocking" && f.help ? ` ${sentence(f.help)}` : "";
  return `${where}  ${f.severity}  ${f.rule}  ${sentence(f.message)}${help}`;
}

function sentence(text: string): string {
  const t = text.trim();
  return /[.!?]$/.test(t) ? t : `${t}.`;
}
