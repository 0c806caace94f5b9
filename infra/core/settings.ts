import * as path from "node:path";
import { z } from "zod";
import { PgstackError } from "./errors";

/** Every knob of a run, validated once; the rest of the code trusts it. */
export interface Settings {
  databaseUrl: string;
  migrationsDir: string;
  /** Seconds to wait for another deployer's advisory lock. */
  lockWaitSeconds: number;
  /** lock_timeout for every migration session, ms (0 = none). */
  lockTimeoutMs: number;
  /** statement_timeout for every migration session, ms (0 = none). */
  statementTimeoutMs: number;
  /** Extra attempts for a migration that hit lock_timeout. */
  retries: number;
  /** First back-off delay between those attempts, ms; doubles each time. */
  retryDelayMs: number;
}

export const DEFAULTS = {
  lockWaitSeconds: 60,
  lockTimeoutMs: 5_000,
  statementTimeoutMs: 0,
  retries: 3,
  retryDelayMs: 1_000,
} as const;

/** Raw values as they come from flags and the environment (all strings). */
export interface RawSettings {
  url?: string;
  dir?: string;
  lockWait?: string | number;
  lockTimeout?: string | number;
  statementTimeout?: string | number;
  retries?: string | number;
  retryDelay?: string | number;
}

const number = (flag: string, unit: string, integer: boolean) =>
  z
    .union([z.string(), z.number()])
    .optional()
    .transform((value, ctx) => {
      if (value === undefined || value === "") return undefined;
      const n = typeof value === "number" ? value : Number(value);
      if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
        ctx.addIssue({ code: "custom", message: `${flag} must be ${integer ? "a whole number" : "a number"} of ${unit}, 0 or more (got '${value}')` });
        return z.NEVER;
      }
      return n;
    });

const schema = z.object({
  url: z
    .string({ error: "no database URL: pass --url or set DATABASE_URL" })
    .min(1, "no database URL: pass --url or set DATABASE_URL")
    .refine((u) => /^postgres(ql)?:\/\//.test(u), "the database URL must start with postgresql://"),
  dir: z.string().optional(),
  lockWait: number("--lock-wait", "seconds", false),
  lockTimeout: number("--lock-timeout", "milliseconds", true),
  statementTimeout: number("--statement-timeout", "milliseconds", true),
  retries: number("--retries", "attempts", true),
  retryDelay: number("--retry-delay", "milliseconds", true),
});

/**
 * Validates everything at once and reports every problem in one sentence, so a
 * user fixes a command line in one go.
 */
export function resolveSettings(raw: RawSettings, cwd = process.cwd(), options: { requireUrl?: boolean } = {}): Settings {
  const requireUrl = options.requireUrl ?? true;
  const input = { ...raw, url: raw.url ?? (requireUrl ? undefined : "postgresql://unused") };
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => i.message);
    throw new PgstackError("E_SETTINGS", `Invalid settings: ${problems.join("; ")}.`, { problems });
  }
  const v = parsed.data;
  return {
    databaseUrl: v.url,
    migrationsDir: path.resolve(cwd, v.dir ?? "migrations"),
    lockWaitSeconds: v.lockWait ?? DEFAULTS.lockWaitSeconds,
    lockTimeoutMs: v.lockTimeout ?? DEFAULTS.lockTimeoutMs,
    statementTimeoutMs: v.statementTimeout ?? DEFAULTS.statementTimeoutMs,
    retries: v.retries ?? DEFAULTS.retries,
    retryDelayMs: v.retryDelay ?? DEFAULTS.retryDelayMs,
  };
}
