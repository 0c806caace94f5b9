import type { CheckStatus } from "./check";

/**
 * `pgstack:drift`: the status of each kind of drift, and objects left out.
 * changed: an object the history made, that the database holds otherwise (or
 * lacks), including an index, constraint, trigger or policy added to one of
 * the history's tables. extra: an object no migration made (a table, view,
 * function, sequence, enum, extension, or anything on such a table).
 */
export interface DriftPolicy {
  changed: CheckStatus;
  extra: CheckStatus;
  /** Objects never counted: "table public.audit", "public.audit" or "audit"; `*` matches any characters. */
  allow: string[];
}

export const DEFAULT_DRIFT_POLICY: DriftPolicy = { changed: "fail", extra: "warn", allow: [] };
