/**
 * The Pulumi toolchain with no manual step, and with Pulumi's official plugins only:
 * - the CLI: the user's own `pulumi` when it is on PATH, otherwise the CLI pinned in
 *   infra/toolchain/go, built once from Go modules into a per-user cache;
 * - the Node.js language host: bundled with the user's CLI, or (for our CLI) an official
 *   `pulumi-language-nodejs` copied next to it, where Pulumi looks for bundled plugins;
 * - the command provider: Pulumi's plugin cache (`pulumi plugin install`), filled from an
 *   official `pulumi-resource-command` when one is at hand, else acquired by the user's CLI.
 * Official plugin binaries come from `PGSTACK_PULUMI_PLUGINS_DIR` or PATH. Plain
 * TypeScript: no @pulumi imports, so it runs before anything else.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { pgstackCacheDir } from "../core/cache";
import { PgstackError } from "../core/errors";
import { findOnPath, processAlive, runProcess } from "../core/process";
import { findProjectDir, packageDir } from "../core/project";

export { findOnPath };

export type Env = Record<string, string | undefined>;
export type Log = (line: string) => void;

export const PULUMI_BIN = "pulumi";
export const LANGUAGE_HOST_BIN = "pulumi-language-nodejs";
export const COMMAND_PROVIDER_BIN = "pulumi-resource-command";

/** A directory holding prebuilt official plugins (pulumi-language-nodejs, pulumi-resource-command). */
export const PLUGINS_DIR_ENV = "PGSTACK_PULUMI_PLUGINS_DIR";

/** The passphrase of the committed dev stack's salt: for the `dev` stack only (see passphraseProblem). */
export const DEV_PASSPHRASE = "pgstack-dev-only-passphrase";
export const DEV_STACK = "dev";
/** Local stack state (git-ignored, private to its owner), used unless PULUMI_BACKEND_URL is set. */
export const STATE_DIR = ".pulumi-state";

/** The user's Pulumi project (the folder of Pulumi.yaml from the working directory up); else pgstack's own folder. */
export const PROJECT_ROOT = findProjectDir() ?? packageDir();
export const GO_MODULE_DIR = path.join(packageDir(), "infra", "toolchain", "go");

/** A failure the user can fix; its message is one sentence saying how. */
/** The pulumi CLI or a plugin could not be found or placed: a PgstackError, so every entry point prints it the same way. */
export class ToolchainError extends PgstackError {
  constructor(message: string) {
    super("E_TOOLCHAIN", message);
    this.name = "ToolchainError";
  }
}

export interface Versions {
  /** @pulumi/pulumi, e.g. "3.248.0": the CLI and the language host. */
  pulumi: string;
  /** @pulumi/command, e.g. "1.2.1": the command provider plugin. */
  command: string;
}

export function readVersions(projectDir = PROJECT_ROOT): Versions {
  const read = (pkg: string) => {
    const file = path.join(projectDir, "node_modules", pkg, "package.json");
    try {
      return String(JSON.parse(fs.readFileSync(file, "utf8")).version).trim().replace(/^v/, "");
    } catch {
      throw new ToolchainError(`${pkg} is not installed in ${projectDir}/node_modules: run \`npm ci\` first.`);
    }
  };
  return { pulumi: read("@pulumi/pulumi"), command: read("@pulumi/command") };
}

/** pgstack's per-user cache folder: one definition, in core (cache.ts). */
export function cacheRoot(env: Env = process.env): string {
  return pgstackCacheDir(env);
}

/** One directory per CLI version, so a version bump builds anew and old clones keep theirs. */
export function toolchainDir(versions: Pick<Versions, "pulumi">, env: Env = process.env): string {
  return path.join(cacheRoot(env), `pulumi-v${versions.pulumi}`);
}

export function toolchainBinDir(versions: Pick<Versions, "pulumi">, env: Env = process.env): string {
  return path.join(toolchainDir(versions, env), "bin");
}


export function pulumiHome(env: Env = process.env): string {
  return env.PULUMI_HOME || path.join(env.HOME || os.homedir(), ".pulumi");
}

/** Where `pulumi plugin install resource <name> <version>` puts a provider. */
export function installedPluginPath(name: string, version: string, env: Env = process.env): string {
  return path.join(pulumiHome(env), "plugins", `resource-${name}-v${version}`, `pulumi-resource-${name}`);
}

