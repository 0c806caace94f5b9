import { existsSync } from "node:fs";
import * as os from "node:os";
import { PgstackError } from "../errors";
import { SQUAWK_EXCLUDED } from "./rules";
import { runProcess } from "../process";

/** One row of `squawk --reporter json` (2.66): line is 0-based, column a 0-based byte offset in that line. */
export interface SquawkViolation {
  file: string;
  line: number;
  column: number;
  line_end: number;
  column_end: number;
  level: string;
  message: string;
  help: string | null;
  rule_name: string;
}

/**
 * The native binary from squawk-cli's platform package. squawk-cli's own
 * `bin/squawk` is a Node wrapper around the same file; running the binary
 * directly saves a Node process per file.
 */
export function squawkBinary(): string {
  const pkg = `@squawk-cli/${process.platform}-${process.arch}`;
  const file = process.platform === "win32" ? "squawk.exe" : "squawk";
  try {
    return require.resolve(`${pkg}/bin/${file}`);
  } catch {
    throw missingSquawk(pkg);
  }
}

function missingSquawk(what: string): PgstackError {
  return new PgstackError("E_LINT", `The Squawk linter (${what}) is not installed: run \`npm ci\` to install pgstack's dependencies.`);
}

export interface SquawkRunOptions {
  binary: string;
  /** True when pgstack wraps the file in a transaction. */
  assumeInTransaction: boolean;
  /** Only for Squawk's messages; the SQL itself goes through stdin. */
  displayPath: string;
}

/**
 * Lints one file's exact text (what the checksum covers and what runs),
 * passed on stdin so no path is ever read as a glob.
 */
export async function runSquawk(sql: string, options: SquawkRunOptions): Promise<SquawkViolation[]> {
  if (!existsSync(options.binary)) return Promise.reject(missingSquawk(options.binary));
  const args = [
    "--reporter",
    "json",
    // An empty config: a .squawk.toml in the project must not switch off rules
    // pgstack relies on, or change the transaction assumption made here.
    "--config",
    os.devNull,
    options.assumeInTransaction ? "--assume-in-transaction" : "--no-assume-in-transaction",
    "--exclude",
    SQUAWK_EXCLUDED.join(","),
    "--stdin-filepath",
    options.displayPath,
  ];
  // Squawk needs nothing from the environment; DATABASE_URL stays with us.
  const { stdout, stderr, code, signal, startError } = await runProcess(options.binary, args, { input: sql, env: { PATH: process.env.PATH ?? "" }, timeoutMs: 60_000 });
  if (startError) throw startError.code === "ENOENT" || startError.code === "EACCES" ? missingSquawk(options.binary) : startError;
  // Squawk exits 1 whenever it found something, so the exit code says
  // nothing; a JSON array on stdout is the success signal.
  try {
    const parsed: unknown = JSON.parse(stdout);
    if (Array.isArray(parsed)) return parsed as SquawkViolation[];
  } catch {
    // fall through
  }
  const why = stderr.trim().split("\n")[0] || (signal ? `killed by ${signal}` : `exit code ${code}`);
  throw new PgstackError("E_LINT", `Squawk failed on ${options.displayPath}: ${why}.`, { file: options.displayPath });
}
