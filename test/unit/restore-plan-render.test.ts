import { renderRestorePlan } from "../../infra/cli/commands/snapshot";
import type { SnapshotInfo } from "../../infra/core/snapshot/engine";
import type { RestorePlan } from "../../infra/core/snapshot/restore";
import { templateEngine } from "../../infra/core/snapshot/template";

const snapshot: SnapshotInfo = { snapshotId: "snap_dev_0002_20261207160000", source: "app", stack: "dev", lastMigration: "0002_add", createdAt: "2026-12-07T16:00:00.000Z", key: null, engine: "template" };
const base: RestorePlan = { database: "app", snapshot, engine: templateEngine, tables: [], discardedMigrations: ["0003_more"], sealKeyFile: "k" };

describe("the restore plan as printed", () => {
  it("a clone snapshot (byFiles): only the changes, said to be counted now by changed blocks, no row counts it did not take", () => {
    const out = renderRestorePlan({ ...base, byFiles: true, tables: [{ table: "public.orders", changed: true, inserted: 2, updated: 100, deleted: 1 }] });
    expect(out.split("\n")).toEqual([
      "Restore database 'app' from snapshot snap_dev_0002_20261207160000",
      "  taken 2026-12-07T16:00:00.000Z (template), last migration in it: 0002_add",
      "  migrations rolled back: 0003_more",
      "Discarded by the restore (writes since the snapshot, counted now by changed blocks while the application can still write):",
      expect.stringMatching(/^ {2}TABLE\s+INSERTED\s+UPDATED\s+DELETED$/),
      expect.stringMatching(/^ {2}public\.orders\s+2\s+100\s+1$/),
      "The final count is taken with the database closed to writes, right before the swap, and printed with the result.",
    ]);
    expect(out).not.toMatch(/NOW|AT SNAPSHOT|content digests/);
  });

  it("a clone snapshot with nothing changed says so, by blocks, not by content digests", () => {
    expect(renderRestorePlan({ ...base, byFiles: true, discardedMigrations: [] }).split("\n")[2]).toBe("No table differs from the snapshot (compared now by changed blocks, while the application can still write).");
  });

  it("a digested snapshot keeps its rows now / at the snapshot columns", () => {
    const out = renderRestorePlan({ ...base, tables: [{ table: "public.orders", now: 12, atSnapshot: 10, changed: true, inserted: 2, updated: 0, deleted: 0 }] });
    expect(out).toContain("Discarded by the restore (rows now -> at the snapshot; writes since the snapshot):");
    expect(out).toMatch(/^ {2}public\.orders\s+12\s+10\s+\+2\s+2\s+0\s+0$/m);
  });
});