/** Where one plugin must be for Pulumi to run it, and the official binary to put there when it is not. */
export interface PluginPlacement {
  /** Where Pulumi finds it. */
  target: string;
  /** An official binary to copy or install to `target` when `target` is missing or differs. */
  source?: string;
}

export interface ToolchainPlan {
  /** The pulumi executable to run. */
  pulumi: string;
  /** True when it is the user's own CLI from PATH. */
  userPulumi: boolean;
  /** Directories to put first on PATH, in this order. */
  pathDirs: string[];
  /** Where our CLI lives (built once). */
  binDir: string;
  /** Our CLI must be built before the plan can run. */
  buildCli: boolean;
  /** The language host next to our CLI; undefined with the user's CLI, which bundles its own. */
  languageHost?: PluginPlacement;
  /** The command provider in Pulumi's plugin cache. */
  commandProvider: PluginPlacement;
  versions: Versions;
}

export interface ResolveOptions {
  env?: Env;
  versions?: Versions;
  projectDir?: string;
  /** Expected source stamp of our CLI (default: computed from infra/toolchain/go). */
  cliStamp?: string;
}

/** A hash of go.mod and go.sum, stored beside the CLI, so a changed pin rebuilds it. */
export function sourceStamp(goDir = GO_MODULE_DIR): string {
  const hash = createHash("sha256");
  for (const f of ["go.mod", "go.sum"]) hash.update(`${f}\0`).update(fs.readFileSync(path.join(goDir, f)));
  return hash.digest("hex").slice(0, 16);
}

function readStamp(binary: string): string | undefined {
  try {
    return fs.readFileSync(`${binary}.stamp`, "utf8").trim();
  } catch {
    return undefined;
  }
}

/** An official plugin binary named by PGSTACK_PULUMI_PLUGINS_DIR, else found on PATH. */
function officialPlugin(name: string, env: Env, exclude: string[]): string | undefined {
  const dir = env[PLUGINS_DIR_ENV];
  if (dir) return path.join(path.resolve(dir), name);
  return findOnPath(name, env.PATH, exclude);
}

/**
 * Decides which pulumi to run and where its plugins come from, without changing
 * anything. The user's CLI wins and brings its own language host.
 */
export function resolveToolchain(opts: ResolveOptions = {}): ToolchainPlan {
  const env = opts.env ?? process.env;
  const versions = opts.versions ?? readVersions(opts.projectDir);
  const binDir = toolchainBinDir(versions, env);
  const exclude = [path.resolve(binDir)];
  // Our own bin dir may already be on PATH (nested runs): that pulumi is not the user's.
  const userPulumi = findOnPath(PULUMI_BIN, env.PATH, exclude);
  const commandProvider: PluginPlacement = {
    target: installedPluginPath("command", versions.command, env),
    source: officialPlugin(COMMAND_PROVIDER_BIN, env, exclude),
  };
  if (userPulumi) {
    return { pulumi: userPulumi, userPulumi: true, pathDirs: [], binDir, buildCli: false, commandProvider, versions };
  }
  const pulumi = path.join(binDir, PULUMI_BIN);
  return {
    pulumi,
    userPulumi: false,
    pathDirs: [binDir],
    binDir,
    buildCli: !fs.existsSync(pulumi) || readStamp(pulumi) !== (opts.cliStamp ?? sourceStamp()),
    languageHost: { target: path.join(binDir, LANGUAGE_HOST_BIN), source: officialPlugin(LANGUAGE_HOST_BIN, env, exclude) },
    commandProvider,
    versions,
  };
}

