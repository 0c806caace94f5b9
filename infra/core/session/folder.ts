import { constants, lstatSync, promises as fs, readFileSync, readlinkSync, unlinkSync } from "node:fs";
import * as path from "node:path";
import { PgstackError } from "../errors";

/**
 * The deploy session's folder (`pgstack-<uid>` in `$XDG_RUNTIME_DIR` or the
 * temp dir) holds a secret token and the socket a root deployer answers on,
 * so nothing is written there before it is known to be this user's alone: a
 * folder another user made, a symlink, a wrong mode is refused before the
 * first byte, and so is a base folder another user could swap it out of
 * (keep the rules in step with infra/bin/step-client.js and
 * infra/bin/step/pgstack-step.c, the readers).
 */

const uid = () => process.getuid?.() ?? 0;

function refused(dir: string, why: string): PgstackError {
  return new PgstackError(
    "E_SESSION_DIR",
    `The deploy session's folder ${dir} ${why}: remove it, or set XDG_RUNTIME_DIR to a folder only you can change, and run again.`,
    { dir },
  );
}

/** Why `dir` (lstat'ed) is not this user's private folder, or undefined when it is. */
export function privateDirProblem(info: { isSymbolicLink(): boolean; isDirectory(): boolean; uid: number; mode: number }): string | undefined {
  if (info.isSymbolicLink()) return "is a symlink";
  if (!info.isDirectory()) return "is not a folder";
  if (info.uid !== uid()) return `belongs to another user (uid ${info.uid})`;
  if ((info.mode & 0o7777) !== 0o700) return `has mode ${(info.mode & 0o7777).toString(8)}, not 700`;
  return undefined;
}

/** Refuses a folder that is not this user's own, 0700, and not a symlink. */
export async function assertPrivateDir(dir: string): Promise<void> {
  const problem = privateDirProblem(await fs.lstat(dir));
  if (problem) throw refused(dir, problem);
}

/**
 * Refuses a base folder any of whose folders on the way (each component, each
 * symlink's target) another user could rename entries in: owned by someone
 * other than root or this user, or writable by group or others without the
 * sticky bit (/tmp has it). There another user could swap the session folder
 * for theirs between our check and our write.
 */
export function assertSafeBase(base: string, dir: string): void {
  const visit = (folder: string) => {
    const info = lstatSync(folder);
    if (info.uid !== 0 && info.uid !== uid()) throw refused(dir, `is inside ${folder}, which belongs to another user (uid ${info.uid})`);
    if ((info.mode & 0o022) !== 0 && (info.mode & 0o1000) === 0) {
      throw refused(dir, `is inside ${folder}, which other users can write to and which lacks the sticky bit`);
    }
  };
  let hops = 0;
  // Resolves `rel` from the physical folder `from` as the kernel does, visiting every folder an entry is looked up in.
  const walk = (from: string, rel: string): string => {
    let at = from;
    for (const part of rel.split("/")) {
      if (part === "" || part === ".") continue;
      if (part === "..") {
        at = path.dirname(at);
        continue;
      }
      visit(at);
      const next = path.join(at, part);
      if (lstatSync(next).isSymbolicLink()) {
        if (++hops > 40) throw refused(dir, "is behind too many symlinks");
        const target = readlinkSync(next);
        at = walk(path.isAbsolute(target) ? "/" : at, target);
      } else at = next;
    }
    return at;
  };
  try {
    // Unnormalised: ".." after a symlink goes where the kernel goes.
    visit(walk("/", path.isAbsolute(base) ? base : `${process.cwd()}/${base}`));
  } catch (err) {
    if (err instanceof PgstackError) throw err;
    throw new PgstackError("E_SESSION_DIR", `The deploy session's base folder ${base} cannot be used (${(err as NodeJS.ErrnoException).code}): set XDG_RUNTIME_DIR to a folder of yours and run again.`, { dir });
  }
}

/**
 * Makes sure `dir` is this user's private folder before anything is written in
 * it: created here with 0700 (no `-p`: its base must already exist), or
 * already there, not a symlink, this user's, 0700. Writes nothing otherwise.
 */
export async function preparePrivateDir(dir: string): Promise<void> {
  assertSafeBase(path.dirname(dir), dir);
  try {
    await fs.mkdir(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  // Also after our own mkdir: a umask cannot widen 0700, but a stricter one would leave a folder we cannot use.
  await assertPrivateDir(dir);
}

/** The file's identity, so that only what we created is ever removed. */
export interface FileRef {
  path: string;
  dev: number;
  ino: number;
  /** What we wrote, when a file: a freed inode number is soon reused, so dev and ino alone could be another's file. */
  content?: string;
}

/** Creates `file` with `content`, 0600, failing if anything (a symlink too) is already there: never writes through a link. */
export async function createExclusive(file: string, content: string): Promise<FileRef> {
  const handle = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await handle.writeFile(content);
    const { dev, ino } = await handle.stat();
    return { path: file, dev, ino, content };
  } finally {
    await handle.close();
  }
}

/** Removes `ref.path` only while it is still the very file we created (not a symlink, not another session's). */
export function removeIfOurs(ref: FileRef | undefined): void {
  if (!ref) return;
  try {
    const info = lstatSync(ref.path);
    if (info.dev !== ref.dev || info.ino !== ref.ino) return;
    if (ref.content !== undefined && readFileSync(ref.path, "utf8") !== ref.content) return;
    unlinkSync(ref.path);
  } catch {
    // already gone
  }
}
