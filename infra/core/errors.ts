/**
 * Every failure a user can cause or meet is a PgstackError: a stable `code` for
 * scripts and tests, and a one-sentence `message` for people. Nothing else is
 * shown to the user, so messages must never contain secrets or stack traces.
 */
export type ErrorCode =
  | "E_SETTINGS"
  | "E_MIGRATION_NAME"
  | "E_MIGRATION_AMBIGUOUS"
  | "E_MIGRATION_NO_SQL"
  | "E_MIGRATION_EMPTY"
  | "E_MIGRATION_ENCODING"
  | "E_MIGRATION_PROVIDER"
  | "E_MIGRATION_NOT_FAILED"
  | "E_MIGRATION_ALREADY_APPLIED"
  | "E_INVALID_INDEX"
  | "E_MIGRATION_SYNTAX"
  | "E_MIGRATION_FAILED"
  | "E_MIGRATION_UNKNOWN"
  | "E_MIGRATION_ORDER"
  | "E_DRIFT"
  | "E_MISSING_FROM_DISK"
  | "E_FAILED_NEEDS_ATTENTION"
  | "E_LOCK_TIMEOUT"
  | "E_DB_UNREACHABLE"
  | "E_DB_AUTH"
  | "E_DB_MISSING"
  | "E_DB"
  | "E_CLUSTER"
  | "E_SNAPSHOT"
  | "E_LINT"
  | "E_REVERT"
  | "E_SEED"
  | "E_STACK"
  | "E_SESSION_DIR"
  | "E_TOOLCHAIN"
  | "E_VERIFY"
  | "E_USAGE"
  | "E_BACKFILL"
  | "E_SPLIT";

export class PgstackError extends Error {
  constructor(
    public readonly code: ErrorCode,
    message: string,
    /** Extra machine-readable facts (migration name, line, ...); never secrets. */
    public readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "PgstackError";
  }
}

export function isPgstackError(err: unknown): err is PgstackError {
  return err instanceof PgstackError;
}

/** The message of anything thrown, without its stack. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** What a command prints for anything thrown: a PgstackError's sentence, else one line, never a stack. */
export function errorSentence(err: unknown): string {
  return isPgstackError(err) ? err.message : `unexpected error: ${messageOf(err).split("\n")[0]}`;
}

/** The exit code of a failed command at every entry point (CLI and npm scripts): 2 for a malformed command line, else 1. */
export function exitCodeOf(err: unknown): number {
  return isPgstackError(err) && err.code === "E_USAGE" ? 2 : 1;
}