/** "go 1.25.11" from go.mod text, as [1, 25, 11]. */
export function goModGoVersion(goMod: string): number[] {
  const m = /^go\s+(\d+)\.(\d+)(?:\.(\d+))?\s*$/m.exec(goMod);
  if (!m) throw new ToolchainError("infra/toolchain/go/go.mod has no `go` line: restore it from git.");
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

/** "go1.26.8" (from `go env GOVERSION`) as [1, 26, 8]; undefined when unparseable. */
export function parseGoVersion(output: string): number[] | undefined {
  const m = /go(\d+)\.(\d+)(?:\.(\d+))?/.exec(output);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

function atLeast(have: number[], need: number[]): boolean {
  for (let i = 0; i < need.length; i++) {
    if ((have[i] ?? 0) !== need[i]) return (have[i] ?? 0) > need[i];
  }
  return true;
}

/** The one sentence for a missing or old Go. */
export function goNeededMessage(need: number[], found?: string): string {
  return (
    `Go ${need.join(".")} or newer is needed to build the Pulumi CLI once${found ? ` (found ${found})` : ""}: ` +
    "install it from https://go.dev/dl or your package manager, or put your own `pulumi` on PATH."
  );
}

/** The one sentence for an official plugin pgstack cannot find. */
export function pluginMissingMessage(name: string, version: string, looked: string): string {
  return (
    `The official ${name} ${version} is needed and was not found (${looked}): set ${PLUGINS_DIR_ENV} to a directory ` +
    `holding Pulumi's official pulumi-language-nodejs and pulumi-resource-command builds, or put your own \`pulumi\` on PATH.`
  );
}

/** The version a go.mod `require` pins for module, e.g. "v3.248.0". */
export function pinnedVersion(goMod: string, module: string): string | undefined {
  const escaped = module.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, "m").exec(goMod)?.[1];
}

const CLI_MODULE = "github.com/pulumi/pulumi/pkg/v3";
const SDK_MODULE = "github.com/pulumi/pulumi/sdk/v3";
const VERSION_VAR = "github.com/pulumi/pulumi/sdk/v3/go/common/version.Version";

/** The `go build` of the CLI; throws when the Go pin disagrees with node_modules. */
export function cliBuildStep(versions: Versions, goDir = GO_MODULE_DIR): { pkg: string; ldflags: string } {
  const pinned = pinnedVersion(fs.readFileSync(path.join(goDir, "go.mod"), "utf8"), CLI_MODULE);
  if (pinned !== `v${versions.pulumi}`) {
    throw new ToolchainError(
      `node_modules has @pulumi/pulumi ${versions.pulumi} but infra/toolchain/go pins the CLI at ${pinned}: ` +
        `run \`cd infra/toolchain/go && go get ${CLI_MODULE}@v${versions.pulumi} ${SDK_MODULE}@v${versions.pulumi} && go mod tidy\`.`,
    );
  }
  return { pkg: `${CLI_MODULE}/cmd/pulumi`, ldflags: `-s -w -X ${VERSION_VAR}=v${versions.pulumi}` };
}

/** The environment for `go build`: module mode from the committed go.sum only, no cgo, no go.work. */
export function goBuildEnv(env: Env = process.env): Env {
  return { ...env, GOFLAGS: "-mod=readonly -buildvcs=false", GOWORK: "off", GOTOOLCHAIN: "local", CGO_ENABLED: "0" };
}

export interface EnsureOptions extends ResolveOptions {
  log?: Log;
  /** How long to wait for another process's build; default 30 minutes. */
  lockTimeoutMs?: number;
}

/** Resolves the toolchain, builds our CLI if needed and puts the official plugins where Pulumi looks. */
export async function ensureToolchain(opts: EnsureOptions = {}): Promise<ToolchainPlan> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((line: string) => process.stderr.write(`[pgstack] ${line}\n`));
  let plan = resolveToolchain(opts);
  if (plan.buildCli) plan = await buildCli(plan, { ...opts, env, log });
  if (plan.languageHost) placeLanguageHost(plan.languageHost, plan.versions, env);
  await placeCommandProvider(plan, env, log);
  return plan;
}

function sameFile(a: string, b: string): boolean {
  try {
    const [sa, sb] = [fs.statSync(a), fs.statSync(b)];
    if (sa.size !== sb.size) return false;
    const hash = (f: string) => createHash("sha256").update(fs.readFileSync(f)).digest("hex");
    return hash(a) === hash(b);
  } catch {
    return false;
  }
}

function requireSource(placement: PluginPlacement, name: string, version: string, env: Env): string {
  const source = placement.source;
  if (source && fs.existsSync(source)) return source;
  const looked = env[PLUGINS_DIR_ENV] ? `${PLUGINS_DIR_ENV}=${env[PLUGINS_DIR_ENV]} has no ${name}` : `not on PATH, not in ${path.dirname(placement.target)}`;
  throw new ToolchainError(pluginMissingMessage(name, version, looked));
}

