/**
 * Secrets through the real pulumi CLI and the project's own scripts: the dev
 * passphrase is for the dev stack only, the local state is private, a secret
 * config key in plain text is refused.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { DEV_PASSPHRASE } from "../../infra/toolchain/pulumi";
import { createE2eProject, type E2eProject } from "../support/e2e-project";

jest.setTimeout(300_000);

let project: E2eProject;
/** The project's default backend (`.pulumi-state` in the copy) and no passphrase of the user's. */
const defaults = { PULUMI_BACKEND_URL: undefined, PULUMI_CONFIG_PASSPHRASE: undefined, PULUMI_CONFIG_PASSPHRASE_FILE: undefined };

beforeAll(async () => {
  project = await createE2eProject("dev");
});
afterAll(async () => project?.cleanup());

describe("secrets of a stack", () => {
  it("a new non-dev stack refuses the committed dev passphrase, with one sentence, and is not created", async () => {
    const init = await project.script("pulumi", ["stack", "init", "staging"], defaults);
    expect(init.code).toBe(1);
    expect(init.stderr.trim()).toBe(
      "pgstack: Stack 'staging' needs its own passphrase: export PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE (pgstack's built-in passphrase is for the dev stack only).",
    );
    // Exporting the dev passphrase by hand does not get around it either.
    const again = await project.script("pulumi", ["stack", "init", "staging"], { ...defaults, PULUMI_CONFIG_PASSPHRASE: DEV_PASSPHRASE });
    expect(again.code).toBe(1);
    const ls = await project.script("pulumi", ["stack", "ls", "--json"], defaults);
    expect(ls.stdout).not.toContain("staging");
  });

  it("the local state is private to its owner", async () => {
    expect((await project.script("pulumi", ["stack", "ls"], defaults)).code).toBe(0);
    const stateDir = path.join(project.dir, ".pulumi-state");
    expect((await fs.stat(stateDir)).mode & 0o077).toBe(0);
    // An older pgstack's open directory is closed on the next command.
    await fs.chmod(stateDir, 0o755);
    expect((await project.script("pulumi", ["stack", "ls"], defaults)).code).toBe(0);
    expect((await fs.stat(stateDir)).mode & 0o077).toBe(0);
  });

  it("the program refuses the dev passphrase on a non-dev stack run by pulumi directly", async () => {
    const env = { PULUMI_CONFIG_PASSPHRASE: DEV_PASSPHRASE };
    expect((await project.pulumi(["stack", "init", "qa"], env)).code).toBe(0);
    await project.pulumi(["config", "set", "pgstack:engine", "external", "--stack", "qa"], env);
    await project.pulumi(["config", "set", "--secret", "pgstack:externalUrl", "postgresql://u:p@127.0.0.1:1/x", "--stack", "qa"], env);
    const preview = await project.pulumi(["preview", "--stack", "qa"], env);
    expect(preview.code).not.toBe(0);
    expect(preview.stdout + preview.stderr).toContain("the stack's secrets would be encrypted with pgstack's committed dev passphrase");
  });

  it("an external URL set without --secret is refused and named, and not echoed", async () => {
    const url = "postgresql://app:plain-Pa55@127.0.0.1:1/app";
    expect((await project.pulumi(["stack", "init", "ext"])).code).toBe(0);
    await project.pulumi(["config", "set", "pgstack:engine", "external", "--stack", "ext"]);
    await project.pulumi(["config", "set", "pgstack:externalUrl", url, "--stack", "ext"]);
    const preview = await project.pulumi(["preview", "--stack", "ext"]);
    expect(preview.code).not.toBe(0);
    expect(preview.stdout + preview.stderr).toContain(
      "pgstack:externalUrl is stored in plain text in Pulumi.ext.yaml (set it again with `pulumi config set --secret pgstack:externalUrl <value>`)",
    );
    expect(preview.stdout + preview.stderr).not.toContain("plain-Pa55");
  });
});
