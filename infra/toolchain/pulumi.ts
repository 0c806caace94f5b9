/**
 * The Pulumi toolchain with no manual step: the user's own `pulumi` when it is on
 * PATH, otherwise the Pulumi CLI (pinned Go module) and our Node.js language host
 * and command provider (infra/toolchain/go/cmd), built once into a per-user cache
 * shared by every clone. Plain TypeScript: no @pulumi imports, so it runs before
 * anything else.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export type Env = Record<string, string | undefined>;
export type Log = (line: string) => void;

export const PULUMI_BIN = "pulumi";
export const LANGUAGE_HOST_BIN = "pulumi-language-nodejs";
export const COMMAND_PROVIDER_BIN = "pulumi-resource-command";
export type BinaryName = typeof PULUMI_BIN | typeof LANGUAGE_HOST_BIN | typeof COMMAND_PROVIDER_BIN;
const ALL_BINARIES: BinaryName[] = [PULUMI_BIN, LANGUAGE_HOST_BIN, COMMAND_PROVIDER_BIN];

/** Used only when neither PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE is set: dev stacks only. */
export const DEV_PASSPHRASE = "pgstack-dev-only-passphrase";
/** Local stack state (git-ignored), used unless PULUMI_BACKEND_URL is set. */
export const STATE_DIR = ".pulumi-state";

export const PROJECT_ROOT = path.resolve(__dirname, "..", "..");
export const GO_MODULE_DIR = path.join(__dirname, "go");

/** A failure the user can fix; its message is one sentence saying how. */
export class ToolchainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ToolchainError";
  }
}

export interface Versions {
  /** @pulumi/pulumi, e.g. "3.248.0". */
  pulumi: string;
  /** @pulumi/command, e.g. "4.5.0" (its package.json says "v4.5.0"). */
  command: string;
}

function stripV(version: string): string {
  return version.trim().replace(/^v/, "");
}

export function readVersions(projectDir = PROJECT_ROOT): Versions {
  const read = (pkg: string) => {
    const file = path.join(projectDir, "node_modules", pkg, "package.json");
    try {
      return stripV(JSON.parse(fs.readFileSync(file, "utf8")).version);
    } catch {
      throw new ToolchainError(`${pkg} is not installed in ${projectDir}/node_modules: run \`npm ci\` first.`);
    }
  };
  return { pulumi: read("@pulumi/pulumi"), command: read("@pulumi/command") };
}

export function cacheRoot(env: Env = process.env): string {
  const base = env.XDG_CACHE_HOME || path.join(env.HOME || os.homedir(), ".cache");
  return path.join(base, "pgstack");
}

/** One directory per version pair, so a version bump builds anew and old clones keep theirs. */
export function toolchainDir(versions: Versions, env: Env = process.env): string {
  return path.join(cacheRoot(env), `pulumi-v${versions.pulumi}-command-v${versions.command}`);
}

export function toolchainBinDir(versions: Versions, env: Env = process.env): string {
  return path.join(toolchainDir(versions, env), "bin");
}