/**
 * A copy (not a link: Pulumi resolves its own executable's links before looking
 * beside it) of the official language host next to our CLI, where Pulumi runs
 * bundled plugins from without a warning.
 */
function placeLanguageHost(placement: PluginPlacement, versions: Versions, env: Env): void {
  const present = fs.existsSync(placement.target);
  if (present && (!placement.source || sameFile(placement.source, placement.target))) return;
  const source = requireSource(placement, LANGUAGE_HOST_BIN, `v${versions.pulumi}`, env);
  const tmp = `${placement.target}.${process.pid}.tmp`;
  fs.copyFileSync(source, tmp);
  fs.chmodSync(tmp, 0o755);
  fs.renameSync(tmp, placement.target);
}

/** `pulumi plugin install resource command <v> --file <official binary>` unless the cache already has that binary. */
async function placeCommandProvider(plan: ToolchainPlan, env: Env, log: Log): Promise<void> {
  const placement = plan.commandProvider;
  const present = fs.existsSync(placement.target);
  if (present && (!placement.source || sameFile(placement.source, placement.target))) return;
  // The user's CLI acquires a missing plugin itself, the way Pulumi always does.
  if (!present && !placement.source && plan.userPulumi) return;
  const source = requireSource(placement, COMMAND_PROVIDER_BIN, `v${plan.versions.command}`, env);
  const args = ["plugin", "install", "resource", "command", plan.versions.command, "--file", source, ...(present ? ["--reinstall"] : [])];
  const result = await capture(plan.pulumi, args, { ...env, PULUMI_SKIP_UPDATE_CHECK: "true" });
  if (result.code !== 0) {
    throw new ToolchainError(`\`pulumi plugin install resource command ${plan.versions.command} --file ${source}\` failed: ${lastLine(result.output)}.`);
  }
  log(`installed the official command provider v${plan.versions.command} into ${path.dirname(placement.target)}`);
}

function lastLine(text: string): string {
  return text.trim().split("\n").filter(Boolean).slice(-1)[0]?.replace(/[.\s]+$/, "") ?? "no output";
}

async function buildCli(plan: ToolchainPlan, opts: EnsureOptions & { env: Env; log: Log }): Promise<ToolchainPlan> {
  const { env, log } = opts;
  const need = goModGoVersion(fs.readFileSync(path.join(GO_MODULE_DIR, "go.mod"), "utf8"));
  const go = findOnPath("go", env.PATH);
  if (!go) throw new ToolchainError(goNeededMessage(need));
  const goVersion = (await capture(go, ["env", "GOVERSION"], goBuildEnv(env))).output.trim();
  const have = parseGoVersion(goVersion);
  if (!have || !atLeast(have, need)) throw new ToolchainError(goNeededMessage(need, goVersion || "an unknown version"));

  const dir = toolchainDir(plan.versions, env);
  fs.mkdirSync(plan.binDir, { recursive: true });
  const release = await acquireLock(path.join(dir, "build.lock"), log, opts.lockTimeoutMs ?? 30 * 60_000);
  try {
    const again = resolveToolchain({ ...opts, versions: plan.versions }); // another process may have built it meanwhile
    if (!again.buildCli) return again;
    const step = cliBuildStep(plan.versions);
    const tmp = fs.mkdtempSync(path.join(dir, ".build-"));
    const logFile = path.join(dir, "build.log");
    fs.writeFileSync(logFile, "");
    const started = Date.now();
    try {
      log(`building the Pulumi CLI v${plan.versions.pulumi} from Go modules (one time, several minutes)...`);
      const out = path.join(tmp, PULUMI_BIN);
      const code = await runLogged(go, ["build", "-trimpath", "-ldflags", step.ldflags, "-o", out, step.pkg], {
        cwd: GO_MODULE_DIR,
        env: goBuildEnv(env),
        logFile,
        heartbeat: (s) => log(`  still building the Pulumi CLI (${Math.round(s / 60)} min)...`),
      });
      if (code !== 0) {
        throw new ToolchainError(
          `Building the Pulumi CLI v${plan.versions.pulumi} with ${goVersion} failed (see ${logFile}): check that the Go module proxy is reachable, or put your own \`pulumi\` on PATH.`,
        );
      }
      // rename is atomic: a binary in bin/ is always a complete one. The stamp comes
      // second, so a crash in between means "rebuild", never "stale binary".
      fs.renameSync(out, plan.pulumi);
      fs.writeFileSync(`${plan.pulumi}.stamp`, sourceStamp());
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    log(`Pulumi CLI ready in ${plan.binDir} (built in ${Math.round((Date.now() - started) / 1000)} s).`);
    return resolveToolchain({ ...opts, versions: plan.versions });
  } finally {
    release();
  }
}

/**
 * An exclusive lock file holding the owner's pid. A lock whose process is gone
 * (killed build) is taken over; a live one is waited for.
 */
export async function acquireLock(file: string, log: Log, timeoutMs: number): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: "wx" });
      return () => fs.rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const owner = Number(fs.readFileSync(file, "utf8").trim() || "0");
    if (owner && !processAlive(owner)) {
      fs.rmSync(file, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new ToolchainError(`Another process (pid ${owner}) has been building the Pulumi toolchain for too long: stop it or delete ${file}.`);
    }
    if (!said) log(`waiting for another process (pid ${owner}) to finish building the Pulumi toolchain...`);
    said = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function capture(cmd: string, args: string[], env: Env): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await runProcess(cmd, args, { env: env as NodeJS.ProcessEnv });
  return { code, output: stdout + stderr };
}

