import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  acquireLock,
  cliBuildStep,
  COMMAND_PROVIDER_BIN,
  DEV_PASSPHRASE,
  ensureToolchain,
  GO_MODULE_DIR,
  goModGoVersion,
  installedPluginPath,
  LANGUAGE_HOST_BIN,
  parseGoVersion,
  passphraseProblem,
  PLUGINS_DIR_ENV,
  PROJECT_ROOT,
  pulumiEnv,
  readVersions,
  resolveToolchain,
  sourceStamp,
  stackOfArgs,
  ToolchainError,
  toolchainBinDir,
  toolchainDir,
} from "../../infra/toolchain/pulumi";

const versions = { pulumi: "3.248.0", command: "1.2.1" };
let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "pgstack-toolchain-"));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function executable(dir: string, name: string, body = "#!/bin/sh\nexit 0\n"): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, body, { mode: 0o755 });
  return file;
}

describe("cache location", () => {
  test("is keyed by the CLI version under XDG_CACHE_HOME", () => {
    expect(toolchainDir(versions, { XDG_CACHE_HOME: "/x/cache", HOME: "/home/u" })).toBe("/x/cache/pgstack/pulumi-v3.248.0");
    expect(toolchainBinDir({ pulumi: "3.249.0" }, { XDG_CACHE_HOME: "/x/cache" })).toBe("/x/cache/pgstack/pulumi-v3.249.0/bin");
  });

  test("falls back to $HOME/.cache", () => {
    expect(toolchainDir(versions, { HOME: "/home/u" })).toBe("/home/u/.cache/pgstack/pulumi-v3.248.0");
  });

  test("versions come from node_modules, with a leading v stripped", () => {
    for (const [pkg, version] of [["@pulumi/pulumi", "3.248.0"], ["@pulumi/command", "v1.2.1"]]) {
      fs.mkdirSync(path.join(tmp, "node_modules", pkg), { recursive: true });
      fs.writeFileSync(path.join(tmp, "node_modules", pkg, "package.json"), JSON.stringify({ version }));
    }
    expect(readVersions(tmp)).toEqual(versions);
    expect(() => readVersions(path.join(tmp, "nowhere"))).toThrow(/run `npm ci` first/);
  });

  test("the project pins the official command provider line, not the mislabeled 4.5.0 re-publish", () => {
    expect(readVersions(PROJECT_ROOT).command).toBe("1.2.1");
  });
});

describe("resolveToolchain", () => {
  test("with no pulumi on PATH: our CLI (built when missing or stale), official plugins from PGSTACK_PULUMI_PLUGINS_DIR", () => {
    const plugins = path.join(tmp, "official");
    const env = { XDG_CACHE_HOME: tmp, PATH: path.join(tmp, "empty"), HOME: tmp, [PLUGINS_DIR_ENV]: plugins };
    const bin = toolchainBinDir(versions, env);
    const plan = resolveToolchain({ env, versions, cliStamp: "s1" });
    expect(plan).toMatchObject({ pulumi: path.join(bin, "pulumi"), userPulumi: false, pathDirs: [bin], buildCli: true });
    expect(plan.languageHost).toEqual({ target: path.join(bin, LANGUAGE_HOST_BIN), source: path.join(plugins, LANGUAGE_HOST_BIN) });
    expect(plan.commandProvider).toEqual({
      target: path.join(tmp, ".pulumi/plugins/resource-command-v1.2.1/pulumi-resource-command"),
      source: path.join(plugins, COMMAND_PROVIDER_BIN),
    });

    executable(bin, "pulumi"); // no stamp: an interrupted build
    expect(resolveToolchain({ env, versions, cliStamp: "s1" }).buildCli).toBe(true);
    fs.writeFileSync(path.join(bin, "pulumi.stamp"), "s1");
    expect(resolveToolchain({ env, versions, cliStamp: "s1" }).buildCli).toBe(false);
    expect(resolveToolchain({ env, versions, cliStamp: "s2" }).buildCli).toBe(true); // a changed pin rebuilds
    // Our own bin dir on PATH (a nested run) is not "the user's pulumi".
    expect(resolveToolchain({ env: { ...env, PATH: bin }, versions, cliStamp: "s1" }).userPulumi).toBe(false);
  });

  test("official plugins on PATH are a source too", () => {
    const onPath = path.join(tmp, "on-path");
    const provider = executable(onPath, COMMAND_PROVIDER_BIN);
    const host = executable(onPath, LANGUAGE_HOST_BIN);
    const env = { XDG_CACHE_HOME: tmp, HOME: tmp, PATH: onPath };
    const plan = resolveToolchain({ env, versions, cliStamp: "s" });
    expect(plan.commandProvider.source).toBe(provider);
    expect(plan.languageHost?.source).toBe(host);
  });

  test("the user's pulumi is used with its bundled language host", () => {
    const userBin = path.join(tmp, "user-bin");
    const userPulumi = executable(userBin, "pulumi");
    const env = { XDG_CACHE_HOME: tmp, PATH: `${userBin}:/usr/bin`, PULUMI_HOME: path.join(tmp, "pulumi-home") };
    const plan = resolveToolchain({ env, versions, cliStamp: "s" });
    expect(plan).toMatchObject({ pulumi: userPulumi, userPulumi: true, pathDirs: [], buildCli: false });
    expect(plan.languageHost).toBeUndefined();
    expect(plan.commandProvider.target).toBe(installedPluginPath("command", "1.2.1", env));
    expect(plan.commandProvider.target).toBe(path.join(tmp, "pulumi-home/plugins/resource-command-v1.2.1/pulumi-resource-command"));
  });

  test("the CLI's source stamp follows go.mod and go.sum", () => {
    const go = path.join(tmp, "go");
    fs.mkdirSync(go);
    fs.writeFileSync(path.join(go, "go.mod"), "a");
    fs.writeFileSync(path.join(go, "go.sum"), "b");
    const before = sourceStamp(go);
    fs.writeFileSync(path.join(go, "go.sum"), "bumped");
    expect(sourceStamp(go)).not.toBe(before);
  });
});

