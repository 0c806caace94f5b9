import { parseDatabaseUrl } from "../db/url";
import { PgstackError } from "../errors";
import type { Logger } from "../logger";
import { restoredFrom } from "./restore";
import { enginesFor, listAllSnapshots, type StoreOptions } from "./store";
import { rollbackTarget } from "./target";
import type { SnapshotInfo } from "./template";

/**
 * Retention: keep the newest `keep` snapshots of a database and delete the
 * rest, so disks do not fill. Never deleted, whatever `keep` says:
 *   - the snapshot the database was restored from (a second rollback may need it);
 *   - the newest pre-update snapshot;
 *   - the rollback target (target.ts: the snapshot before the last update that
 *     applied anything, successful or not);
 *   - the first pre-update snapshot since the last successful update (taken
 *     with a clean ledger: the update before it had succeeded), so failed
 *     attempts never prune the last good state;
 *   - any id in `protect` (e.g. the stack's latestSnapshot output).
 * A failed attempt's pre-update snapshot that a later attempt's superseded
 * (taken after that first one, neither the newest nor any of the above) is
 * deleted whatever `keep` says: failed attempts keep at most that first
 * snapshot, the rollback target and the newest attempt's, not one full copy each.
 * Deleting a snapshot never touches a database restored from it: a restore is
 * a copy, not a reference.
 */
export interface PruneRules {
  keep: number;
  restoredFrom?: string;
  /** The rollback target's id. */
  rollbackTarget?: string;
  protect?: string[];
}

export interface PrunePlan {
  keep: { snapshot: SnapshotInfo; why: string }[];
  remove: SnapshotInfo[];
}

/** Pure: which of `snapshots` (one database's, any order) to keep and which to delete. */
export function planPrune(snapshots: SnapshotInfo[], rules: PruneRules): PrunePlan {
  if (!Number.isInteger(rules.keep) || rules.keep < 1) {
    throw new PgstackError("E_USAGE", `Retention must keep at least 1 snapshot (got ${rules.keep}).`);
  }
  const newestFirst = [...snapshots].sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.snapshotId.localeCompare(a.snapshotId));
  const newestPreUpdate = newestFirst.find((s) => s.key !== null);
  // The first pre-update snapshot taken after the last successful update (the
  // newest one with a clean ledger; without one, the oldest taken after a failure).
  const anchor = newestFirst.find((s) => s.key !== null && s.clean === true) ?? [...newestFirst].reverse().find((s) => s.key !== null && s.clean === false);
  const superseded = (s: SnapshotInfo) => s.key !== null && s.clean === false && anchor !== undefined && s !== anchor && s.createdAt >= anchor.createdAt;
  const plan: PrunePlan = { keep: [], remove: [] };
  newestFirst.forEach((s, i) => {
    const why =
      s.snapshotId === rules.restoredFrom
        ? "the database was restored from it"
        : s === newestPreUpdate
          ? "the newest pre-update snapshot"
          : s.snapshotId === rules.rollbackTarget
            ? "the rollback target"
            : s === anchor
              ? "the first taken since the last successful update"
              : rules.protect?.includes(s.snapshotId)
                ? "protected"
                : superseded(s)
                  ? undefined
                  : i < rules.keep
                    ? `one of the newest ${rules.keep}`
                    : undefined;
    if (why) plan.keep.push({ snapshot: s, why });
    else plan.remove.push(s);
  });
  return plan;
}

export interface PruneOptions extends StoreOptions {
  keep: number;
  /** Only this stack's snapshots. Default: every snapshot of the database. */
  stack?: string;
  protect?: string[];
  log: Logger;
  /** Plan only. */
  dryRun?: boolean;
}

/** Applies planPrune to the snapshots of the database of `url`. */
export async function pruneSnapshots(url: string, options: PruneOptions): Promise<PrunePlan> {
  const snapshots = await listAllSnapshots(url, { stack: options.stack }, options);
  const target = options.stack ? await rollbackTarget(url, options.stack, options) : undefined;
  const plan = planPrune(snapshots, { keep: options.keep, restoredFrom: await restoredFrom(url, options), rollbackTarget: target?.snapshot.snapshotId, protect: options.protect });
  if (options.dryRun) return plan;
  const engines = enginesFor(options);
  for (const s of plan.remove) await engines[s.engine ?? "template"].remove(url, s, options.log);
  options.log.info(`kept ${plan.keep.length} snapshot(s) of ${parseDatabaseUrl(url).database}, deleted ${plan.remove.length}`);
  return plan;
}
