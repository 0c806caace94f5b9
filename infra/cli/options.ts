import { Command, Option } from "commander";
import { parseDatabaseUrl } from "../core/db/url";
import { PgstackError } from "../core/errors";
import { resolveSettings, type Settings, DEFAULTS } from "../core/settings";

/** Flags every database command takes; values are validated together in resolveSettings. */
export function withDatabaseOptions(command: Command): Command {
  return command
    .addOption(new Option("--url <url>", "database URL (default: $DATABASE_URL)"))
    .addOption(new Option("--dir <path>", "migrations folder").default("migrations"))
    .addOption(new Option("--json", "machine-readable output on stdout"))
    .addOption(new Option("--lock-wait <seconds>", `wait for another deployer's lock (default ${DEFAULTS.lockWaitSeconds})`))
    .addOption(new Option("--lock-timeout <ms>", `lock_timeout for each migration (default ${DEFAULTS.lockTimeoutMs}, 0 = none)`))
    .addOption(new Option("--statement-timeout <ms>", `statement_timeout for each migration (default ${DEFAULTS.statementTimeoutMs} = none)`))
    .addOption(new Option("--retries <n>", `retries of a migration that hit lock_timeout (default ${DEFAULTS.retries})`))
    .addOption(new Option("--retry-delay <ms>", `first back-off between those retries, doubling (default ${DEFAULTS.retryDelayMs})`).hideHelp())
    .addOption(new Option("-v, --verbose", "more progress on stderr"));
}

export interface DatabaseFlags {
  url?: string;
  dir?: string;
  json?: boolean;
  lockWait?: string;
  lockTimeout?: string;
  statementTimeout?: string;
  retries?: string;
  retryDelay?: string;
  verbose?: boolean;
}

export function settingsFrom(flags: DatabaseFlags, env: NodeJS.ProcessEnv = process.env): Settings {
  return resolveSettings({
    url: flags.url ?? env.DATABASE_URL,
    dir: flags.dir,
    lockWait: flags.lockWait,
    lockTimeout: flags.lockTimeout,
    statementTimeout: flags.statementTimeout,
    retries: flags.retries,
    retryDelay: flags.retryDelay,
  });
}

/** The database URL of a command that needs only that (--url, else $DATABASE_URL), checked. */
export function databaseUrlFrom(flags: { url?: string }, env: NodeJS.ProcessEnv): string {
  const url = flags.url ?? env.DATABASE_URL;
  if (!url) throw new PgstackError("E_USAGE", "No database URL: pass --url or set DATABASE_URL.");
  parseDatabaseUrl(url);
  return url;
}
