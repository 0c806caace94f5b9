/**
 * The components one by one under Pulumi mocks, and the pure functions
 * behind them.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { embeddedVersionProblem } from "../../infra/components/database/embedded";
import { byType, fakeProject, named, REPO_ROOT, runStack, stackFileConfig, withMocks, type Registered } from "../support/pulumi-mocks";

const COMMAND = "command:local:Command";

/** Stands for the snapshot: any resource the chain must wait for. */
class Gate extends pulumi.CustomResource {
  constructor(name: string) {
    super("test:index:Gate", name, {});
  }
}

describe("MigrationChain", () => {
  const migrations = [
    { name: "20250102000000_b", checksum: "b".repeat(64) },
    { name: "20250101000000_a", checksum: "a".repeat(64) },
    { name: "20250103000000_c", checksum: "c".repeat(64) },
  ];

  it("plans one link per folder in name order, each after the previous one", async () => {
    const { planChain } = await import("../../infra/components/migrations");
    expect(planChain("m", migrations)).toEqual([
      { migration: migrations[1], resourceName: "m-20250101000000_a", after: undefined },
      { migration: migrations[0], resourceName: "m-20250102000000_b", after: "m-20250101000000_a" },
      { migration: migrations[2], resourceName: "m-20250103000000_c", after: "m-20250102000000_b" },
    ]);
    expect(planChain("m", migrations, "20250102000000_b").map((l) => l.migration.name)).toEqual(["20250101000000_a", "20250102000000_b"]);
    expect(() => planChain("m", migrations, "20250109000000_nope")).toThrow(
      "pgstack:pinnedMigration '20250109000000_nope' names no migration in the migrations folder.",
    );
    expect(() => planChain("m", [...migrations, migrations[0]])).toThrow("Migration 20250102000000_b is listed twice.");
  });

  it("registers the commands in order, each depending on the previous one and on what it is given, with no delete", async () => {
    const { MigrationChain } = await import("../../infra/components/migrations");
    const { result, resources } = await withMocks("dev", async () => {
      const gate = new Gate("gate");
      const chain = new MigrationChain("m", {
        migrations,
        migrationsDir: "db/migrations",
        stack: "dev",
        identity: "id-1",
      }, { dependsOn: [gate] });
      return { names: await (chain.appliedMigrations as any).promise(), gate: await (gate.urn as any).promise(), steps: chain.steps };
    });
    const commands = byType(resources, COMMAND);
    expect(commands.map((c) => c.name)).toEqual(["m-20250101000000_a", "m-20250102000000_b", "m-20250103000000_c"]);
    expect(commands[0].dependencies).toEqual([result.gate]);
    expect(commands[1].dependencies.sort()).toEqual([result.gate, commands[0].urn].sort());
    expect(commands[2].dependencies.sort()).toEqual([result.gate, commands[1].urn].sort());
    expect(commands[1].inputs).toEqual({
      dir: ".",
      create: "sh infra/bin/pgstack-step apply 20250102000000_b --dir db/migrations",
      // No database URL in any step: the update's program serves them (infra/cli/session.ts).
      environment: { PGSTACK_STACK: "dev" },
      triggers: ["b".repeat(64), "id-1"],
    });
    expect(commands.every((c) => c.secretInputs.length === 0)).toBe(true);
    // What the program's session serves: exactly each command's step, in order.
    expect(result.steps.map((argv: string[]) => `sh infra/bin/pgstack-step ${argv.join(" ")}`)).toEqual(commands.map((c) => c.inputs.create));
    expect(result.names).toEqual(["20250101000000_a", "20250102000000_b", "20250103000000_c"]);
  });
});

