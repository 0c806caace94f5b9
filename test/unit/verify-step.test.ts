/**
 * The verification step under Pulumi mocks: registered after the chain and
 * the seed, through the deploy session's door (served after the chain,
 * without the migration lock), with the stack's drift policy; not registered
 * when the stack has no migration to run.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { withProjectDir } from "../../infra/cli/session";
import { fakeProject, named, runStack, stackFileConfig, type RunResult } from "../support/pulumi-mocks";

const COMMAND = "command:local:Command";

describe("dev stack", () => {
  let run: RunResult;
  let projectDir: string;

  beforeAll(async () => {
    projectDir = await fakeProject({ password: "0123456789abcdef0123456789abcdef" });
    run = await runStack({
      stack: "dev",
      config: { ...(await stackFileConfig("dev")), "pgstack:drift": { extra: "fail", allow: ["table public.audit_*"] } },
      projectDir,
    });
  });
  afterAll(() => fs.rm(projectDir, { recursive: true, force: true }));

  it("runs `pgstack verify` through the step door after the last migration and the seed", () => {
    const component = named(run.resources, "verify");
    expect(component.type).toBe("pgstack:db:Verification");
    const step = named(run.resources, "verify-run");
    expect(step.type).toBe(COMMAND);
    expect(step.parent).toBe(component.urn);
    const chain = run.resources.filter((r) => r.type === COMMAND && r.name.startsWith("migrations-"));
    expect(step.dependencies).toEqual(expect.arrayContaining([chain[chain.length - 1].urn, named(run.resources, "seed-run").urn]));
    expect(step.inputs.create).toBe(
      "sh infra/bin/pgstack-step verify --dir migrations --postgres-version 18 --changed fail --extra fail --allow 'table public.audit_*'",
    );
    // No URL in the step: the session has it.
    expect(step.inputs.environment).toEqual({ PGSTACK_STACK: "dev" });
    expect(step.secretInputs ?? []).toEqual([]);
    // Re-run by whatever re-runs a migration (the set's key, the database under it) or the seed.
    expect(step.inputs.triggers).toHaveLength(4);
    expect(step.inputs.triggers[2]).toBe(named(run.resources, "seed-run").inputs.triggers[0]);
  });

  it("is served by the update's deploy session after the chain, which stays open until it ran", () => {
    expect(run.sessions).toHaveLength(1);
    const session = run.sessions[0];
    expect(session.after).toEqual([["verify", "--dir", "migrations", "--postgres-version", "18", "--changed", "fail", "--extra", "fail", "--allow", "table public.audit_*"]]);
    expect(session.steps.some((s) => s[0] === "verify")).toBe(false);
    expect(session.closed).toBe(true);
  });

  it("resolves --snapshots-dir like --dir against the project", () => {
    expect(withProjectDir(["verify", "--dir", "migrations", "--snapshots-dir", ".pgstack/snapshots"], "/p")).toEqual(["verify", "--dir", "/p/migrations", "--snapshots-dir", "/p/.pgstack/snapshots"]);
  });
});

it("an rds stack verifies without the snapshot check (its snapshots are RDS's)", async () => {
  const projectDir = await fakeProject({});
  try {
    const run = await runStack({ stack: "staging", config: await stackFileConfig("staging"), secrets: {}, projectDir });
    const step = run.resources.find((r) => r.name === "verify-run");
    if (!step) throw new Error(`no verify-run among ${run.resources.map((r) => r.name).join(", ")}`);
    expect(step.inputs.create).toMatch(/ --no-snapshot$/);
  } finally {
    await fs.rm(projectDir, { recursive: true, force: true });
  }
});

it("is not registered when the stack has no migration to run", async () => {
  const empty = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-no-migrations-"));
  const projectDir = await fakeProject({ password: "0123456789abcdef0123456789abcdef", migrations: empty });
  try {
    const run = await runStack({ stack: "dev", config: { ...(await stackFileConfig("dev")), "pgstack:seed": "false" }, projectDir });
    expect(run.resources.some((r) => r.name === "verify" || r.name === "verify-run")).toBe(false);
    expect(run.sessions).toHaveLength(0);
  } finally {
    await fs.rm(projectDir, { recursive: true, force: true });
    await fs.rm(empty, { recursive: true, force: true });
  }
});
