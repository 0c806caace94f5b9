import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  acquireLock,
  buildSteps,
  COMMAND_PROVIDER_BIN,
  DEV_PASSPHRASE,
  ensureToolchain,
  GO_MODULE_DIR,
  goModGoVersion,
  installedPluginPath,
  LANGUAGE_HOST_BIN,
  linkProjectPlugins,
  parseGoVersion,
  PROJECT_ROOT,
  PULUMI_BIN,
  pulumiEnv,
  readVersions,
  resolveToolchain,
  sourceStamp,
  ToolchainError,
  toolchainBinDir,
  toolchainDir,
} from "../../infra/toolchain/pulumi";

const versions = { pulumi: "3.248.0", command: "4.5.0" };
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

const stamps = { [PULUMI_BIN]: "s1", [LANGUAGE_HOST_BIN]: "s2", [COMMAND_PROVIDER_BIN]: "s3" };

/** A binary as ensureToolchain leaves it: the file and its source stamp. */
function built(dir: string, name: keyof typeof stamps, stamp = stamps[name]): void {
  executable(dir, name);
  fs.writeFileSync(path.join(dir, `${name}.stamp`), stamp);
}

describe("cache location", () => {
  test("is keyed by both versions under XDG_CACHE_HOME", () => {
    expect(toolchainDir(versions, { XDG_CACHE_HOME: "/x/cache", HOME: "/home/u" })).toBe(
      "/x/cache/pgstack/pulumi-v3.248.0-command-v4.5.0",
    );
    expect(toolchainBinDir({ pulumi: "3.249.0", command: "4.5.0" }, { XDG_CACHE_HOME: "/x/cache" })).toBe(
      "/x/cache/pgstack/pulumi-v3.249.0-command-v4.5.0/bin",
    );
  });

  test("falls back to $HOME/.cache", () => {
    expect(toolchainDir(versions, { HOME: "/home/u" })).toBe("/home/u/.cache/pgstack/pulumi-v3.248.0-command-v4.5.0");
  });

  test("versions come from node_modules, with @pulumi/command's leading v stripped", () => {
    for (const [pkg, version] of [["@pulumi/pulumi", "3.248.0"], ["@pulumi/command", "v4.5.0"]]) {
      fs.mkdirSync(path.join(tmp, "node_modules", pkg), { recursive: true });
      fs.writeFileSync(path.join(tmp, "node_modules", pkg, "package.json"), JSON.stringify({ version }));
    }
    expect(readVersions(tmp)).toEqual(versions);
    expect(() => readVersions(path.join(tmp, "nowhere"))).toThrow(/run `npm ci` first/);
  });
});

describe("resolveToolchain", () => {
  test("with no pulumi on PATH, everything comes from the cache and is built when missing", () => {
    const env = { XDG_CACHE_HOME: tmp, PATH: path.join(tmp, "empty"), HOME: tmp };
    const plan = resolveToolchain({ env, versions, stamps });
    const bin = toolchainBinDir(versions, env);
    expect(plan).toMatchObject({ pulumi: path.join(bin, "pulumi"), userPulumi: false, pathDirs: [bin] });
    expect(plan.missing).toEqual([PULUMI_BIN, LANGUAGE_HOST_BIN, COMMAND_PROVIDER_BIN]);

    built(bin, PULUMI_BIN);
    built(bin, LANGUAGE_HOST_BIN);
    executable(bin, COMMAND_PROVIDER_BIN); // no stamp: an interrupted build
    expect(resolveToolchain({ env, versions, stamps }).missing).toEqual([COMMAND_PROVIDER_BIN]);
    built(bin, COMMAND_PROVIDER_BIN);
    expect(resolveToolchain({ env, versions, stamps }).missing).toEqual([]);
    // Changed Go sources (another stamp) rebuild just that binary.
    expect(resolveToolchain({ env, versions, stamps: { ...stamps, [LANGUAGE_HOST_BIN]: "s2b" } }).missing).toEqual([
      LANGUAGE_HOST_BIN,
    ]);
    // Our own bin dir on PATH (a nested run) is not "the user's pulumi".
    expect(resolveToolchain({ env: { ...env, PATH: bin }, versions, stamps }).userPulumi).toBe(false);
  });

  test("the user's pulumi is used; only the command provider may need building", () => {
    const userBin = path.join(tmp, "user-bin");
    const userPulumi = executable(userBin, "pulumi");
    const env = { XDG_CACHE_HOME: tmp, PATH: `${userBin}:/usr/bin`, PULUMI_HOME: path.join(tmp, "pulumi-home") };
    const bin = toolchainBinDir(versions, env);

    const plan = resolveToolchain({ env, versions, stamps });
    expect(plan).toMatchObject({ pulumi: userPulumi, userPulumi: true, missing: [COMMAND_PROVIDER_BIN] });
    expect(plan.pathDirs).toEqual([userBin, bin]);
    expect(plan.commandProvider).toBe(path.join(bin, COMMAND_PROVIDER_BIN));

    // The plugin installed the official way wins, and nothing is built.
    const installed = installedPluginPath("command", "4.5.0", env);
    executable(path.dirname(installed), COMMAND_PROVIDER_BIN);
    expect(installed).toBe(path.join(tmp, "pulumi-home/plugins/resource-command-v4.5.0/pulumi-resource-command"));
    expect(resolveToolchain({ env, versions, stamps })).toMatchObject({ missing: [], pathDirs: [], commandProvider: installed });
  });

  test("source stamps follow go.mod/go.sum for the CLI and also our sources for our binaries", () => {
    const go = path.join(tmp, "go");
    for (const f of ["go.mod", "go.sum", "cmd/pulumi-resource-command/main.go", "cmd/pulumi-resource-command/main_test.go"]) {
      fs.mkdirSync(path.dirname(path.join(go, f)), { recursive: true });
      fs.writeFileSync(path.join(go, f), f);
    }
    const cli = sourceStamp(PULUMI_BIN, go);
    const provider = sourceStamp(COMMAND_PROVIDER_BIN, go);
    fs.writeFileSync(path.join(go, "cmd/pulumi-resource-command/main_test.go"), "tests do not count");
    expect(sourceStamp(COMMAND_PROVIDER_BIN, go)).toBe(provider);
    fs.writeFileSync(path.join(go, "cmd/pulumi-resource-command/main.go"), "changed");
    expect(sourceStamp(COMMAND_PROVIDER_BIN, go)).not.toBe(provider);
    expect(sourceStamp(PULUMI_BIN, go)).toBe(cli);
    fs.writeFileSync(path.join(go, "go.sum"), "bumped");
    expect(sourceStamp(PULUMI_BIN, go)).not.toBe(cli);
  });
});

