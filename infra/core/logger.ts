/** Injectable logger: core code never writes to the console directly. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/**
 * Human progress goes to stderr so stdout stays clean for `--json` output and
 * for whatever pipes pgstack's results.
 */
export function stderrLogger(options: { verbose?: boolean } = {}): Logger {
  return lineLogger((line) => process.stderr.write(line + "\n"), options);
}

/** The same lines, to `write` (a deploy session sends them to the step that asked). */
export function lineLogger(write: (line: string) => void, options: { verbose?: boolean } = {}): Logger {
  return {
    debug: (m) => {
      if (options.verbose) write(m);
    },
    info: write,
    warn: (m) => write(`warning: ${m}`),
    error: (m) => write(`error: ${m}`),
  };
}

/** Records every line; for tests that assert what was said (and what was not). */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (level: string) => (m: string) => {
    lines.push(`${level}: ${m}`);
  };
  return { lines, debug: push("debug"), info: push("info"), warn: push("warn"), error: push("error") };
}
