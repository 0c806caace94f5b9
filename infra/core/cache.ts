/**
 * pgstack's per-user cache (`$XDG_CACHE_HOME/pgstack`, else `~/.cache/pgstack`; the
 * Pulumi toolchain's cache too): binaries installed once and then run, so every
 * folder in it is private to the user.
 */
import { promises as fs, statSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PgstackError } from "./errors";

export function pgstackCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME || path.join(env.HOME || os.homedir(), ".cache");
  return path.join(base, "pgstack");
}

/**
 * `dir` (and missing parents) created 0700; refused when it exists but another
 * user owns it or others may write into it: what runs from it must be what
 * pgstack put there.
 */
export async function privateDir(dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  assertPrivate(dir);
  return dir;
}

/** Throws unless `dir` is owned by this user and writable by nobody else (and, unless allowed, readable by nobody else). */
export function assertPrivate(dir: string, options: { othersMayRead?: boolean } = {}): void {
  const st = statSync(dir);
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  if ((uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
    throw new PgstackError(
      "E_TOOLCHAIN",
      `pgstack's cache folder ${dir} is writable by another user (or owned by one), so nothing is run from it: remove it (pgstack installs it again) or run \`chmod go-w ${dir}\`.`,
    );
  }
  if (!options.othersMayRead && (st.mode & 0o055) !== 0) {
    throw new PgstackError("E_TOOLCHAIN", `pgstack's cache folder ${dir} is open to other users: run \`chmod 700 ${dir}\` (or remove it; pgstack installs it again).`);
  }
}

/** A fresh temporary folder next to `target`, to fill and then rename onto it (same file system). */
export async function stagingDir(target: string): Promise<string> {
  await privateDir(path.dirname(target));
  return fs.mkdtemp(`${target}.tmp-${process.pid}-`);
}

/**
 * Puts the filled `staging` folder at `target` in one rename. Another process
 * may have installed it meanwhile: then its copy is kept and ours removed.
 */
export async function publish(staging: string, target: string): Promise<void> {
  await fs.chmod(staging, 0o700);
  try {
    await fs.rename(staging, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    await fs.rm(staging, { recursive: true, force: true });
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
  }
}