describe("Seed", () => {
  it("is refused on prod with one sentence, before it registers any command", async () => {
    const { Seed, SEED_REFUSED_ON_PROD } = await import("../../infra/components/seed");
    for (const [environment, stack] of [
      ["prod", "prod"],
      ["dev", "acme/pgstack/prod"],
    ] as const) {
      let error: unknown;
      const { resources } = await withMocks(stack, () => {
        try {
          new Seed("seed", { environment, stack, databaseUrl: pulumi.secret("postgresql://x"), identity: "i", scriptChecksum: "c" });
        } catch (err) {
          error = err;
        }
      });
      expect(error).toBeInstanceOf(pulumi.ResourceError);
      expect((error as Error).message).toBe(SEED_REFUSED_ON_PROD);
      expect(byType(resources, COMMAND)).toEqual([]);
    }
  });

  it("runs prisma/seed.ts with the URL secret, and again when the seed or the database change", async () => {
    const { seedCommandArgs } = await import("../../infra/components/seed");
    const args = seedCommandArgs({ environment: "staging", stack: "staging", databaseUrl: "postgresql://x", identity: "id", scriptChecksum: "sum" });
    expect(args.create).toBe("node infra/bin/pgstack.js seed prisma/seed.ts");
    expect(args.triggers).toEqual(["sum", "id"]);
    expect(pulumi.Output.isInstance((args.environment as any).DATABASE_URL)).toBe(true);
  });
});

