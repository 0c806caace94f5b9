/**
 * A temporary copy of the project for end-to-end runs of the real pulumi CLI:
 * the repository minus node_modules (symlinked), state and data dirs, with a
 * file:// backend inside the temp dir and a free port for the embedded server.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePort, isRunning, stopCluster } from "../../infra/core/cluster/embedded";
import { ensureToolchain, pulumiEnv, type Env } from "../../infra/toolchain/pulumi";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
const SKIP = new Set(["node_modules", ".pulumi-state", ".pgstack", ".git", "dist", "coverage", "bench"]);

export interface PulumiResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface E2eProject {
  root: string;
  dir: string;
  stateDir: string;
  port: number;
  env: Env;
  pulumi(args: string[], extraEnv?: Env): Promise<PulumiResult>;
  /** One of the project's scripts as `npm run <script> -- args` runs it (infra/scripts/<script>.ts through tsx). */
  script(script: string, args: string[], extraEnv?: Env): Promise<PulumiResult>;
  /** The pgstack CLI (the package's bin) in the project copy. */
  cli(args: string[], extraEnv?: Env): Promise<PulumiResult>;
  /** Writes migrations/<name>/migration.sql in the copy. */
  addMigration(name: string, sql: string): Promise<void>;
  /** Destroys the stack if its embedded server still runs (and stops the server even if destroy fails), then removes the copy. */
  teardown(stack: string): Promise<void>;
  cleanup(): Promise<void>;
}

/** The result, or an error carrying everything the command printed; records its time in `timings`. */
export function expectOk(result: PulumiResult, what: string, timings?: string[]): PulumiResult {
  timings?.push(`${what}: ${(result.ms / 1000).toFixed(1)} s`);
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  return result;
}

export async function createE2eProject(stack = "dev"): Promise<E2eProject> {
  const plan = await ensureToolchain({ log: (line) => process.stderr.write(`[e2e] ${line}\n`) });
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-e2e-"));
  // As root the server runs as `postgres`, which must reach the data dir.
  await fs.chmod(root, 0o755);
  const dir = path.join(root, "project");
  await fs.mkdir(dir, { mode: 0o755 });
  for (const entry of await fs.readdir(REPO_ROOT)) {
    if (SKIP.has(entry)) continue;
    await fs.cp(path.join(REPO_ROOT, entry), path.join(dir, entry), {
      recursive: true,
      filter: (src) => !src.split(path.sep).some((part) => SKIP.has(part) && src !== REPO_ROOT),
    });
  }
  await fs.symlink(path.join(REPO_ROOT, "node_modules"), path.join(dir, "node_modules"));
  // The committed salt belongs to the dev passphrase; this copy has its own.
  for (const file of (await fs.readdir(dir)).filter((f) => /^Pulumi\..+\.yaml$/.test(f))) {
    const text = await fs.readFile(path.join(dir, file), "utf8");
    await fs.writeFile(path.join(dir, file), text.replace(/^encryptionsalt:.*\n?/m, ""));
  }
  const stateDir = path.join(root, "state");
  await fs.mkdir(stateDir);
  const env = pulumiEnv(dir, {
    env: { ...process.env, PULUMI_BACKEND_URL: `file://${stateDir}`, PULUMI_CONFIG_PASSPHRASE: "e2e-passphrase" },
    pathDirs: plan.pathDirs,
    offline: !plan.userPulumi,
  });
  const port = await freePort();

  const pulumi = (args: string[], extraEnv: Env = {}) => runIn(plan.pulumi, [...args, "--non-interactive"], extraEnv);
  const script = (name: string, args: string[], extraEnv: Env = {}) =>
    runIn(process.execPath, ["--require", "tsx/cjs", path.join("infra", "scripts", `${name}.ts`), ...args], extraEnv);
  const cli = (args: string[], extraEnv: Env = {}) => runIn(process.execPath, [path.join("infra", "bin", "pgstack.js"), ...args], extraEnv);

  const runIn = (command: string, args: string[], extraEnv: Env) => runCaptured(command, args, dir, { ...env, ...extraEnv } as NodeJS.ProcessEnv);

  try {
    const init = await pulumi(["stack", "init", stack]);
    if (init.code !== 0) throw new Error(`pulumi stack init failed: ${init.stderr}`);
    const set = await pulumi(["config", "set", "--path", "pgstack:embedded.port", String(port), "--stack", stack]);
    if (set.code !== 0) throw new Error(`pulumi config set failed: ${set.stderr}`);
  } catch (err) {
    await fs.rm(root, { recursive: true, force: true });
    throw err;
  }

  return {
    root,
    dir,
    stateDir,
    port,
    env,
    pulumi,
    script,
    cli,
    addMigration: async (name, sql) => {
      await fs.mkdir(path.join(dir, "migrations", name), { recursive: true });
      await fs.writeFile(path.join(dir, "migrations", name, "migration.sql"), sql);
    },
    teardown: async (stackName) => {
      const dataDir = path.join(dir, ".pgstack", stackName, "data");
      if (await isRunning(dataDir).catch(() => false)) {
        await pulumi(["destroy", "--yes", "--stack", stackName]);
        // Never leave a server behind, even when destroy itself failed.
        await stopCluster(dataDir).catch(() => undefined);
      }
      await fs.rm(root, { recursive: true, force: true });
    },
    cleanup: () => fs.rm(root, { recursive: true, force: true }),
  };
}

/** Every file under dir, as text (for looking for secrets in the state). */
export async function readTree(dir: string): Promise<string> {
  let text = "";
  for (const entry of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    text += await fs.readFile(path.join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name), "utf8").catch(() => "");
  }
  return text;
}

/** The steps of `pulumi preview --json`, as `op urn-name` strings for whatever is not `same`. */
export function changedSteps(previewJson: string): { op: string; name: string; type: string }[] {
  const doc = JSON.parse(previewJson) as { steps?: { op: string; urn: string }[] };
  return (doc.steps ?? [])
    .filter((s) => s.op !== "same")
    .map((s) => {
      const parts = s.urn.split("::");
      return { op: s.op, name: parts[parts.length - 1], type: parts[parts.length - 2].split("$").pop()! };
    });
}

/** Runs a command in `cwd` with `env`, capturing its output and exit code. */
export function runCaptured(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<PulumiResult> {
  return new Promise<PulumiResult>((resolve, reject) => {
    const started = Date.now();
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr, ms: Date.now() - started }));
  });
}
