import { execFileSync } from "node:child_process";
import { constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import * as path from "node:path";

/**
 * A copy-on-write file system for the clone tests and benches: a sparse XFS
 * image with reflink=1, loop-mounted once per machine (root only, as on CI;
 * `.ci/run` installs xfsprogs). The mount point and the image live under a
 * root-owned 0755 folder, so no other user can plant anything in them.
 * Idempotent and safe across concurrent test processes (flock).
 */
export const REFLINK_ROOT = "/var/lib/pgstack-test";
export const REFLINK_MOUNT = path.join(REFLINK_ROOT, "reflink");
const IMAGE = path.join(REFLINK_ROOT, "reflink.img");
/** Sparse: costs disk only for what is written. Room for the 4 GiB bench and its copies. */
const IMAGE_SIZE = "24G";

function mounted(dir: string): boolean {
  return readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .some((line) => line.split(" ")[1] === dir);
}

/** The mounted reflink XFS folder; throws one sentence when this machine cannot make one. */
export function reflinkMount(): string {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) {
    throw new Error("The clone tests need root to loop-mount an XFS image with reflink=1 (as .ci/run does on CI): run them as root.");
  }
  if (!mounted(REFLINK_MOUNT)) {
    mkdirSync(REFLINK_ROOT, { recursive: true, mode: 0o755 });
    chmodSync(REFLINK_ROOT, 0o755);
    const script = [
      "set -e",
      `grep -q " ${REFLINK_MOUNT} " /proc/mounts && exit 0`,
      `mkdir -p ${REFLINK_MOUNT}`,
      `[ -f ${IMAGE} ] || { truncate -s ${IMAGE_SIZE} ${IMAGE}; mkfs.xfs -q -f -m reflink=1 ${IMAGE}; }`,
      `mount -o loop ${IMAGE} ${REFLINK_MOUNT}`,
      `chmod 755 ${REFLINK_MOUNT}`,
    ].join("\n");
    try {
      execFileSync("flock", [path.join(REFLINK_ROOT, ".lock"), "bash", "-c", script], { stdio: ["ignore", "pipe", "pipe"] });
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
      throw new Error(`Could not mount the reflink XFS image at ${REFLINK_MOUNT} (is xfsprogs installed? apt-get install xfsprogs): ${stderr ?? String(err)}`);
    }
  }
  if (!canReflink(REFLINK_MOUNT)) throw new Error(`${REFLINK_MOUNT} is mounted but cannot clone files: remove ${IMAGE} and run again.`);
  return REFLINK_MOUNT;
}

/** Whether `dir`'s file system clones a file (FICLONE), tried for real. */
export function canReflink(dir: string): boolean {
  const probe = mkdtempSync(path.join(dir, ".probe-"));
  try {
    writeFileSync(path.join(probe, "a"), "pgstack");
    copyFileSync(path.join(probe, "a"), path.join(probe, "b"), constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

/** A fresh folder on the reflink mount for one test file, removed by the returned function. */
export function reflinkFolder(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(reflinkMount(), `${prefix}-`));
  chmodSync(dir, 0o755);
  return { dir, remove: () => existsSync(dir) && rmSync(dir, { recursive: true, force: true }) };
}