describe("PreUpdateSnapshot", () => {
  it("keys snapshots by the ordered migration set: a new or changed migration gives a new key", async () => {
    const { migrationSetKey } = await import("../../infra/components/snapshot");
    const a = [{ name: "20250101000000_a", checksum: "1" }];
    const base = migrationSetKey(a);
    expect(base).toMatch(/^[0-9a-f]{16}$/);
    expect(migrationSetKey([...a])).toBe(base);
    expect(migrationSetKey([...a, { name: "20250102000000_b", checksum: "2" }])).not.toBe(base);
    expect(migrationSetKey([{ name: "20250101000000_a", checksum: "3" }])).not.toBe(base);
  });

  it("refuses an engine it has no snapshot for, and an rds snapshot without an instance", async () => {
    const { PreUpdateSnapshot } = await import("../../infra/components/snapshot");
    const errors: string[] = [];
    await withMocks("dev", () => {
      for (const args of [
        { engine: "mysql" as never, stack: "dev", key: "0123456789abcdef", databaseUrl: "u", identity: "i" },
        { engine: "rds" as const, stack: "dev", key: "0123456789abcdef", databaseUrl: "u", identity: "i" },
      ]) {
        try {
          new PreUpdateSnapshot("s", args);
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
    });
    expect(errors).toEqual([
      "Pre-update snapshots support the embedded, docker, rds, external engines, not 'mysql'.",
      "An rds pre-update snapshot needs rdsInstanceIdentifier.",
    ]);
  });
});

describe("adding a migration folder", () => {
  let before: Registered[];
  let after: Registered[];
  let added: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    const migrations = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-unit-migrations-"));
    dirs.push(migrations);
    await fs.cp(path.join(REPO_ROOT, "migrations"), migrations, { recursive: true });
    const projectDir = await fakeProject({ password: "pw", migrations });
    dirs.push(projectDir);
    const config = await stackFileConfig("dev");
    before = (await runStack({ stack: "dev", config, projectDir })).resources;
    added = "20990101000000_add_widgets";
    await fs.mkdir(path.join(migrations, added));
    await fs.writeFile(path.join(migrations, added, "migration.sql"), "CREATE TABLE widgets (id int);\n");
    after = (await runStack({ stack: "dev", config, projectDir })).resources;
  });
  afterAll(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it("adds exactly one migration command, leaves every other command's inputs alone, and re-keys only the snapshot and the verification", () => {
    const inputsOf = (rs: Registered[]) => new Map(byType(rs, COMMAND).map((r) => [r.name, JSON.stringify(r.inputs)]));
    const old = inputsOf(before);
    const now = inputsOf(after);
    expect([...now.keys()].filter((n) => !old.has(n))).toEqual([`migrations-${added}`]);
    const changed = [...old.keys()].filter((n) => now.get(n) !== old.get(n)).sort();
    // The verification runs again after the new migration (its triggers carry the migration set's key).
    expect(changed).toEqual(["pre-update-copy", "verify-run"]);
    expect(named(after, "pre-update-copy").inputs.triggers[0]).not.toBe(named(before, "pre-update-copy").inputs.triggers[0]);
  });

  it("takes the snapshot before the new migration", () => {
    expect(named(after, `migrations-${added}`).dependencies).toContain(named(after, "pre-update-copy").urn);
  });
});

describe("command working directory", () => {
  it("is the project root relative to the program's directory (infra/ under pulumi), so the state does not depend on the clone's path", async () => {
    const { commandDirFor } = await import("../../infra/components/command");
    expect(commandDirFor("/home/a/pgstack", "/home/a/pgstack/infra")).toBe("..");
    expect(commandDirFor("/srv/ci/clone-2", "/srv/ci/clone-2/infra")).toBe("..");
    expect(commandDirFor("/home/a/pgstack", "/home/a/pgstack")).toBe(".");
  });
});

describe("embedded PostgreSQL version", () => {
  it("any major runs, but a data dir made by another major is refused with one sentence naming both and the fix", () => {
    expect(embeddedVersionProblem("18", "18", ".pgstack/dev/data")).toBeUndefined();
    expect(embeddedVersionProblem("15", undefined, ".pgstack/dev/data")).toBeUndefined(); // no cluster yet: made of the configured major
    expect(embeddedVersionProblem(undefined, "15", ".pgstack/dev/data")).toBeUndefined();
    expect(embeddedVersionProblem("18", "15", ".pgstack/dev/data")).toBe(
      "The data directory .pgstack/dev/data was made by PostgreSQL 15 but the stack is configured for PostgreSQL 18 (pgstack:postgresVersion): " +
        "keep 15 with `pulumi config set pgstack:postgresVersion 15`, or upgrade by dumping the database, removing the data directory and restoring the dump into a new 18 one; nothing was changed.",
    );
  });
});

describe("a dev stack whose data dir was made by PostgreSQL 15 before the default became 18", () => {
  it("is refused by the program with that sentence before any resource, when the key is unset (the default, 18)", async () => {
    const projectDir = await fakeProject({ password: "pw" });
    try {
      await fs.mkdir(path.join(projectDir, ".pgstack", "dev", "data"), { recursive: true });
      await fs.writeFile(path.join(projectDir, ".pgstack", "dev", "data", "PG_VERSION"), "15\n");
      const { "pgstack:postgresVersion": _set, ...config } = await stackFileConfig("dev");
      const err = await runStack({ stack: "dev", config, projectDir }).catch((e) => e);
      expect(String(err?.message)).toContain(
        "The data directory .pgstack/dev/data was made by PostgreSQL 15 but the stack is configured for PostgreSQL 18 (pgstack:postgresVersion): keep 15 with `pulumi config set pgstack:postgresVersion 15`",
      );
      expect(await fs.readFile(path.join(projectDir, ".pgstack", "dev", "data", "PG_VERSION"), "utf8")).toBe("15\n");
    } finally {
      await fs.rm(projectDir, { recursive: true, force: true });
    }
  });

  it("runs when the stack keeps 15 (pgstack:postgresVersion: \"15\"): the cluster command asks for 15", async () => {
    const projectDir = await fakeProject({ password: "pw" });
    try {
      await fs.mkdir(path.join(projectDir, ".pgstack", "dev", "data"), { recursive: true });
      await fs.writeFile(path.join(projectDir, ".pgstack", "dev", "data", "PG_VERSION"), "15\n");
      const run = await runStack({ stack: "dev", config: { ...(await stackFileConfig("dev")), "pgstack:postgresVersion": "15" }, projectDir });
      expect(String(named(run.resources, "db-cluster").inputs.create)).toContain("--postgres-version 15");
    } finally {
      await fs.rm(projectDir, { recursive: true, force: true });
    }
  });
});