describe("placing the official plugins", () => {
  /** A fake CLI whose `plugin install ... --file F` copies F where Pulumi's cache keeps it. */
  function fakeCli(bin: string): void {
    executable(
      bin,
      "pulumi",
      '#!/bin/sh\n[ "$1 $2" = "plugin install" ] || exit 3\nd="$PULUMI_HOME/plugins/resource-$4-v$5"; mkdir -p "$d"; cp "$7" "$d/pulumi-resource-$4"\necho "$*" >> "$PULUMI_HOME/calls"\n',
    );
  }

  test("copies the language host next to our CLI and installs the provider with `pulumi plugin install --file`", async () => {
    const plugins = path.join(tmp, "official");
    executable(plugins, LANGUAGE_HOST_BIN, "#!/bin/sh\necho host-v1\n");
    executable(plugins, COMMAND_PROVIDER_BIN, "#!/bin/sh\necho provider-v1\n");
    const env = { XDG_CACHE_HOME: tmp, HOME: tmp, PATH: "/usr/bin:/bin", PULUMI_HOME: path.join(tmp, "ph"), [PLUGINS_DIR_ENV]: plugins };
    const bin = toolchainBinDir(versions, env);
    fakeCli(bin);
    fs.writeFileSync(path.join(bin, "pulumi.stamp"), sourceStamp());

    const plan = await ensureToolchain({ env, versions, log: () => {} });
    expect(fs.readFileSync(plan.languageHost!.target, "utf8")).toContain("host-v1");
    expect(fs.lstatSync(plan.languageHost!.target).isSymbolicLink()).toBe(false);
    expect(fs.readFileSync(plan.commandProvider.target, "utf8")).toContain("provider-v1");
    expect(fs.readFileSync(path.join(tmp, "ph/calls"), "utf8")).toBe(
      `plugin install resource command 1.2.1 --file ${path.join(plugins, COMMAND_PROVIDER_BIN)}\n`,
    );

    // Up to date: nothing is installed again; a different official build is.
    await ensureToolchain({ env, versions, log: () => {} });
    expect(fs.readFileSync(path.join(tmp, "ph/calls"), "utf8").split("\n").filter(Boolean)).toHaveLength(1);
    executable(plugins, COMMAND_PROVIDER_BIN, "#!/bin/sh\necho provider-v2\n");
    executable(plugins, LANGUAGE_HOST_BIN, "#!/bin/sh\necho host-v2\n");
    await ensureToolchain({ env, versions, log: () => {} });
    expect(fs.readFileSync(plan.commandProvider.target, "utf8")).toContain("provider-v2");
    expect(fs.readFileSync(plan.languageHost!.target, "utf8")).toContain("host-v2");
    expect(fs.readFileSync(path.join(tmp, "ph/calls"), "utf8")).toMatch(/--reinstall\n$/);
  });

  test("without official plugins anywhere, one sentence names the variable to set", async () => {
    const env = { XDG_CACHE_HOME: tmp, HOME: tmp, PATH: "/usr/bin:/bin", PULUMI_HOME: path.join(tmp, "ph") };
    const bin = toolchainBinDir(versions, env);
    fakeCli(bin);
    fs.writeFileSync(path.join(bin, "pulumi.stamp"), sourceStamp());
    const err = await ensureToolchain({ env, versions, log: () => {} }).catch((e) => e);
    expect(err).toBeInstanceOf(ToolchainError);
    expect(err.message).toMatch(
      /^The official pulumi-language-nodejs v3\.248\.0 is needed and was not found \(.*\): set PGSTACK_PULUMI_PLUGINS_DIR to a directory holding Pulumi's official .* or put your own `pulumi` on PATH\.$/,
    );
  });

  test("the user's CLI acquires a missing provider itself: nothing is installed for it", async () => {
    const userBin = path.join(tmp, "user-bin");
    fakeCli(userBin);
    const env = { XDG_CACHE_HOME: tmp, HOME: tmp, PATH: `${userBin}:/usr/bin:/bin`, PULUMI_HOME: path.join(tmp, "ph") };
    const plan = await ensureToolchain({ env, versions, log: () => {} });
    expect(plan.userPulumi).toBe(true);
    expect(fs.existsSync(path.join(tmp, "ph/calls"))).toBe(false);
  });
});

