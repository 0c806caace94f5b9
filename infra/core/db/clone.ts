import { constants, copyFileSync, existsSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import type { Client } from "pg";
import { messageOf } from "../errors";

/**
 * Whether a database copy on this server is a copy-on-write clone: PostgreSQL
 * 18's `file_copy_method = clone` with `STRATEGY = FILE_COPY` shares the
 * files' blocks, so a copy takes the same time whatever the size. The setting
 * alone proves nothing: on Linux PostgreSQL clones with copy_file_range, which
 * on ext4 silently does a full in-kernel copy. So the data directory must be
 * reachable from here and a real reflink (FICLONE, no fallback) must succeed
 * in it.
 */
export interface CloneDecision {
  clone: boolean;
  /** One sentence: why cloning is, or is not, in effect. */
  reason: string;
}

/** What the decision is made from (gathered by cloneSupport; a pure function decides, see cloneDecision). */
export interface CloneFacts {
  /** server_version_num. */
  versionNum: number;
  /** SHOW data_directory, or why it could not be read. */
  dataDirectory: { path: string } | { error: string };
  /** Whether that folder is this server's, seen from here (same port and start time in its postmaster.pid). */
  local: boolean;
  /** The data directory's file system type, when known (statfs). */
  fsType?: string;
  /** Whether the server accepted `file_copy_method = clone` (false: built without clone support). */
  settingOk: boolean | string;
  /** The reflink probe: "ok", or its error. */
  probe?: "ok" | { error: string; stage: "write" | "clone" };
}

/** The decision, from the facts: each "no" says why in one sentence. */
export function cloneDecision(f: CloneFacts): CloneDecision {
  const major = Math.floor(f.versionNum / 10000);
  if (major < 18) return { clone: false, reason: `the server is PostgreSQL ${major}; cloning a database needs 18 or newer` };
  if ("error" in f.dataDirectory) return { clone: false, reason: `the server's data directory could not be read (${f.dataDirectory.error}), so whether its file system clones cannot be checked` };
  if (!f.local) return { clone: false, reason: `the server's data directory ${f.dataDirectory.path} is not on this machine, so whether its file system clones cannot be checked` };
  if (f.settingOk !== true) return { clone: false, reason: `the server refuses file_copy_method = clone (${f.settingOk === false ? "not supported" : f.settingOk})` };
  const fs = f.fsType ? ` (${f.fsType})` : "";
  if (f.probe === undefined) return { clone: false, reason: `the data directory's file system${fs} was not probed` };
  if (f.probe !== "ok" && f.probe.stage === "write") return { clone: false, reason: `pgstack cannot write a probe file in the data directory ${f.dataDirectory.path} (${f.probe.error}), so whether its file system${fs} clones cannot be checked` };
  if (f.probe !== "ok") return { clone: false, reason: `the data directory's file system${fs} cannot reflink (${f.probe.error})` };
  return { clone: true, reason: `PostgreSQL ${major} with file_copy_method = clone on a file system${fs} that reflinks: the copy shares the files' blocks` };
}

/** statfs magic numbers of the file systems worth naming (Linux). */
const FS_TYPES: Record<number, string> = {
  0x58465342: "xfs",
  0xef53: "ext4",
  0x9123683e: "btrfs",
  0x2fc12fc1: "zfs",
  0x01021994: "tmpfs",
  0x794c7630: "overlayfs",
  0x6969: "nfs",
  0xf2f52010: "f2fs",
  0x65735546: "fuse",
};

function fsTypeOf(dir: string): string | undefined {
  try {
    const type = statfsSync(dir).type;
    return FS_TYPES[type] ?? (process.platform === "darwin" ? undefined : `type 0x${type.toString(16)}`);
  } catch {
    return undefined;
  }
}

/**
 * Whether `dataDir` is the data directory of the server we are connected to:
 * its postmaster.pid names the same port and start time. A folder of the same
 * path on this machine can belong to another server (a container's).
 */
export function sameServer(dataDir: string, port: number, startEpoch: number): boolean {
  try {
    const lines = readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n");
    return Number(lines[3]) === port && Math.abs(Number(lines[2]) - startEpoch) <= 2;
  } catch {
    return false;
  }
}

/**
 * A real reflink in the data directory: a small file pgstack writes under a
 * name of its own (PostgreSQL ignores unknown files at the top of its data
 * directory), cloned with FICLONE_FORCE (no silent copy), both removed.
 */
export function reflinkProbe(dir: string): "ok" | { error: string; stage: "write" | "clone" } {
  const base = path.join(dir, `pgstack_reflink_probe.${process.pid}.${randomBytes(4).toString("hex")}`);
  let stage: "write" | "clone" = "write";
  try {
    writeFileSync(base, "pgstack reflink probe\n", { flag: "wx", mode: 0o600 });
    stage = "clone";
    copyFileSync(base, `${base}.clone`, constants.COPYFILE_FICLONE_FORCE);
    return "ok";
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { error: code ?? messageOf(err).split("\n")[0], stage };
  } finally {
    rmSync(base, { force: true });
    rmSync(`${base}.clone`, { force: true });
  }
}

/** Whether copies on the server of `client` are clones (see CloneDecision). */
export async function cloneSupport(client: Client): Promise<CloneDecision> {
  const { rows } = await client.query<{ v: string; port: string; started: string }>(
    "SELECT current_setting('server_version_num') AS v, current_setting('port') AS port, extract(epoch FROM pg_postmaster_start_time())::bigint::text AS started",
  );
  const facts: CloneFacts = { versionNum: Number(rows[0].v), dataDirectory: { error: "not read" }, local: false, settingOk: false };
  if (Math.floor(facts.versionNum / 10000) < 18) return cloneDecision(facts);
  try {
    const dir = (await client.query<{ d: string }>("SELECT current_setting('data_directory') AS d")).rows[0].d;
    facts.dataDirectory = { path: dir };
  } catch (err) {
    facts.dataDirectory = { error: `${messageOf(err).split("\n")[0]}; it takes a superuser or pg_read_all_settings` };
    return cloneDecision(facts);
  }
  const dir = facts.dataDirectory.path;
  facts.local = existsSync(dir) && sameServer(dir, Number(rows[0].port), Number(rows[0].started));
  if (!facts.local) return cloneDecision(facts);
  facts.settingOk = await client
    .query("BEGIN; SET LOCAL file_copy_method = clone; ROLLBACK")
    .then(() => true as const)
    .catch(async (err) => {
      await client.query("ROLLBACK").catch(() => undefined);
      return messageOf(err).split("\n")[0];
    });
  facts.fsType = fsTypeOf(dir);
  facts.probe = reflinkProbe(dir);
  return cloneDecision(facts);
}