describe("pulumiEnv", () => {
  test("defaults: local file backend (created), dev passphrase, bin dirs first, no plugin downloads", () => {
    const env = pulumiEnv(tmp, { env: { PATH: "/usr/bin:/cache/bin:/bin", HOME: "/h" }, pathDirs: ["/cache/bin"] });
    expect(env.PULUMI_BACKEND_URL).toBe(`file://${tmp}/.pulumi-state`);
    expect(fs.statSync(path.join(tmp, ".pulumi-state")).isDirectory()).toBe(true);
    expect(env.PULUMI_CONFIG_PASSPHRASE).toBe(DEV_PASSPHRASE);
    expect(env.PATH).toBe("/cache/bin:/usr/bin:/bin");
    expect(env).toMatchObject({
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
      HOME: "/h",
    });
    expect(env.PULUMI_HOME).toBeUndefined();
  });

  test("keeps what the user set", () => {
    const user = { PATH: "/bin", PULUMI_BACKEND_URL: "s3://bucket", PULUMI_CONFIG_PASSPHRASE: "", PULUMI_HOME: "/ph" };
    const env = pulumiEnv(path.join(tmp, "p"), { env: user });
    expect(env).toMatchObject(user); // an empty passphrase is a real choice
    expect(fs.existsSync(path.join(tmp, "p"))).toBe(false);

    const withFile = pulumiEnv(tmp, { env: { PULUMI_CONFIG_PASSPHRASE_FILE: "/secret/pass" } });
    expect(withFile.PULUMI_CONFIG_PASSPHRASE).toBeUndefined();
    expect(withFile.PULUMI_CONFIG_PASSPHRASE_FILE).toBe("/secret/pass");
  });
});

describe("building", () => {
  const noGo = () => ({ XDG_CACHE_HOME: tmp, HOME: tmp, PATH: path.join(tmp, "empty") });

  test("without Go, one sentence says what to install", async () => {
    const err = await ensureToolchain({ env: noGo(), versions, log: () => {} }).catch((e) => e);
    expect(err).toBeInstanceOf(ToolchainError);
    expect(err.message).toMatch(
      /^Go 1\.\d+(\.\d+)? or newer is needed to build the Pulumi CLI once: install it from https:\/\/go\.dev\/dl or your package manager, or put your own `pulumi` on PATH\.$/,
    );
  });

  test("with the user's pulumi but no Go, it says how to get the provider plugin instead", async () => {
    const userBin = path.join(tmp, "user-bin");
    executable(userBin, "pulumi");
    const env = { ...noGo(), PATH: userBin, PULUMI_HOME: path.join(tmp, "ph") };
    const err = await ensureToolchain({ env, versions, log: () => {} }).catch((e) => e);
    expect(err.message).toMatch(/command provider plugin v4\.5\.0 once: .* `pulumi plugin install resource command 4\.5\.0`\.$/);
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

  test("the Go pins match node_modules, and a mismatch says how to update them", () => {
    const steps = buildSteps(readVersions(PROJECT_ROOT));
    expect(steps[PULUMI_BIN].ldflags).toContain(`version.Version=v${readVersions(PROJECT_ROOT).pulumi}`);
    expect(steps[COMMAND_PROVIDER_BIN].ldflags).toContain(`main.version=${readVersions(PROJECT_ROOT).command}`);
    expect(() => buildSteps({ pulumi: "3.999.0", command: "4.5.0" }, GO_MODULE_DIR)).toThrow(
      /@pulumi\/pulumi 3\.999\.0 but infra\/toolchain\/go pins the CLI at v3\.\d+\.\d+: run `cd infra\/toolchain\/go && go get/,
    );
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

test("the command provider is linked where Pulumi.yaml's project plugin points", () => {
  const a = executable(path.join(tmp, "a"), COMMAND_PROVIDER_BIN);
  const b = executable(path.join(tmp, "b"), COMMAND_PROVIDER_BIN);
  const link = linkProjectPlugins(tmp, { commandProvider: a });
  expect(link).toBe(path.join(tmp, ".pulumi-state/plugins/command", COMMAND_PROVIDER_BIN));
  expect(fs.readlinkSync(link)).toBe(a);
  linkProjectPlugins(tmp, { commandProvider: b });
  expect(fs.readlinkSync(link)).toBe(b);
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