describe("pulumiEnv", () => {
  test("defaults: a private local file backend, bin dirs first, no ambient plugins, offline with our CLI", () => {
    const env = pulumiEnv(tmp, { env: { PATH: "/usr/bin:/cache/bin:/bin", HOME: "/h" }, pathDirs: ["/cache/bin"], offline: true });
    expect(env.PULUMI_BACKEND_URL).toBe(`file://${tmp}/.pulumi-state`);
    expect(fs.statSync(path.join(tmp, ".pulumi-state")).mode & 0o777).toBe(0o700);
    expect(env.PULUMI_CONFIG_PASSPHRASE).toBeUndefined(); // no stack named: no dev passphrase
    expect(env.PATH).toBe("/cache/bin:/usr/bin:/bin");
    expect(env).toMatchObject({
      PULUMI_IGNORE_AMBIENT_PLUGINS: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
      HOME: "/h",
    });
    expect(env.PULUMI_HOME).toBeUndefined();
    // The user's CLI may acquire plugins the way Pulumi does.
    expect(pulumiEnv(tmp, { env: {} }).PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION).toBeUndefined();
  });

  test("an existing open state directory is made private", () => {
    fs.mkdirSync(path.join(tmp, ".pulumi-state"), { mode: 0o755 });
    fs.chmodSync(path.join(tmp, ".pulumi-state"), 0o755);
    pulumiEnv(tmp, { env: {} });
    expect(fs.statSync(path.join(tmp, ".pulumi-state")).mode & 0o777).toBe(0o700);
  });

  test("the dev passphrase goes to the dev stack only", () => {
    expect(pulumiEnv(tmp, { env: {}, stack: "dev" }).PULUMI_CONFIG_PASSPHRASE).toBe(DEV_PASSPHRASE);
    expect(pulumiEnv(tmp, { env: {}, stack: "staging" }).PULUMI_CONFIG_PASSPHRASE).toBeUndefined();
    expect(passphraseProblem("prod", {})).toBe(
      "Stack 'prod' needs its own passphrase: export PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE (pgstack's built-in passphrase is for the dev stack only).",
    );
    expect(passphraseProblem("prod", { PULUMI_CONFIG_PASSPHRASE: DEV_PASSPHRASE })).toMatch(/^Stack 'prod' needs its own passphrase/);
    expect(passphraseProblem("prod", { PULUMI_CONFIG_PASSPHRASE: "theirs" })).toBeUndefined();
    expect(passphraseProblem("prod", { PULUMI_CONFIG_PASSPHRASE_FILE: "/secret" })).toBeUndefined();
    expect(passphraseProblem("dev", {})).toBeUndefined();
  });

  test("the stack a pulumi command line names", () => {
    expect(stackOfArgs(["up", "--stack", "prod"])).toBe("prod");
    expect(stackOfArgs(["up", "-s", "staging", "--yes"])).toBe("staging");
    expect(stackOfArgs(["preview", "--stack=dev"])).toBe("dev");
    expect(stackOfArgs(["stack", "init", "prod"])).toBe("prod");
    expect(stackOfArgs(["stack", "select", "dev", "--create"])).toBe("dev");
    expect(stackOfArgs(["version"])).toBeUndefined();
  });

  test("keeps what the user set", () => {
    const user = { PATH: "/bin", PULUMI_BACKEND_URL: "s3://bucket", PULUMI_CONFIG_PASSPHRASE: "", PULUMI_HOME: "/ph" };
    const env = pulumiEnv(path.join(tmp, "p"), { env: user, stack: "dev" });
    expect(env).toMatchObject(user); // an empty passphrase is a real choice
    expect(fs.existsSync(path.join(tmp, "p"))).toBe(false);

    const withFile = pulumiEnv(tmp, { env: { PULUMI_CONFIG_PASSPHRASE_FILE: "/secret/pass" }, stack: "dev" });
    expect(withFile.PULUMI_CONFIG_PASSPHRASE).toBeUndefined();
    expect(withFile.PULUMI_CONFIG_PASSPHRASE_FILE).toBe("/secret/pass");
  });
});