function runLogged(
  cmd: string,
  args: string[],
  o: { cwd: string; env: Env; logFile: string; heartbeat: (seconds: number) => void },
): Promise<number> {
  return new Promise((resolve) => {
    const fd = fs.openSync(o.logFile, "a");
    fs.writeSync(fd, `$ (cd ${o.cwd} && ${cmd} ${args.join(" ")})\n`);
    const started = Date.now();
    const timer = setInterval(() => o.heartbeat((Date.now() - started) / 1000), 60_000);
    const child = spawn(cmd, args, { cwd: o.cwd, env: o.env as NodeJS.ProcessEnv, stdio: ["ignore", fd, fd] });
    const done = (code: number) => {
      clearInterval(timer);
      fs.closeSync(fd);
      resolve(code);
    };
    child.on("error", () => done(127));
    child.on("close", (code) => done(code ?? 1));
  });
}

/**
 * Why `stack` may not run with the environment's passphrase, or undefined when it
 * may: the committed dev passphrase protects nothing, so it is for the dev stack only.
 */
export function passphraseProblem(stack: string | undefined, env: Env): string | undefined {
  const own = env.PULUMI_CONFIG_PASSPHRASE_FILE !== undefined || (env.PULUMI_CONFIG_PASSPHRASE !== undefined && env.PULUMI_CONFIG_PASSPHRASE !== DEV_PASSPHRASE);
  if (own || stack === undefined || stack === DEV_STACK) return undefined;
  return (
    `Stack '${stack}' needs its own passphrase: export PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE ` +
    `(pgstack's built-in passphrase is for the ${DEV_STACK} stack only).`
  );
}

export interface PulumiEnvOptions {
  env?: Env;
  /** Directories to put first on PATH (a plan's pathDirs). */
  pathDirs?: string[];
  /** Create the local state directory when it is the backend (default true). */
  createStateDir?: boolean;
  /** The stack the command targets, when known: only `dev` gets the dev passphrase. */
  stack?: string;
  /** The CLI is ours (offline: plugins are placed by ensureToolchain, never downloaded). */
  offline?: boolean;
}

