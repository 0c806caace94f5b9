/**
 * The whole program under Pulumi mocks, per stack: which resources it
 * registers, with which inputs and dependencies. No Pulumi CLI needed.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { discoverMigrations } from "../../infra/core/migrations/discover";
import { byType, fakeProject, MOCK_RDS_PASSWORD, named, REPO_ROOT, runStack, stackFileConfig, type Registered, type RunResult } from "../support/pulumi-mocks";

const COMMAND = "command:local:Command";
let migrationNames: string[];
let checksums: Record<string, string>;

beforeAll(async () => {
  const found = await discoverMigrations(path.join(REPO_ROOT, "migrations"));
  migrationNames = found.map((m) => m.name);
  checksums = Object.fromEntries(found.map((m) => [m.name, m.checksum]));
});

function chainCommands(resources: Registered[]): Registered[] {
  return byType(resources, COMMAND).filter((r) => r.name.startsWith("migrations-"));
}

describe("dev stack (embedded engine)", () => {
  const password = "0123456789abcdef0123456789abcdef";
  let run: RunResult;
  let projectDir: string;

  beforeAll(async () => {
    projectDir = await fakeProject({ password });
    run = await runStack({ stack: "dev", config: await stackFileConfig("dev"), projectDir });
  });
  afterAll(() => fs.rm(projectDir, { recursive: true, force: true }));

  it("registers the database, the snapshot, one command per migration and the seed, under their components", () => {
    const names = run.resources.map((r) => `${r.type} ${r.name}`);
    expect(names).toEqual(
      expect.arrayContaining([
        "pgstack:db:Database db",
        `${COMMAND} db-cluster`,
        "pgstack:db:PreUpdateSnapshot pre-update",
        `${COMMAND} pre-update-copy`,
        "pgstack:db:MigrationChain migrations",
        "pgstack:db:Seed seed",
        `${COMMAND} seed-run`,
      ]),
    );
    expect(named(run.resources, "db-cluster").parent).toBe(named(run.resources, "db").urn);
    expect(named(run.resources, "pre-update-copy").parent).toBe(named(run.resources, "pre-update").urn);
    expect(named(run.resources, "seed-run").parent).toBe(named(run.resources, "seed").urn);
    // The cluster, the snapshot, the seed and the verification, and one per migration.
    expect(run.resources.filter((r) => r.type === COMMAND)).toHaveLength(migrationNames.length + 4);
  });

  it("starts the cluster with a command whose inputs hold no secret and whose delete keeps the data", () => {
    const cluster = named(run.resources, "db-cluster");
    expect(cluster.inputs).toEqual({
      // The project root relative to the program's working directory ("..", from infra/, under pulumi).
      dir: path.relative(process.cwd(), projectDir),
      create: "node infra/bin/pgstack.js cluster up --data-dir .pgstack/dev/data --port 54329 --database app --postgres-version 18 --json",
      delete: "node infra/bin/pgstack.js cluster down --data-dir .pgstack/dev/data",
    });
    expect(cluster.secretInputs).toEqual([]);
  });

  it("chains the migrations in name order, each after the previous one and the snapshot", () => {
    const chain = chainCommands(run.resources);
    expect(chain.map((c) => c.name)).toEqual(migrationNames.map((n) => `migrations-${n}`));
    const snapshot = named(run.resources, "pre-update-copy");
    chain.forEach((cmd, i) => {
      expect(cmd.parent).toBe(named(run.resources, "migrations").urn);
      expect(cmd.dependencies).toContain(snapshot.urn);
      if (i > 0) expect(cmd.dependencies).toContain(chain[i - 1].urn);
      // Only the previous link, never a later one.
      for (const later of chain.slice(i)) expect(cmd.dependencies).not.toContain(later.urn);
    });
  });

  it("runs `pgstack apply <name>` through the update's deploy session, with no URL in any step, and checksum + identity as triggers", () => {
    const first = chainCommands(run.resources)[0];
    const name = migrationNames[0];
    expect(first.inputs.create).toBe(`sh infra/bin/pgstack-step apply ${name} --dir migrations`);
    for (const step of chainCommands(run.resources)) {
      expect(JSON.stringify(step.inputs)).not.toContain(password);
      expect(step.inputs.environment).toEqual({ PGSTACK_STACK: "dev" });
      expect(step.secretInputs).toEqual([]);
    }
    expect(first.inputs.triggers).toEqual([checksums[name], "embedded:7311111111111111111/app/16384"]);
    expect(first.inputs.delete).toBeUndefined();
    expect(first.inputs.dir).toBe(path.relative(process.cwd(), projectDir));
  });

  it("serves exactly the chain's steps from the program during an update, with the stack's URL, and closes the session once the last step ran", () => {
    expect(run.sessions).toHaveLength(1);
    const [session] = run.sessions;
    expect(session.stack).toBe("dev");
    expect(session.projectDir).toBe(projectDir);
    expect(session.steps.map((argv) => `sh infra/bin/pgstack-step ${argv.join(" ")}`)).toEqual(chainCommands(run.resources).map((c) => c.inputs.create));
    expect(session.databaseUrl).toBe(`postgresql://postgres:${password}@127.0.0.1:54329/app`);
    expect(session.closed).toBe(true);
  });

  it("starts no deploy session in a preview", async () => {
    const preview = await runStack({ stack: "dev", config: await stackFileConfig("dev"), projectDir, preview: true });
    expect(chainCommands(preview.resources).length).toBe(migrationNames.length);
    expect(preview.sessions).toEqual([]);
  });

  it("takes the snapshot before any migration: a template copy keyed by the migration set, kept on delete", () => {
    const copy = named(run.resources, "pre-update-copy");
    expect(copy.retainOnDelete).toBe(true);
    expect(copy.dependencies).toContain(named(run.resources, "db-cluster").urn);
    expect(copy.inputs.create).toMatch(/^node infra\/bin\/pgstack\.js snapshot create --json --stack dev --key [0-9a-f]{16} --keep 5 --lock-wait 60 --migrations-dir migrations$/);
    expect(copy.inputs.triggers[0]).toBe(copy.inputs.create.split(" ")[8]);
    expect(copy.secretInputs).toEqual(["environment"]);
  });

  it("seeds after the last migration, as stack dev", () => {
    const seed = named(run.resources, "seed-run");
    const chain = chainCommands(run.resources);
    expect(seed.dependencies).toContain(chain[chain.length - 1].urn);
    expect(seed.inputs.create).toBe("node infra/bin/pgstack.js seed prisma/seed.ts");
    expect(seed.inputs.environment.PGSTACK_STACK).toBe("dev");
    expect(seed.secretInputs).toEqual(["environment"]);
  });

  it("exports a secret databaseUrl, the applied migrations, the snapshot and the rollback command", () => {
    expect(run.outputs.databaseUrl).toEqual({ value: `postgresql://postgres:${password}@127.0.0.1:54329/app`, secret: true, known: true });
    expect(run.outputs.appliedMigrations.value).toEqual(migrationNames);
    expect(run.outputs.appliedMigrations.secret).toBe(false);
    expect(run.outputs.latestSnapshot).toEqual({ value: "snap_dev_empty_20251122000000", secret: false, known: true });
    expect(run.outputs.rollbackCommand.value).toBe("npm run rollback -- --stack dev --snapshot snap_dev_empty_20251122000000");
    expect(run.outputs.pinnedMigration.value).toBe("");
  });
});

describe("a pinned chain (the hook rollback uses)", () => {
  it("creates no command after the pinned migration", async () => {
    const projectDir = await fakeProject({ password: "pw" });
    try {
      const pin = migrationNames[2];
      const run = await runStack({ stack: "dev", config: { ...(await stackFileConfig("dev")), "pgstack:pinnedMigration": pin }, projectDir });
      expect(chainCommands(run.resources).map((c) => c.name)).toEqual(migrationNames.slice(0, 3).map((n) => `migrations-${n}`));
      expect(run.outputs.appliedMigrations.value).toEqual(migrationNames.slice(0, 3));
      expect(run.outputs.pinnedMigration).toEqual({ value: pin, secret: false, known: true });
      // The snapshot command checks the same range, so the update after a rollback takes no needless copy.
      expect(named(run.resources, "pre-update-copy").inputs.create).toMatch(new RegExp(`--migrations-dir migrations --to ${pin}$`));
    } finally {
      await fs.rm(projectDir, { recursive: true, force: true });
    }
  });
});

describe("the stack follows the database, not its own record (issue 11, defect 6)", () => {
  const RECORDED = "embedded:7311111111111111111/app/16384";
  const takenAt = new Date("2026-01-01T00:00:00Z");
  const before = new Date("2025-12-31T00:00:00Z");
  const after = new Date("2026-01-02T00:00:00Z");
  let projectDir: string;
  beforeAll(async () => {
    projectDir = await fakeProject({ password: "pw" });
  });
  afterAll(() => fs.rm(projectDir, { recursive: true, force: true }));

  const trigger = (run: RunResult, name: string) => named(run.resources, `migrations-${name}`).inputs.triggers[1];

  it("keeps every trigger as recorded while the database is the one the stack created", async () => {
    const observation = { identity: "7311111111111111111/app/16384", applied: new Map(migrationNames.map((n) => [n, before])) };
    const run = await runStack({ stack: "dev", config: await stackFileConfig("dev"), projectDir, observation });
    for (const name of migrationNames) expect(trigger(run, name)).toBe(RECORDED);
    expect(named(run.resources, "pre-update-copy").inputs.triggers[1]).toBe(RECORDED);
    expect(named(run.resources, "seed-run").inputs.triggers[1]).toBe(RECORDED);
  });

  it("after a restore that removed the last migration: only that migration's command and the snapshot change", async () => {
    const last = migrationNames[migrationNames.length - 1];
    const observation = {
      identity: "7311111111111111111/app/20000",
      applied: new Map(migrationNames.slice(0, -1).map((n) => [n, before])),
      restoredFrom: "snap_dev_x",
      restoredSnapshotTakenAt: takenAt,
    };
    const run = await runStack({ stack: "dev", config: await stackFileConfig("dev"), projectDir, observation });
    for (const name of migrationNames.slice(0, -1)) expect(trigger(run, name)).toBe(RECORDED);
    expect(trigger(run, last)).toBe("embedded:7311111111111111111/app/20000");
    // A new snapshot of the restored database is taken before it runs; the seed is not run again.
    expect(named(run.resources, "pre-update-copy").inputs.triggers[1]).not.toBe(RECORDED);
    expect(named(run.resources, "seed-run").inputs.triggers[1]).toBe(RECORDED);

    // The update after the one that re-applied it sees the same triggers: nothing runs again.
    const reapplied = { ...observation, applied: new Map([...observation.applied, [last, after]]) };
    const next = await runStack({ stack: "dev", config: await stackFileConfig("dev"), projectDir, observation: reapplied });
    for (const name of migrationNames) expect(trigger(next, name)).toBe(trigger(run, name));
    expect(named(next.resources, "pre-update-copy").inputs.triggers).toEqual(named(run.resources, "pre-update-copy").inputs.triggers);
  });

  it("a database replaced outside pgstack (no snapshot recorded it) runs every migration again, and the seed", async () => {
    const observation = { identity: "7399999999999999999/app/16384", applied: new Map<string, Date>() };
    const run = await runStack({ stack: "dev", config: await stackFileConfig("dev"), projectDir, observation });
    for (const name of migrationNames) expect(trigger(run, name)).toBe("embedded:7399999999999999999/app/16384");
    expect(named(run.resources, "seed-run").inputs.triggers[1]).toBe("embedded:7399999999999999999/app/16384");
  });
});

describe("after a rollback that passed its point of no return and never pinned the stack (issue 22, item 2)", () => {
  const RECORDED = "7311111111111111111/app/16384";
  let projectDir: string;
  beforeAll(async () => {
    projectDir = await fakeProject({ password: "pw" });
  });
  afterAll(() => fs.rm(projectDir, { recursive: true, force: true }));

  const rolledBack = () => {
    const last = migrationNames[migrationNames.length - 1];
    const pin = migrationNames[migrationNames.length - 2];
    return {
      last,
      pin,
      observation: {
        identity: RECORDED,
        applied: new Map(migrationNames.slice(0, -1).map((n) => [n, new Date("2025-12-31T00:00:00Z")])),
        unfinishedRollback: { op: "revert" as const, pin, removed: [last], at: "2026-01-01T00:00:00.000Z" },
      },
    };
  };

  // The refusal itself (an unfinished rollback and another pin) is test/e2e/rollback-intent.test.ts: under mocks the
  // error reaches no caller, only the resources waiting on it.
  it("goes ahead once the chain is pinned where the rollback left the database", async () => {
    const { pin, observation } = rolledBack();
    const run = await runStack({ stack: "dev", config: { ...(await stackFileConfig("dev")), "pgstack:pinnedMigration": pin }, projectDir, observation });
    expect(run.outputs.appliedMigrations.value).toEqual(migrationNames.slice(0, -1));
  });
});

describe("prod stack (rds engine)", () => {
  let run: RunResult;
  let projectDir: string;

  beforeAll(async () => {
    projectDir = await fakeProject();
    run = await runStack({ stack: "prod", config: await stackFileConfig("prod"), projectDir });
  });
  afterAll(() => fs.rm(projectDir, { recursive: true, force: true }));

  it("creates a Multi-AZ, deletion-protected, encrypted instance with a final snapshot, backups, Performance Insights and a managed password", () => {
    const instance = named(run.resources, "db-instance");
    expect(instance.type).toBe("aws:rds/instance:Instance");
    expect(instance.inputs).toMatchObject({
      engine: "postgres",
      engineVersion: "18",
      instanceClass: "db.m7g.large",
      multiAz: true,
      deletionProtection: true,
      skipFinalSnapshot: false,
      finalSnapshotIdentifier: "pgstack-prod-app-final",
      storageEncrypted: true,
      performanceInsightsEnabled: true,
      performanceInsightsRetentionPeriod: 7,
      manageMasterUserPassword: true,
      publiclyAccessible: false,
      dbName: "app",
      copyTagsToSnapshot: true,
      dbSubnetGroupName: "db-subnets-1234abcd",
      parameterGroupName: "db-params-1234abcd",
    });
    expect(instance.inputs.backupRetentionPeriod).toBeGreaterThanOrEqual(7);
    expect(instance.inputs.password).toBeUndefined();
    expect(instance.parent).toBe(named(run.resources, "db").urn);
  });

  it("puts the instance behind its own subnet group, security group and parameter group", () => {
    expect(named(run.resources, "db-subnets").inputs.subnetIds).toHaveLength(3);
    const sg = named(run.resources, "db-sg");
    expect(sg.inputs.ingress).toEqual([expect.objectContaining({ protocol: "tcp", fromPort: 5432, toPort: 5432, securityGroups: ["sg-REPLACE-ME-app"] })]);
    expect(sg.inputs.ingress[0].cidrBlocks).toBeUndefined();
    const params = named(run.resources, "db-params");
    expect(params.inputs.family).toBe("postgres18");
    expect(params.inputs.parameters).toEqual(expect.arrayContaining([{ name: "rds.force_ssl", value: "1", applyMethod: "immediate" }]));
  });

  it("snapshots with aws.rds.Snapshot named by a command, before the first migration, kept on delete", () => {
    const stamp = named(run.resources, "pre-update-id");
    const snap = named(run.resources, "pre-update-rds");
    expect(snap.type).toBe("aws:rds/snapshot:Snapshot");
    expect(snap.inputs).toMatchObject({ dbInstanceIdentifier: "db-instance-1234abcd", dbSnapshotIdentifier: "pgstack-prod-empty-20251122000000" });
    expect(snap.inputs.tags["pgstack:stack"]).toBe("prod");
    expect(snap.retainOnDelete).toBe(true);
    expect(stamp.retainOnDelete).toBe(true);
    expect(snap.dependencies).toEqual(expect.arrayContaining([named(run.resources, "db-instance").urn]));
    expect(stamp.inputs.create).toBe("node infra/bin/pgstack.js snapshot name --stack prod --style rds --json");
    const first = chainCommands(run.resources)[0];
    expect(first.dependencies).toEqual(expect.arrayContaining([stamp.urn, snap.urn]));
  });

  it("builds the URL from the RDS-managed secret, keeps it secret, and identifies the database by its resource id", () => {
    expect(run.outputs.databaseUrl.secret).toBe(true);
    expect(run.outputs.databaseUrl.value).toBe(
      `postgresql://pgstack:${MOCK_RDS_PASSWORD}@db-instance.abc.eu-west-1.rds.amazonaws.com:5432/app?sslmode=require&uselibpqcompat=true`,
    );
    const first = chainCommands(run.resources)[0];
    expect(first.inputs.triggers[1]).toBe("rds:db-ABCDEFGHIJKL/app");
    // The steps carry no URL: the program serves them with the one it built from the secret.
    expect(first.secretInputs).toEqual([]);
    expect(run.sessions[0].databaseUrl).toBe(run.outputs.databaseUrl.value);
  });

  it("never seeds", () => {
    expect(run.resources.filter((r) => r.type === "pgstack:db:Seed")).toEqual([]);
  });
});

describe("staging stack (rds engine, smaller)", () => {
  it("creates a single-AZ instance with a final snapshot and without deletion protection", async () => {
    const projectDir = await fakeProject();
    try {
      const run = await runStack({ stack: "staging", config: await stackFileConfig("staging"), projectDir });
      expect(named(run.resources, "db-instance").inputs).toMatchObject({
        instanceClass: "db.t4g.micro",
        multiAz: false,
        deletionProtection: false,
        skipFinalSnapshot: false,
        finalSnapshotIdentifier: "pgstack-staging-app-final",
        storageEncrypted: true,
        performanceInsightsEnabled: false,
        manageMasterUserPassword: true,
        allocatedStorage: 20,
      });
      expect(named(run.resources, "db-sg").inputs.ingress[0].cidrBlocks).toEqual(["10.0.0.0/16"]);
      expect(run.resources.filter((r) => r.type === "pgstack:db:Seed")).toEqual([]);
    } finally {
      await fs.rm(projectDir, { recursive: true, force: true });
    }
  });
});

describe("docker engine", () => {
  it("runs an official image with a named volume, the password only in the secret environment", async () => {
    const projectDir = await fakeProject();
    try {
      const run = await runStack({
        stack: "dev",
        config: { "pgstack:engine": "docker", "pgstack:docker": { image: "postgres:16.4", port: 55432 } },
        secrets: { "pgstack:password": "d0cker-Pa55" },
        projectDir,
      });
      expect(named(run.resources, "db-image").inputs).toMatchObject({ name: "postgres:16.4", keepLocally: true });
      const volume = named(run.resources, "db-data");
      expect(volume.type).toBe("docker:index/volume:Volume");
      expect(volume.retainOnDelete).toBe(true);
      const container = named(run.resources, "db-server");
      expect(container.type).toBe("docker:index/container:Container");
      expect(container.inputs).toMatchObject({
        image: "sha256:0123456789abcdef",
        ports: [{ internal: 5432, external: 55432, ip: "127.0.0.1" }],
        volumes: [{ volumeName: "4f2a9c0d1e", containerPath: "/var/lib/postgresql/data" }],
        wait: true,
      });
      expect(container.inputs.envs).toEqual(["POSTGRES_USER=postgres", "POSTGRES_PASSWORD=d0cker-Pa55", "POSTGRES_DB=app"]);
      expect(container.secretInputs).toEqual(["envs"]);
      expect(container.additionalSecretOutputs).toEqual(["envs"]);
      const probe = named(run.resources, "db-identity");
      expect(probe.dependencies).toContain(container.urn);
      expect(probe.inputs.triggers).toEqual(["4f2a9c0d1e"]);
      expect(run.outputs.databaseUrl).toEqual({ value: "postgresql://postgres:d0cker-Pa55@127.0.0.1:55432/app", secret: true, known: true });
      // The same snapshot command as embedded, after the server is up, before the first migration.
      const copy = named(run.resources, "pre-update-copy");
      expect(copy.parent).toBe(named(run.resources, "pre-update").urn);
      expect(copy.inputs.create).toMatch(/^node infra\/bin\/pgstack\.js snapshot create --json --stack dev --key [0-9a-f]{16} --keep 5 --lock-wait 60 --migrations-dir migrations$/);
      expect(copy.inputs.environment).toEqual({ DATABASE_URL: "postgresql://postgres:d0cker-Pa55@127.0.0.1:55432/app" });
      expect(copy.secretInputs).toEqual(["environment"]);
      expect(copy.retainOnDelete).toBe(true);
      expect(copy.dependencies).toEqual(expect.arrayContaining([container.urn, probe.urn]));
      for (const cmd of chainCommands(run.resources)) expect(cmd.dependencies).toContain(copy.urn);
      expect(run.outputs.latestSnapshot.value).toBe("snap_dev_empty_20251122000000");
    } finally {
      await fs.rm(projectDir, { recursive: true, force: true });
    }
  });
});

describe("external engine", () => {
  it("uses the secret URL as given and asks the server for its identity", async () => {
    const projectDir = await fakeProject();
    try {
      const url = "postgresql://app:ext-Pa55@db.example.com:5432/app";
      const run = await runStack({ stack: "staging", config: { "pgstack:engine": "external" }, secrets: { "pgstack:externalUrl": url }, projectDir });
      const probe = named(run.resources, "db-identity");
      expect(probe.inputs.create).toBe("node infra/bin/pgstack.js identity --engine external --json");
      expect(probe.inputs.environment).toEqual({ DATABASE_URL: url });
      expect(probe.secretInputs).toEqual(["environment"]);
      expect(run.outputs.databaseUrl).toEqual({ value: url, secret: true, known: true });
      expect(chainCommands(run.resources)[0].inputs.triggers[1]).toBe("probe:7322222222222222222/app/16384");
    } finally {
      await fs.rm(projectDir, { recursive: true, force: true });
    }
  });

  it("refuses a URL stored in plain text, before registering anything", async () => {
    const projectDir = await fakeProject();
    try {
      const url = "postgresql://app:ext-Pa55@db.example.com:5432/app";
      const err = await runStack({ stack: "staging", config: { "pgstack:engine": "external", "pgstack:externalUrl": url }, projectDir }).catch((e) => e);
      expect(err.message).toBe(
        "Stack 'staging' config is invalid: pgstack:externalUrl is stored in plain text in Pulumi.staging.yaml (set it again with `pulumi config set --secret pgstack:externalUrl <value>`).",
      );
      expect(err.message).not.toContain("ext-Pa55");
    } finally {
      await fs.rm(projectDir, { recursive: true, force: true });
    }
  });
});

describe("each migration step's mode in the preview", () => {
  it("a non-atomic migration's command names its mode; an atomic one's does not", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-modes-"));
    const write = async (name: string, sql: string) => {
      await fs.mkdir(path.join(dir, name));
      await fs.writeFile(path.join(dir, name, "migration.sql"), sql);
    };
    await write("20250101000000_init", 'CREATE TABLE "t" (id int PRIMARY KEY, v int);\n');
    await write("20250102000000_idx", 'CREATE INDEX CONCURRENTLY "t_v_idx" ON "t"("v");\n');
    await write("20250103000000_own_tx", "BEGIN;\nALTER TABLE \"t\" ADD COLUMN w int;\nCOMMIT;\n");
    const projectDir = await fakeProject({ password: "pw", migrations: dir });
    try {
      const run = await runStack({ stack: "dev", config: await stackFileConfig("dev"), projectDir });
      expect(chainCommands(run.resources).map((c) => c.inputs.create)).toEqual([
        "sh infra/bin/pgstack-step apply 20250101000000_init --dir migrations",
        "sh infra/bin/pgstack-step apply 20250102000000_idx --dir migrations --mode statements",
        "sh infra/bin/pgstack-step apply 20250103000000_own_tx --dir migrations --mode as-written",
      ]);
    } finally {
      await fs.rm(projectDir, { recursive: true, force: true });
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
