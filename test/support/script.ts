import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnCollect, type CliResult } from "./cli";
import { REPO_ROOT } from "./fixtures";

/**
 * Runs a command resource's `create` text the way pulumi-command does:
 * `/bin/sh -c <create>` in the command's `dir`, with its `environment` added
 * to the process environment (entries set to undefined are removed).
 */
export function runCommandText(create: string, env: Record<string, string | undefined>, cwd: string): Promise<CliResult> {
  return spawnCollect("/bin/sh", ["-c", create], cwd, env);
}

/**
 * A throwaway project root: `infra` and `node_modules` linked to this
 * repository's, so project scripts run from it as from the real root, while
 * whatever they write under the working directory (`.pgstack/snapshots`)
 * stays in the throwaway folder.
 */
export async function scratchProject(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-project-"));
  await fs.symlink(path.join(REPO_ROOT, "infra"), path.join(dir, "infra"));
  await fs.symlink(path.join(REPO_ROOT, "node_modules"), path.join(dir, "node_modules"));
  return dir;
}

/** A folder holding only a `node` link: a PATH on which node runs but no PostgreSQL client tool is found. */
export async function pathWithOnlyNode(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-bin-"));
  await fs.symlink(process.execPath, path.join(dir, "node"));
  return dir;
}