/** The environment for running pulumi on projectDir; user-set backend and passphrase win. */
export function pulumiEnv(projectDir: string, opts: PulumiEnvOptions = {}): Env {
  const env: Env = { ...(opts.env ?? process.env) };
  if (!env.PULUMI_BACKEND_URL) {
    const stateDir = path.join(path.resolve(projectDir), STATE_DIR);
    if (opts.createStateDir !== false) makePrivateDir(stateDir);
    env.PULUMI_BACKEND_URL = `file://${stateDir}`;
  }
  // An empty passphrase is a valid choice, so test for presence, not truthiness.
  if (opts.stack === DEV_STACK && env.PULUMI_CONFIG_PASSPHRASE === undefined && env.PULUMI_CONFIG_PASSPHRASE_FILE === undefined) {
    env.PULUMI_CONFIG_PASSPHRASE = DEV_PASSPHRASE;
  }
  const rest = (env.PATH ?? "").split(path.delimiter).filter((d) => d && !(opts.pathDirs ?? []).includes(d));
  env.PATH = [...(opts.pathDirs ?? []), ...rest].join(path.delimiter);
  // Plugins on PATH are copied into place by ensureToolchain; running them from PATH
  // would warn on every command.
  env.PULUMI_IGNORE_AMBIENT_PLUGINS ??= "true";
  if (opts.offline) env.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION ??= "true";
  env.PULUMI_SKIP_UPDATE_CHECK ??= "true";
  // The Automation API would otherwise refuse a CLI version it does not know.
  env.PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK ??= "true";
  return env;
}

/**
 * The local state holds the stacks' encrypted secrets and their salts: readable by
 * its owner only, also when an older pgstack created it open.
 */
export function makePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
}

/** The `--stack`/`-s` a pulumi command line names, if any (also `stack init|select <name>`). */
export function stackOfArgs(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--stack" || a === "-s") return args[i + 1];
    if (a.startsWith("--stack=")) return a.slice("--stack=".length);
  }
  const at = args.indexOf("stack");
  if (at >= 0 && ["init", "select", "rm"].includes(args[at + 1]) && args[at + 2] && !args[at + 2].startsWith("-")) return args[at + 2];
  return undefined;
}

/** Everything to run pulumi on projectDir for `stack`: the executable and its environment. */
export async function preparePulumi(
  projectDir: string,
  opts: EnsureOptions & { stack?: string } = {},
): Promise<{ pulumi: string; env: Env; plan: ToolchainPlan }> {
  const problem = passphraseProblem(opts.stack, opts.env ?? process.env);
  if (problem) throw new ToolchainError(problem);
  const plan = await ensureToolchain(opts);
  const env = pulumiEnv(projectDir, { env: opts.env, pathDirs: plan.pathDirs, stack: opts.stack, offline: !plan.userPulumi });
  return { pulumi: plan.pulumi, env, plan };
}

/** pulumi on one project and stack, ready to run. */
export interface Pulumi {
  /** Runs pulumi with stdio inherited (signals forwarded); resolves to its exit code. */
  run(args: string[], extraEnv?: Env): Promise<number>;
  /** Runs pulumi and captures its output (nothing shown). */
  capture(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** The toolchain prepared for `stack` on projectDir (the user's backend and passphrase win). */
export async function pulumiFor(stack: string | undefined, opts: EnsureOptions & { projectDir?: string } = {}): Promise<Pulumi> {
  const projectDir = opts.projectDir ?? PROJECT_ROOT;
  const { pulumi, env } = await preparePulumi(projectDir, { ...opts, stack });
  const run = (args: string[], extraEnv: Env = {}) =>
    new Promise<number>((resolve) => {
      const child = spawn(pulumi, args, { cwd: projectDir, env: { ...env, ...extraEnv } as NodeJS.ProcessEnv, stdio: "inherit" });
      // pulumi handles Ctrl-C itself (it cancels the update cleanly); don't die before it does.
      const forward = (signal: NodeJS.Signals) => child.kill(signal);
      process.on("SIGINT", forward);
      process.on("SIGTERM", forward);
      const done = (code: number) => {
        process.off("SIGINT", forward);
        process.off("SIGTERM", forward);
        resolve(code);
      };
      child.on("error", (err) => {
        process.stderr.write(`pgstack: could not run ${pulumi} (${err.message}): check that it is an executable pulumi CLI.\n`);
        done(1);
      });
      child.on("close", (code, signal) => done(code ?? (signal ? 130 : 1)));
    });
  const capture = async (args: string[]) => {
    const { code, stdout, stderr } = await runProcess(pulumi, args, { cwd: projectDir, env: env as NodeJS.ProcessEnv });
    return { code, stdout, stderr };
  };
  return { run, capture };
}
