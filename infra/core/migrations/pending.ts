import { compareMigrationNames, type Migration } from "./discover";
import type { MigrationStatus } from "./status";

/**
 * Which migrations an update would apply, from the migrations on disk and
 * either the ledger (the runner, `pgstack plan`, the snapshot step) or the
 * names the stack's last successful update applied (`plan --stack`, the lint
 * gate), up to the pin. Pure; plan.ts adds each one's mode and statement count.
 */

/** The one pin filter: the items up to and including `last`, in Prisma's order; all when `last` is undefined. */
export function upToPin<T extends { name: string }>(items: T[], last: string | undefined): T[] {
  return last === undefined ? items : items.filter((m) => compareMigrationNames(m.name, last) <= 0);
}

/** From the ledger: pending and failed migrations (a failed one is retried), up to `last`. */
export function pendingFromLedger(status: MigrationStatus[], last: string | undefined): Migration[] {
  return upToPin(status, last)
    .filter((s) => s.state === "pending" || s.state === "failed")
    .map((s) => s.migration!)
    .filter(Boolean);
}

/** From a stack's outputs (no database): every migration on disk it has not applied, up to `last`. */
export function pendingFromApplied(migrations: Migration[], applied: Iterable<string>, last: string | undefined): Migration[] {
  const done = new Set(applied);
  return upToPin(migrations, last).filter((m) => !done.has(m.name));
}
