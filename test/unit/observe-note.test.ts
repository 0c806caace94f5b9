/**
 * Issue 22: what `pulumi up` says about the migrations the database lacks once
 * it is not the database the stack recorded. A restore is named only for the
 * update right after it; an interrupted or failed step and a brand-new
 * migration are never blamed on a restore made earlier.
 */
import { missingMigrationsNote, type DatabaseObservation } from "../../infra/core/snapshot/observe";

const RECORDED = "embedded:1/app/16384";
const LIVE = "embedded:1/app/16999";
const at = (s: string) => new Date(s);
const names = ["20250101000000_a", "20250102000000_b", "20250103000000_c"];

function observed(applied: Record<string, string>, restore?: { id: string; takenAt: string }): DatabaseObservation {
  return {
    identity: "1/app/16999",
    applied: new Map(Object.entries(applied).map(([k, v]) => [k, at(v)])),
    ...(restore ? { restoredFrom: restore.id, restoredSnapshotTakenAt: at(restore.takenAt) } : {}),
  };
}

describe("missingMigrationsNote", () => {
  const restore = { id: "snap_dev_20250101000000_a_20250601000000", takenAt: "2025-06-01T00:00:00Z" };

  it("right after a restore: names the restore and what its ledger lacks", () => {
    const o = observed({ "20250101000000_a": "2025-05-01T00:00:00Z" }, restore);
    expect(missingMigrationsNote(names, o, RECORDED, LIVE)).toBe(
      "the database is a restore of snapshot snap_dev_20250101000000_a_20250601000000 (taken at 2025-06-01T00:00:00.000Z) and its ledger lacks 20250102000000_b, 20250103000000_c: the update applies them after a snapshot of this database.",
    );
  });

  it("once a migration was applied to the restored database, a later step killed mid-migration or a brand-new migration is not blamed on the restore", () => {
    // b was applied after the restore; c was interrupted (transaction mode: no ledger row) or is new.
    const o = observed({ "20250101000000_a": "2025-05-01T00:00:00Z", "20250102000000_b": "2025-06-02T00:00:00Z" }, restore);
    expect(missingMigrationsNote(names, o, RECORDED, LIVE)).toBeUndefined();
  });

  it("says nothing while the database is the recorded one (an interrupted step on a never-restored database), or when it lacks nothing", () => {
    expect(missingMigrationsNote(names, observed({}), RECORDED, RECORDED)).toBeUndefined();
    const all = observed(Object.fromEntries(names.map((n) => [n, "2025-05-01T00:00:00Z"])), restore);
    expect(missingMigrationsNote(names, all, RECORDED, LIVE)).toBeUndefined();
    expect(missingMigrationsNote(names, undefined, RECORDED, LIVE)).toBeUndefined();
  });

  it("a database replaced without a pgstack restore is said to be one, not a restore", () => {
    expect(missingMigrationsNote(names.slice(0, 1), observed({}), RECORDED, LIVE)).toBe(
      "the database is not the one this stack created (its identity changed, and no pgstack restore made it) and its ledger lacks 20250101000000_a: the update applies it after a snapshot of this database.",
    );
  });
});