/** Like `which`: the first executable file named `name` in pathEnv. */
export function findOnPath(name: string, pathEnv: string | undefined, exclude: string[] = []): string | undefined {
  for (const dir of (pathEnv ?? "").split(path.delimiter)) {
    if (!dir || exclude.includes(path.resolve(dir))) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Where `pulumi plugin install resource command <v>` puts the provider. */
export function installedPluginPath(name: string, version: string, env: Env = process.env): string {
  const home = env.PULUMI_HOME || path.join(env.HOME || os.homedir(), ".pulumi");
  return path.join(home, "plugins", `resource-${name}-v${version}`, `pulumi-resource-${name}`);
}

export interface ToolchainPlan {
  /** The pulumi executable to run. */
  pulumi: string;
  /** True when it is the user's own CLI from PATH. */
  userPulumi: boolean;
  /** Directories to put first on PATH, in this order. */
  pathDirs: string[];
  /** Where built binaries live. */
  binDir: string;
  /** Binaries to build into binDir before the plan can run. */
  missing: BinaryName[];
  /** The pulumi-resource-command to use (see linkProjectPlugins). */
  commandProvider: string;
  versions: Versions;
}

export interface ResolveOptions {
  env?: Env;
  versions?: Versions;
  projectDir?: string;
  exists?: (file: string) => boolean;
  /** Expected source stamps (default: computed from infra/toolchain/go). */
  stamps?: Record<BinaryName, string>;
}

/**
 * A hash of what a binary is built from. Stored beside it, so that a change to
 * go.mod/go.sum or to our own Go sources rebuilds it (versions are in the dir name).
 */
export function sourceStamp(name: BinaryName, goDir = GO_MODULE_DIR): string {
  const files = ["go.mod", "go.sum"];
  if (name !== PULUMI_BIN) {
    const dir = path.join("cmd", name);
    for (const f of fs.readdirSync(path.join(goDir, dir)).sort()) {
      if (f.endsWith(".go") && !f.endsWith("_test.go")) files.push(path.join(dir, f));
    }
  }
  const hash = createHash("sha256");
  for (const f of files) hash.update(`${f}\0`).update(fs.readFileSync(path.join(goDir, f)));
  return hash.digest("hex").slice(0, 16);
}

export function sourceStamps(goDir = GO_MODULE_DIR): Record<BinaryName, string> {
  return Object.fromEntries(ALL_BINARIES.map((b) => [b, sourceStamp(b, goDir)])) as Record<BinaryName, string>;
}

function readStamp(binary: string): string | undefined {
  try {
    return fs.readFileSync(`${binary}.stamp`, "utf8").trim();
  } catch {
    return undefined;
  }
}

/**
 * Decides which pulumi to run and what must be built, without building anything.
 * The user's CLI wins; it brings its own language host, but the command provider
 * comes from our cache unless the user installed that plugin version themselves.
 */
export function resolveToolchain(opts: ResolveOptions = {}): ToolchainPlan {
  const env = opts.env ?? process.env;
  const versions = opts.versions ?? readVersions(opts.projectDir);
  const exists = opts.exists ?? fs.existsSync;
  const stamps = opts.stamps ?? sourceStamps();
  const binDir = toolchainBinDir(versions, env);
  const built = (name: BinaryName) =>
    exists(path.join(binDir, name)) && readStamp(path.join(binDir, name)) === stamps[name];
  // Our own bin dir may already be on PATH (nested runs): that pulumi is not the user's.
  const userPulumi = findOnPath(PULUMI_BIN, env.PATH, [path.resolve(binDir)]);
  const ourProvider = path.join(binDir, COMMAND_PROVIDER_BIN);
  if (userPulumi) {
    const installed = installedPluginPath("command", versions.command, env);
    const userProvider = exists(installed) ? installed : findOnPath(COMMAND_PROVIDER_BIN, env.PATH, [path.resolve(binDir)]);
    return {
      pulumi: userPulumi,
      userPulumi: true,
      // The user's directory first so its pulumi and bundled language host win over anything we built.
      pathDirs: userProvider ? [] : [path.dirname(userPulumi), binDir],
      binDir,
      missing: userProvider || built(COMMAND_PROVIDER_BIN) ? [] : [COMMAND_PROVIDER_BIN],
      commandProvider: userProvider ?? ourProvider,
      versions,
    };
  }
  return {
    pulumi: path.join(binDir, PULUMI_BIN),
    userPulumi: false,
    pathDirs: [binDir],
    binDir,
    missing: ALL_BINARIES.filter((b) => !built(b)),
    commandProvider: ourProvider,
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

/** The one sentence for a missing or old Go; `providerOnly` when the user's own pulumi is in use. */
export function goNeededMessage(need: number[], opts: { found?: string; providerOnly?: string } = {}): string {
  const v = need.join(".");
  const found = opts.found ? ` (found ${opts.found})` : "";
  return opts.providerOnly
    ? `Go ${v} or newer is needed to build the command provider plugin v${opts.providerOnly} once${found}: ` +
        `install it from https://go.dev/dl or your package manager, or run \`pulumi plugin install resource command ${opts.providerOnly}\`.`
    : `Go ${v} or newer is needed to build the Pulumi CLI once${found}: ` +
        "install it from https://go.dev/dl or your package manager, or put your own `pulumi` on PATH.";
}

/** The version a go.mod `require` pins for module, e.g. "v3.248.0". */
export function pinnedVersion(goMod: string, module: string): string | undefined {
  const escaped = module.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, "m").exec(goMod)?.[1];
}

const CLI_MODULE = "github.com/pulumi/pulumi/pkg/v3";
const SDK_MODULE = "github.com/pulumi/pulumi/sdk/v3";
const VERSION_VAR = "github.com/pulumi/pulumi/sdk/v3/go/common/version.Version";

interface BuildStep {
  name: BinaryName;
  label: string;
  cwd: string;
  pkg: string;
  ldflags: string;
}

/** The `go build` for each binary; throws when the Go pin disagrees with node_modules. */
export function buildSteps(versions: Versions, goDir = GO_MODULE_DIR): Record<BinaryName, BuildStep> {
  const cliMod = fs.readFileSync(path.join(goDir, "go.mod"), "utf8");
  const pinned = pinnedVersion(cliMod, CLI_MODULE);
  if (pinned !== `v${versions.pulumi}`) {
    throw new ToolchainError(
      `node_modules has @pulumi/pulumi ${versions.pulumi} but infra/toolchain/go pins the CLI at ${pinned}: ` +
        `run \`cd infra/toolchain/go && go get ${CLI_MODULE}@v${versions.pulumi} ${SDK_MODULE}@v${versions.pulumi} && go mod tidy\`.`,
    );
  }
  return {
    [PULUMI_BIN]: {
      name: PULUMI_BIN,
      label: `the Pulumi CLI v${versions.pulumi}`,
      cwd: goDir,
      pkg: `${CLI_MODULE}/cmd/pulumi`,
      ldflags: `-s -w -X ${VERSION_VAR}=v${versions.pulumi}`,
    },
    [LANGUAGE_HOST_BIN]: {
      name: LANGUAGE_HOST_BIN,
      label: `the Node.js language host v${versions.pulumi}`,
      cwd: goDir,
      pkg: `./cmd/${LANGUAGE_HOST_BIN}`,
      ldflags: `-s -w -X ${VERSION_VAR}=v${versions.pulumi}`,
    },
    [COMMAND_PROVIDER_BIN]: {
      name: COMMAND_PROVIDER_BIN,
      label: `the command provider v${versions.command}`,
      cwd: goDir,
      pkg: `./cmd/${COMMAND_PROVIDER_BIN}`,
      // The engine asks for the plugin version @pulumi/command registers.
      ldflags: `-s -w -X main.version=${versions.command}`,
    },
  };
}

/** The environment for `go build`: module mode from the committed go.sum only, no cgo, no go.work. */
export function goBuildEnv(env: Env = process.env): Env {
  return {
    ...env,
    GOFLAGS: "-mod=readonly -buildvcs=false",
    GOWORK: "off",
    GOTOOLCHAIN: "local",
    CGO_ENABLED: "0",
  };
}

export interface EnsureOptions extends ResolveOptions {
  log?: Log;
  /** How long to wait for another process's build; default 30 minutes. */
  lockTimeoutMs?: number;
}

/** Resolves the toolchain and builds whatever is missing (once, under a lock). */
export async function ensureToolchain(opts: EnsureOptions = {}): Promise<ToolchainPlan> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((line: string) => process.stderr.write(`[pgstack] ${line}\n`));
  let plan = resolveToolchain(opts);
  if (plan.missing.length === 0) return plan;

  const need = goModGoVersion(fs.readFileSync(path.join(GO_MODULE_DIR, "go.mod"), "utf8"));
  const providerOnly = plan.userPulumi ? plan.versions.command : undefined;
  const go = findOnPath("go", env.PATH);
  if (!go) throw new ToolchainError(goNeededMessage(need, { providerOnly }));
  const goVersion = await capture(go, ["env", "GOVERSION"], env);
  const have = parseGoVersion(goVersion);
  if (!have || !atLeast(have, need)) {
    throw new ToolchainError(goNeededMessage(need, { providerOnly, found: goVersion.trim() || "an unknown version" }));
  }

  const dir = toolchainDir(plan.versions, env);
  fs.mkdirSync(plan.binDir, { recursive: true });
  const release = await acquireLock(path.join(dir, "build.lock"), log, opts.lockTimeoutMs ?? 30 * 60_000);
  try {
    plan = resolveToolchain({ ...opts, versions: plan.versions }); // another process may have built it meanwhile
    if (plan.missing.length === 0) return plan;
    const steps = buildSteps(plan.versions);
    const tmp = fs.mkdtempSync(path.join(dir, ".build-"));
    const logFile = path.join(dir, "build.log");
    fs.writeFileSync(logFile, "");
    const started = Date.now();
    try {
      for (const name of plan.missing) {
        const step = steps[name];
        log(`building ${step.label} from Go modules${name === PULUMI_BIN ? " (one time, several minutes)" : ""}...`);
        const out = path.join(tmp, name);
        const code = await runLogged(go, ["build", "-trimpath", "-ldflags", step.ldflags, "-o", out, step.pkg], {
          cwd: step.cwd,
          env: goBuildEnv(env),
          logFile,
          heartbeat: (s) => log(`  still building ${step.label} (${Math.round(s / 60)} min)...`),
        });
        if (code !== 0) {
          throw new ToolchainError(
            `Building ${step.label} with ${goVersion.trim()} failed (see ${logFile}): check that the Go module proxy is reachable, or ` +
              (providerOnly ? `run \`pulumi plugin install resource command ${providerOnly}\`.` : "put your own `pulumi` on PATH."),
          );
        }
        // rename is atomic: a binary in bin/ is always a complete one. The stamp comes
        // second, so a crash in between means "rebuild", never "stale binary".
        fs.renameSync(out, path.join(plan.binDir, name));
        fs.writeFileSync(path.join(plan.binDir, `${name}.stamp`), sourceStamp(name));
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    log(`Pulumi toolchain ready in ${plan.binDir} (built in ${Math.round((Date.now() - started) / 1000)} s).`);
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
    if (owner && !isAlive(owner)) {
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

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function capture(cmd: string, args: string[], env: Env): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: goBuildEnv(env) as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("error", () => resolve(""));
    child.on("close", () => resolve(out));
  });
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

export interface PulumiEnvOptions {
  env?: Env;
  /** Directories to put first on PATH (a plan's pathDirs). */
  pathDirs?: string[];
  /** Create the local state directory when it is the backend (default true). */
  createStateDir?: boolean;
}

/** The environment for running pulumi on projectDir; user-set backend and passphrase win. */
export function pulumiEnv(projectDir: string, opts: PulumiEnvOptions = {}): Env {
  const env: Env = { ...(opts.env ?? process.env) };
  if (!env.PULUMI_BACKEND_URL) {
    const stateDir = path.join(path.resolve(projectDir), STATE_DIR);
    if (opts.createStateDir !== false) fs.mkdirSync(stateDir, { recursive: true });
    env.PULUMI_BACKEND_URL = `file://${stateDir}`;
  }
  // An empty passphrase is a valid choice, so test for presence, not truthiness.
  if (env.PULUMI_CONFIG_PASSPHRASE === undefined && env.PULUMI_CONFIG_PASSPHRASE_FILE === undefined) {
    env.PULUMI_CONFIG_PASSPHRASE = DEV_PASSPHRASE;
  }
  const rest = (env.PATH ?? "").split(path.delimiter).filter((d) => d && !(opts.pathDirs ?? []).includes(d));
  env.PATH = [...(opts.pathDirs ?? []), ...rest].join(path.delimiter);
  // Plugins come from PATH or the user's installs; nothing is downloaded behind the user's back.
  env.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION ??= "true";
  env.PULUMI_SKIP_UPDATE_CHECK ??= "true";
  // The Automation API would otherwise refuse a CLI version it does not know.
  env.PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK ??= "true";
  return env;
}

/** Where Pulumi.yaml's `plugins.providers` entry for `command` points (relative to the project). */
export const PROJECT_PLUGIN_DIR = path.join(STATE_DIR, "plugins", "command");

/**
 * Links the chosen command provider into PROJECT_PLUGIN_DIR. Why: a provider found
 * only on PATH makes pulumi warn "using pulumi-resource-command from $PATH" on every
 * run; a project plugin (Pulumi.yaml `plugins.providers`) is used silently.
 */
export function linkProjectPlugins(projectDir: string, plan: Pick<ToolchainPlan, "commandProvider">): string {
  const dir = path.join(path.resolve(projectDir), PROJECT_PLUGIN_DIR);
  const link = path.join(dir, COMMAND_PROVIDER_BIN);
  fs.mkdirSync(dir, { recursive: true });
  let current: string | undefined;
  try {
    current = fs.readlinkSync(link);
  } catch {
    // absent (or not a link): replaced below
  }
  if (current !== plan.commandProvider) {
    // Symlink then rename, so a concurrent pulumi never sees the link missing.
    const tmp = `${link}.${process.pid}.tmp`;
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(plan.commandProvider, tmp);
    fs.renameSync(tmp, link);
  }
  return link;
}

/** Everything to run pulumi on projectDir: the executable and its environment. */
export async function preparePulumi(
  projectDir: string,
  opts: EnsureOptions = {},
): Promise<{ pulumi: string; env: Env; plan: ToolchainPlan }> {
  const plan = await ensureToolchain(opts);
  linkProjectPlugins(projectDir, plan);
  return { pulumi: plan.pulumi, env: pulumiEnv(projectDir, { env: opts.env, pathDirs: plan.pathDirs }), plan };
}
