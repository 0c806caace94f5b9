/**
 * pgstack as it was before the performance work of issue #6 (commit
 * BEFORE_REF: the CLI compiled by tsx at every start, and the runner sending
 * BEGIN, the ledger INSERT, each statement, the ledger UPDATE and COMMIT as
 * separate queries), extracted read-only from git into bench/.work/before so
 * the benchmarks can run before and after side by side in the same run.
 * `--before <ref>` picks another commit.
 */
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { log, REPO, WORK } from "./common";

export const BEFORE_REF = "24e72827c18047fe9c70794c7312e01717e9ac95";
export const BEFORE_DIR = path.join(WORK, "before");
/** The old CLI, relative to the repository root (the chain's commands run there). */
export const BEFORE_BIN_REL = path.relative(REPO, path.join(BEFORE_DIR, "infra", "bin", "pgstack.js"));

export async function ensureBefore(ref = BEFORE_REF): Promise<{ bin: string; commit: string }> {
  const commit = execFileSync("git", ["rev-parse", `${ref}^{commit}`], { cwd: REPO }).toString().trim();
  log(`extracting pgstack at ${commit.slice(0, 12)} into ${path.relative(REPO, BEFORE_DIR)} (the "before" contender)`);
  await fs.rm(BEFORE_DIR, { recursive: true, force: true });
  await fs.mkdir(BEFORE_DIR, { recursive: true });
  // `git archive` only reads the object store: the work tree and index are untouched.
  const tar = execFileSync("git", ["archive", "--format=tar", commit, "infra", "tsconfig.json", "package.json"], { cwd: REPO, maxBuffer: 1 << 28 });
  execFileSync("tar", ["-x", "-C", BEFORE_DIR], { input: tar });
  await fs.symlink(path.join(REPO, "node_modules"), path.join(BEFORE_DIR, "node_modules"));
  return { bin: path.join(REPO, BEFORE_BIN_REL), commit };
}
