/**
 * pgstack's public entry (infra/package) under Pulumi mocks: what an
 * application's program gets from `import { PgStack } from "pgstack"`.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { fakeProject, lastComponent, named, runStack, stackFileConfig, type RunResult } from "../support/pulumi-mocks";

const PARTS = ["db", "pre-update", "migrations", "seed"];

describe("the public entry", () => {
  it("exports the PgStack component and its parts, nothing else", async () => {
    const entry = await import("../../infra/package");
    expect(Object.keys(entry).sort()).toEqual(["Database", "MigrationChain", "PgStack", "PreUpdateSnapshot", "Seed"]);
  });
});

describe("new PgStack(name) with every setting from the stack config", () => {
  let run: RunResult;
  let projectDir: string;

  beforeAll(async () => {
    projectDir = await fakeProject({ password: "0123456789abcdef0123456789abcdef" });
    run = await runStack({ stack: "dev", config: await stackFileConfig("dev"), projectDir });
  });
  afterAll(() => fs.rm(projectDir, { recursive: true, force: true }));

  it("registers one pgstack:db:PgStack whose children are the parts, under their own names", () => {
    const component = named(run.resources, "pgstack");
    expect(component.type).toBe("pgstack:db:PgStack");
    for (const part of PARTS) expect(named(run.resources, part).parent).toBe(component.urn);
  });

  it("aliases each part to the top-level resource of the same name, so an existing stack is not replaced", () => {
    for (const part of PARTS) {
      const aliases = named(run.resources, part).aliases;
      expect(aliases).toEqual([expect.objectContaining({ spec: expect.objectContaining({ name: part, noparent: true }) })]);
    }
  });

  it("has the stack outputs, the URL secret, and a `ready` that holds the database, the chain, the seed and the verification", async () => {
    expect(Object.keys(run.outputs).sort()).toEqual(["appliedMigrations", "databaseUrl", "latestSnapshot", "pinnedMigration", "rollbackCommand"]);
    expect(run.outputs.databaseUrl.secret).toBe(true);
    const ready = await new Promise<pulumi.Resource[]>((resolve) => lastComponent!.ready.apply(resolve));
    const urns = await Promise.all(ready.map((r) => new Promise<string>((resolve) => r.urn.apply(resolve))));
    expect(urns.sort()).toEqual(["db", "migrations", "seed", "verify"].map((n) => named(run.resources, n).urn).sort());
  });
});

describe("new PgStack(name, args)", () => {
  let projectDir: string;
  beforeAll(async () => {
    projectDir = await fakeProject({ password: "0123456789abcdef0123456789abcdef" });
    await fs.mkdir(path.join(projectDir, "prisma", "migrations"), { recursive: true });
    await fs.mkdir(path.join(projectDir, "prisma", "migrations", "20250101000000_init"));
    await fs.writeFile(path.join(projectDir, "prisma", "migrations", "20250101000000_init", "migration.sql"), "CREATE TABLE t (id int);\n");
  });
  afterAll(() => fs.rm(projectDir, { recursive: true, force: true }));

  it("takes the arguments over the stack config", async () => {
    const run = await runStack({
      stack: "dev",
      config: await stackFileConfig("dev"),
      projectDir,
      args: { migrationsDir: "prisma/migrations", databaseName: "shop", seed: false, embedded: { port: 55001 } },
    });
    expect(named(run.resources, "db-cluster").inputs.create).toBe("node infra/bin/pgstack.js cluster up --data-dir .pgstack/dev/data --port 55001 --database shop --postgres-version 18 --json");
    expect(named(run.resources, "migrations-20250101000000_init").inputs.create).toBe("sh infra/bin/pgstack-step apply 20250101000000_init --dir prisma/migrations");
    expect(run.resources.some((r) => r.name === "seed")).toBe(false);
  });

  it("keeps the pin `npm run rollback` set in the stack config", async () => {
    const run = await runStack({
      stack: "dev",
      config: { ...(await stackFileConfig("dev")), "pgstack:pinnedMigration": "20250101000000_init" },
      projectDir,
      args: { migrationsDir: "prisma/migrations", seed: false },
    });
    expect(run.outputs.pinnedMigration.value).toBe("20250101000000_init");
  });

  it("refuses bad arguments with one sentence naming each", async () => {
    const err = await runStack({
      stack: "dev",
      config: await stackFileConfig("dev"),
      projectDir,
      args: { engine: "rds", rds: { instanceClass: "big", subnetIds: ["a"] } as never },
    }).catch((e) => e);
    expect(pulumi.ResourceError.isInstance(err) || pulumi.RunError.isInstance(err)).toBe(true);
    expect(err.message).toMatch(/^Stack 'dev' config is invalid: /);
    expect(err.message).toContain("pgstack:rds.subnetIds must list at least two subnets");
    expect(err.message).toContain("pgstack:rds.instanceClass must be an RDS instance class");
    expect(err.message).toContain("pgstack:rds.vpcId is missing");
    expect(err.message.split(". ").length).toBe(1);
  });
});

describe("the commands' paths", () => {
  it("name the package's CLI relative to the project: this repository's own, or node_modules/pgstack's", async () => {
    const { packagePathFrom } = await import("../../infra/components/command");
    expect(packagePathFrom("/repo", "/repo")).toBe("");
    expect(packagePathFrom("/srv/app", "/srv/app/node_modules/pgstack")).toBe("node_modules/pgstack/");
  });
});
