import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { findProjectDir, packageDir } from "../core/project";

/**
 * The `dir` of every command: the project root, relative to the Pulumi
 * program's working directory, which is also the command provider's (Pulumi
 * runs both in the directory of Pulumi.yaml's `main`, here `infra/`, so this
 * is ".."). Relative, so the state does not depend on where the clone lives.
 */
export function commandDirFor(projectDir: string, cwd: string = process.cwd()): string {
  return path.relative(cwd, projectDir) || ".";
}

/**
 * A component's `dependsOn` option, plus `more`, for its children: components
 * take their dependencies as a resource option (not as an argument, which
 * Pulumi would store and diff), and hand them down explicitly.
 */
export function childDependencies(dependsOn: pulumi.ResourceOptions["dependsOn"], ...more: pulumi.Resource[]): pulumi.Input<pulumi.Input<pulumi.Resource>[]> {
  if (dependsOn === undefined) return more;
  if (Array.isArray(dependsOn)) return [...dependsOn, ...more];
  if (pulumi.Resource.isInstance(dependsOn)) return [dependsOn, ...more];
  return pulumi.output(dependsOn as pulumi.Input<pulumi.Resource | pulumi.Resource[]>).apply((d) => [...(Array.isArray(d) ? d : [d]), ...more]);
}

/** Quotes one shell word (only when it needs it, so the state stays readable). */
export function shellWord(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * The pgstack CLI, relative to the project root: the one door of the command
 * resources, so nothing in the state depends on where the clone lives.
 */
export const PGSTACK_BIN = "infra/bin/pgstack.js";

/**
 * The package's folder relative to the Pulumi project the program runs in
 * (where the commands run): "" in this repository, `node_modules/pgstack/`
 * in an application that installed it. Relative, for the same reason as `dir`.
 */
let fromProject: string | undefined;
export function packageFromProject(): string {
  if (fromProject === undefined) {
    const project = findProjectDir();
    fromProject = project ? packagePathFrom(project, packageDir()) : "";
  }
  return fromProject;
}

/** `<package relative to project>/`, or "" when they are one folder. Pure. */
export function packagePathFrom(projectDir: string, pkgDir: string): string {
  const rel = path.relative(projectDir, pkgDir).split(path.sep).join("/");
  return rel ? `${rel}/` : "";
}

/**
 * `node infra/bin/pgstack.js <args...>`, every argument quoted: how every
 * command resource runs project code. Arguments are never secret: URLs and
 * passwords go through `environment` (DATABASE_URL) or files.
 */
export function pgstackCommand(args: string[]): string {
  return ["node", shellWord(packageFromProject() + PGSTACK_BIN), ...args.map(shellWord)].join(" ");
}

/** The docker and external engines' identity command ($DATABASE_URL in its environment). */
export function identityCommandText(engine: string): string {
  return pgstackCommand(["identity", "--engine", engine, "--json"]);
}

/**
 * The migration steps' door: a shell script that hands the step to the
 * update's resident pgstack session through a small client (about 1 ms to
 * start instead of Node.js's 65 ms and the CLI's load), or runs the CLI
 * itself when it cannot; the same command text in every update.
 */
export const PGSTACK_STEP = "infra/bin/pgstack-step";

/** `sh infra/bin/pgstack-step <args...>`, every argument quoted. */
export function pgstackStepCommand(args: string[]): string {
  return ["sh", shellWord(packageFromProject() + PGSTACK_STEP), ...args.map(shellWord)].join(" ");
}

/**
 * Parses the one JSON line a pgstack command (`--json`) prints on stdout. The command
 * provider stores stdout as a secret whenever an input is secret (the
 * DATABASE_URL), so callers `pulumi.unsecret` the fields they know are not.
 */
export function parseScriptOutput<T>(stdout: string, what: string): T {
  const line = stdout.trim().split("\n").filter(Boolean).pop() ?? "";
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new pulumi.RunError(`${what} printed no JSON result; see its output above.`);
  }
}