describe("building the CLI", () => {
  const noGo = () => ({ XDG_CACHE_HOME: tmp, HOME: tmp, PATH: path.join(tmp, "empty") });

  test("without Go, one sentence says what to install", async () => {
    const err = await ensureToolchain({ env: noGo(), versions, log: () => {} }).catch((e) => e);
    expect(err).toBeInstanceOf(ToolchainError);
    expect(err.message).toMatch(
      /^Go 1\.\d+(\.\d+)? or newer is needed to build the Pulumi CLI once: install it from https:\/\/go\.dev\/dl or your package manager, or put your own `pulumi` on PATH\.$/,
    );
  });

  test("an old Go is named in the sentence", async () => {
    const goBin = path.join(tmp, "go-bin");
    executable(goBin, "go", "#!/bin/sh\necho go1.20.1\n");
    const err = await ensureToolchain({ env: { ...noGo(), PATH: goBin }, versions, log: () => {} }).catch((e) => e);
    expect(err.message).toMatch(/^Go 1\.\d+.* or newer is needed to build the Pulumi CLI once \(found go1\.20\.1\): /);
  });

  test("Go versions are compared from go.mod and `go env GOVERSION`", () => {
    expect(goModGoVersion("module x\n\ngo 1.25.11\n")).toEqual([1, 25, 11]);
    expect(goModGoVersion("go 1.25\n")).toEqual([1, 25, 0]);
    expect(parseGoVersion("go1.26.8\n")).toEqual([1, 26, 8]);
    expect(parseGoVersion("devel")).toBeUndefined();
  });

  test("the Go pin matches node_modules, and a mismatch says how to update it", () => {
    expect(cliBuildStep(readVersions(PROJECT_ROOT)).ldflags).toContain(`version.Version=v${readVersions(PROJECT_ROOT).pulumi}`);
    expect(() => cliBuildStep({ pulumi: "3.999.0", command: "1.2.1" }, GO_MODULE_DIR)).toThrow(
      /@pulumi\/pulumi 3\.999\.0 but infra\/toolchain\/go pins the CLI at v3\.\d+\.\d+: run `cd infra\/toolchain\/go && go get/,
    );
  });

  test("nothing home-made speaks Pulumi's plugin protocol", () => {
    expect(fs.readdirSync(GO_MODULE_DIR).sort()).toEqual(["go.mod", "go.sum"]);
  });

  test("the build lock is exclusive, and a dead owner's lock is taken over", async () => {
    const lock = path.join(tmp, "build.lock");
    const lines: string[] = [];
    const release = await acquireLock(lock, (l) => lines.push(l), 1000);
    await expect(acquireLock(lock, (l) => lines.push(l), 1200)).rejects.toThrow(/building the Pulumi toolchain for too long/);
    expect(lines[0]).toMatch(/^waiting for another process \(pid \d+\)/);
    release();

    const dead = spawnSync(process.execPath, ["-e", "0"]).pid; // exited: its pid is free
    fs.writeFileSync(lock, String(dead));
    const again = await acquireLock(lock, () => {}, 1000);
    expect(fs.readFileSync(lock, "utf8")).toBe(String(process.pid));
    again();
    expect(fs.existsSync(lock)).toBe(false);
  });
});

test("`npm run pulumi` without Go or pulumi exits 1 with one sentence and no stack trace", () => {
  const tsx = path.join(PROJECT_ROOT, "node_modules", ".bin", "tsx");
  const result = spawnSync(tsx, [path.join(PROJECT_ROOT, "infra/scripts/pulumi.ts"), "version"], {
    env: { PATH: path.dirname(process.execPath), HOME: tmp, XDG_CACHE_HOME: tmp },
    encoding: "utf8",
  });
  expect(result.status).toBe(1);
  expect(result.stderr).toMatch(/^pgstack: Go 1\.\d+.* or newer is needed to build the Pulumi CLI once: .*PATH\.\n$/);
});
