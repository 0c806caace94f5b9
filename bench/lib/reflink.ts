/**
 * What the clone benchmarks (snapshot, window) share: a throwaway cluster
 * whose data directory is on the loop-mounted XFS reflink image of the clone
 * tests (test/support/reflink.ts; root only, as on CI), the bytes the file
 * system holds (a clone adds none: the evidence that it cloned), and a
 * pg_dump of the server's major.
 */
import { promises as fs } from "node:fs";
import { resolveTool } from "../../infra/core/pgtools";
import { canReflink, reflinkFolder } from "../../test/support/reflink";
import { type BenchCluster, startBenchCluster } from "./cluster";
import { BenchSetupError, log } from "./common";

export interface ReflinkCluster extends BenchCluster {
  /** The folder on the reflink mount holding the data directory. */
  folder: string;
}

/** A cluster on the reflink mount; destroy() also removes its folder. */
export async function startReflinkCluster(name: string, conf: Record<string, string> = {}): Promise<ReflinkCluster> {
  let folder: { dir: string; remove: () => void };
  try {
    folder = reflinkFolder(`bench-${name}`);
  } catch (err) {
    throw new BenchSetupError(`this benchmark needs the XFS reflink mount of the clone tests: ${(err as Error).message}`);
  }
  if (!canReflink(folder.dir)) throw new BenchSetupError(`${folder.dir} cannot clone files (FICLONE): not a reflink file system.`);
  // Room for the bulk load without a checkpoint every GiB; the measured copies checkpoint themselves.
  const cluster = await startBenchCluster(name, { root: folder.dir, conf: { max_wal_size: "8GB", checkpoint_timeout: "30min", ...conf } });
  const destroy = cluster.destroy;
  // Ctrl-C: startBenchCluster's handler removes the data directory; the folder goes at exit.
  process.once("exit", () => folder.remove());
  return {
    ...cluster,
    folder: folder.dir,
    async destroy() {
      await destroy();
      folder.remove();
    },
  };
}

/** Bytes in use on the file system of `dir` (statfs): a clone of a database adds about none, a copy adds its size. */
export async function usedBytes(dir: string): Promise<number> {
  const s = await fs.statfs(dir);
  return (s.blocks - s.bfree) * s.bsize;
}

/** The pg_dump pgstack resolves for the server's major (PGSTACK_PG_DUMP, PATH or pgstack's cached copy), before any work. */
export async function requireDumpFor(cluster: BenchCluster): Promise<string> {
  const [row] = await cluster.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  const major = Math.floor(Number(row.v) / 10000);
  try {
    const pgDump = await resolveTool("pg_dump", { serverMajor: major, env: process.env, log });
    log(`pg_dump for PostgreSQL ${major}: ${pgDump}`);
    return pgDump;
  } catch (err) {
    throw new BenchSetupError((err as Error).message);
  }
}
