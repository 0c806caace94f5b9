import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { cloneDecision, reflinkProbe, type CloneFacts } from "../../infra/core/db/clone";
import { templateSnapshotCommandArgs } from "../../infra/components/snapshot/snapshot";

/** Facts of a server where cloning works; each test changes one. */
const works: CloneFacts = { versionNum: 180004, dataDirectory: { path: "/data" }, local: true, settingOk: true, fsType: "xfs", probe: "ok" };

describe("whether a database copy is a clone (db/clone.ts cloneDecision)", () => {
  it("clones on PostgreSQL 18 whose local data directory reflinks, and says so", () => {
    expect(cloneDecision(works)).toEqual({ clone: true, reason: "PostgreSQL 18 with file_copy_method = clone on a file system (xfs) that reflinks: the copy shares the files' blocks" });
  });

  it("each missing condition is a no with its own reason", () => {
    expect(cloneDecision({ ...works, versionNum: 150018 })).toEqual({ clone: false, reason: "the server is PostgreSQL 15; cloning a database needs 18 or newer" });
    expect(cloneDecision({ ...works, versionNum: 170005 }).reason).toBe("the server is PostgreSQL 17; cloning a database needs 18 or newer");
    expect(cloneDecision({ ...works, dataDirectory: { error: "permission denied to examine \"data_directory\"" } })).toEqual({
      clone: false,
      reason: 'the server\'s data directory could not be read (permission denied to examine "data_directory"), so whether its file system clones cannot be checked',
    });
    expect(cloneDecision({ ...works, local: false })).toEqual({
      clone: false,
      reason: "the server's data directory /data is not on this machine, so whether its file system clones cannot be checked",
    });
    expect(cloneDecision({ ...works, settingOk: "invalid value for parameter \"file_copy_method\"" }).clone).toBe(false);
    expect(cloneDecision({ ...works, fsType: "ext4", probe: { error: "ENOTSUP", stage: "clone" } })).toEqual({
      clone: false,
      reason: "the data directory's file system (ext4) cannot reflink (ENOTSUP)",
    });
    expect(cloneDecision({ ...works, probe: { error: "EACCES", stage: "write" } })).toEqual({
      clone: false,
      reason: "pgstack cannot write a probe file in the data directory /data (EACCES), so whether its file system (xfs) clones cannot be checked",
    });
  });

  it("the probe on a file system that cannot reflink (this machine's /tmp, ext4) fails and leaves nothing behind", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "pgstack-probe-"));
    try {
      const probe = reflinkProbe(dir);
      expect(probe).toEqual({ error: expect.stringMatching(/^E[A-Z]+$/), stage: "clone" });
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the pre-update snapshot step's --max-pause-ms (pgstack:snapshots.maxPauseMs)", () => {
  const base = { stack: "dev", key: "k", databaseUrl: "postgresql://x", identity: "i" };
  it("is passed when not the default, and left out at the default (an unchanged command line for existing stacks)", () => {
    expect(templateSnapshotCommandArgs({ ...base, maxPauseMs: 250 }).create).toContain("--max-pause-ms 250");
    expect(templateSnapshotCommandArgs({ ...base, maxPauseMs: 1000 }).create).not.toContain("--max-pause-ms");
  });
});
