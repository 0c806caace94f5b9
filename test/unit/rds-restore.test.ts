/**
 * The rds engine under Pulumi mocks: the pre-update aws.rds.Snapshot, the
 * restore into a new instance (`pgstack:rds.restoreFromSnapshot`), the trap
 * of removing the restore setting later, the original instance's retirement,
 * and what `pulumi destroy` leaves behind per environment.
 */
import { promises as fs } from "node:fs";
import { parseStackConfig, type RawStackConfig } from "../../infra/config/schema";
import { byType, fakeProject, named, runStack, stackFileConfig, type Registered, type RunResult } from "../support/pulumi-mocks";

const INSTANCE = "aws:rds/instance:Instance";
const SNAPSHOT_ID = "pgstack-prod-20250704091126-add-api-key-created-by-fkey-20251122003015";
let projectDir: string;

beforeAll(async () => {
  projectDir = await fakeProject();
});
afterAll(() => fs.rm(projectDir, { recursive: true, force: true }));

async function prod(rds: Record<string, unknown> = {}): Promise<RunResult> {
  const config = await stackFileConfig("prod");
  return runStack({ stack: "prod", config: { ...config, "pgstack:rds": { ...(config["pgstack:rds"] as object), ...rds } }, projectDir });
}

function chain(resources: Registered[]): Registered[] {
  return byType(resources, "command:local:Command").filter((r) => r.name.startsWith("migrations-"));
}

/** The settings a restored instance must share with the original. */
const SAME = [
  "engine",
  "engineVersion",
  "instanceClass",
  "storageEncrypted",
  "kmsKeyId",
  "deletionProtection",
  "dbSubnetGroupName",
  "vpcSecurityGroupIds",
  "parameterGroupName",
  "multiAz",
  "backupRetentionPeriod",
  "publiclyAccessible",
  "manageMasterUserPassword",
  "skipFinalSnapshot",
  "copyTagsToSnapshot",
  "performanceInsightsEnabled",
  "username",
] as const;

describe("rds pre-update snapshot", () => {
  it("is an aws.rds.Snapshot of the instance, taken before every migration, kept when replaced or deleted", async () => {
    const run = await prod();
    const snap = named(run.resources, "pre-update-rds");
    expect(snap.type).toBe("aws:rds/snapshot:Snapshot");
    expect(snap.retainOnDelete).toBe(true);
    expect(named(run.resources, "pre-update-id").retainOnDelete).toBe(true);
    expect(snap.inputs.dbInstanceIdentifier).toBe("db-instance-1234abcd");
    expect(snap.dependencies).toContain(named(run.resources, "db-instance").urn);
    const links = chain(run.resources);
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) expect(link.dependencies).toContain(snap.urn);
  });
});

describe("rds reachability before the snapshot", () => {
  it("`pgstack ping` on the secret URL runs after the instance and before the snapshot, again for every new set of migrations", async () => {
    const run = await prod();
    const ping = named(run.resources, "db-reachable");
    expect(ping.type).toBe("command:local:Command");
    expect(ping.parent).toBe(named(run.resources, "db").urn);
    expect(ping.inputs.create).toBe("node infra/bin/pgstack.js ping");
    expect(ping.inputs.environment.DATABASE_URL).toMatch(/^postgresql:\/\/pgstack:.*@.*\?sslmode=require/);
    expect(ping.secretInputs).toContain("environment");
    expect(ping.inputs.create).not.toContain("postgresql://");
    expect(ping.dependencies).toContain(named(run.resources, "db-instance").urn);
    const snapshotKey = named(run.resources, "pre-update-id").inputs.triggers[0];
    expect(ping.inputs.triggers).toEqual([snapshotKey]);
    expect(named(run.resources, "pre-update-rds").dependencies).toContain(ping.urn);
  });

  it("is not needed by the embedded engine, whose cluster command connects itself", async () => {
    const dev = await runStack({ stack: "dev", config: await stackFileConfig("dev"), projectDir: await fakeProject({ password: "pw" }) });
    expect(dev.resources.map((r) => r.name)).not.toContain("db-reachable");
  });
});

describe("rds restore from a snapshot", () => {
  let before: RunResult;
  let restored: RunResult;
  let keyRemoved: RunResult;

  beforeAll(async () => {
    before = await prod();
    // What `npm run rollback -- --stack prod` sets.
    restored = await prod({ restoreFromSnapshot: SNAPSHOT_ID, instance: "restored" });
    // Later: someone removes the restore setting (rds.instance stays `restored`).
    keyRemoved = await prod({ instance: "restored" });
  });

  it("creates a new instance from the snapshot with the original's encryption, deletion protection, network and backups", () => {
    const original = named(restored.resources, "db-instance");
    const copy = named(restored.resources, "db-restored");
    expect(copy.type).toBe(INSTANCE);
    expect(copy.parent).toBe(named(restored.resources, "db").urn);
    expect(copy.inputs.snapshotIdentifier).toBe(SNAPSHOT_ID);
    expect(copy.inputs).toMatchObject({
      storageEncrypted: true,
      deletionProtection: true,
      multiAz: true,
      skipFinalSnapshot: false,
      finalSnapshotIdentifier: "pgstack-prod-app-restored-final",
      dbSubnetGroupName: "db-subnets-1234abcd",
      parameterGroupName: "db-params-1234abcd",
      backupRetentionPeriod: 14,
      publiclyAccessible: false,
      manageMasterUserPassword: true,
    });
    expect(copy.inputs.vpcSecurityGroupIds).toEqual(["db-sg-id"]);
    for (const k of SAME) expect([k, copy.inputs[k]]).toEqual([k, original.inputs[k]]);
    expect(copy.inputs.dbName).toBeUndefined();
    expect(copy.inputs.password).toBeUndefined();
    expect(copy.additionalSecretOutputs).toContain("password");
  });

  it("keeps the original instance exactly as it was (and its final snapshot) until the user says it may go", () => {
    const was = named(before.resources, "db-instance");
    const now = named(restored.resources, "db-instance");
    expect(now.urn).toBe(was.urn);
    expect(now.inputs).toEqual(was.inputs);
    expect(now.inputs).toMatchObject({ deletionProtection: true, skipFinalSnapshot: false, finalSnapshotIdentifier: "pgstack-prod-app-final" });
    // One subnet, security and parameter group for both.
    expect(byType(restored.resources, "aws:rds/subnetGroup:SubnetGroup")).toHaveLength(1);
    expect(byType(restored.resources, "aws:ec2/securityGroup:SecurityGroup")).toHaveLength(1);
  });

  it("moves the stack onto the restored instance: URL, snapshots and migrations", () => {
    expect(restored.outputs.databaseUrl.value).toContain("@db-restored.abc.eu-west-1.rds.amazonaws.com:5432/app?");
    expect(restored.outputs.databaseUrl.secret).toBe(true);
    expect(named(restored.resources, "pre-update-rds").inputs.dbInstanceIdentifier).toBe("db-restored-1234abcd");
    const snap = named(restored.resources, "pre-update-rds");
    expect(snap.dependencies).toContain(named(restored.resources, "db-restored").urn);
    for (const link of chain(restored.resources)) expect(link.dependencies).toContain(snap.urn);
    // The steps are served with the restored instance's URL (they carry none themselves).
    expect(restored.sessions).toHaveLength(1);
    expect(restored.sessions[0].databaseUrl).toContain("@db-restored.");
  });

  it("ignores later changes of the restore setting, so removing it never replaces the restored instance", () => {
    const copy = named(restored.resources, "db-restored");
    expect(copy.ignoreChanges).toEqual(["snapshotIdentifier"]);

    const after = named(keyRemoved.resources, "db-restored");
    // Same resource (URN, type, parent), still ignoring the snapshot id, every other input identical.
    expect(after.urn).toBe(copy.urn);
    expect(after.type).toBe(INSTANCE);
    expect(after.parent).toBe(copy.parent);
    expect(after.ignoreChanges).toEqual(["snapshotIdentifier"]);
    expect(after.inputs.snapshotIdentifier).toBeUndefined();
    const { snapshotIdentifier: _ignored, ...rest } = copy.inputs;
    expect(after.inputs).toEqual(rest);
    // Nothing else moves either: the original and the URL stay.
    expect(named(keyRemoved.resources, "db-instance").inputs).toEqual(named(restored.resources, "db-instance").inputs);
    expect(keyRemoved.outputs.databaseUrl.value).toBe(restored.outputs.databaseUrl.value);
  });

  it("a changed snapshot id on an already restored stack is ignored too (no silent replacement)", async () => {
    const other = await prod({ restoreFromSnapshot: "pgstack-prod-empty-20990101000000", instance: "restored" });
    const copy = named(other.resources, "db-restored");
    expect(copy.urn).toBe(named(restored.resources, "db-restored").urn);
    expect(copy.ignoreChanges).toEqual(["snapshotIdentifier"]);
  });

  it("turns the original's deletion protection off on `original: unprotect`, and drops it on `original: delete` (RDS takes its final snapshot)", async () => {
    const unprotect = await prod({ restoreFromSnapshot: SNAPSHOT_ID, original: "unprotect" });
    expect(named(unprotect.resources, "db-instance").inputs).toMatchObject({
      deletionProtection: false,
      skipFinalSnapshot: false,
      finalSnapshotIdentifier: "pgstack-prod-app-final",
    });
    expect(named(unprotect.resources, "db-restored").inputs.deletionProtection).toBe(true);

    const gone = await prod({ instance: "restored", original: "delete" });
    expect(byType(gone.resources, INSTANCE).map((r) => r.name)).toEqual(["db-restored"]);
    expect(named(gone.resources, "db-restored").urn).toBe(named(restored.resources, "db-restored").urn);
  });

  it("without any restore setting there is only the original instance", () => {
    expect(byType(before.resources, INSTANCE).map((r) => r.name)).toEqual(["db-instance"]);
    expect(named(before.resources, "db-instance").inputs.snapshotIdentifier).toBeUndefined();
  });
});

describe("rds destroy", () => {
  it("prod keeps a final snapshot; staging gets an automatic, stable final snapshot identifier", async () => {
    const p = named((await prod()).resources, "db-instance").inputs;
    expect(p).toMatchObject({ skipFinalSnapshot: false, finalSnapshotIdentifier: "pgstack-prod-app-final" });
    const staging = await runStack({ stack: "staging", config: await stackFileConfig("staging"), projectDir });
    const s = named(staging.resources, "db-instance").inputs;
    expect(s).toMatchObject({ skipFinalSnapshot: false, finalSnapshotIdentifier: "pgstack-staging-app-final" });
    // Again: the identifier is derived from the stack, never asked for.
    const again = await runStack({ stack: "staging", config: await stackFileConfig("staging"), projectDir });
    expect(named(again.resources, "db-instance").inputs.finalSnapshotIdentifier).toBe(s.finalSnapshotIdentifier);
  });
});

describe("rds restore config", () => {
  const base = { instanceClass: "db.t4g.micro", vpcId: "vpc-1", subnetIds: ["subnet-a", "subnet-b"], allowedCidrBlocks: ["10.0.0.0/16"] };
  const raw = (rds: Record<string, unknown>): RawStackConfig => ({
    stack: "staging",
    project: "pgstack",
    keys: ["engine", "rds"],
    values: { engine: "rds", rds: { ...base, ...rds } },
    hasPassword: false,
    hasExternalUrl: false,
  });

  it("defaults to the original instance, and to the restored one once a snapshot is given", () => {
    expect(parseStackConfig(raw({})).rds).toMatchObject({ instance: "original", original: "keep" });
    expect(parseStackConfig(raw({ restoreFromSnapshot: SNAPSHOT_ID })).rds).toMatchObject({ restoreFromSnapshot: SNAPSHOT_ID, instance: "restored", original: "keep" });
    expect(parseStackConfig(raw({ restoreFromSnapshot: `arn:aws:rds:eu-west-1:123456789012:snapshot:${SNAPSHOT_ID}` })).rds?.instance).toBe("restored");
  });

  it("refuses contradictions and bad values in one sentence naming the key", () => {
    expect(() => parseStackConfig(raw({ restoreFromSnapshot: SNAPSHOT_ID, instance: "original" }))).toThrow(
      "Stack 'staging' config is invalid: pgstack:rds.restoreFromSnapshot is set but pgstack:rds.instance is original (set it to restored, or remove restoreFromSnapshot).",
    );
    expect(() => parseStackConfig(raw({ original: "delete" }))).toThrow(
      "Stack 'staging' config is invalid: pgstack:rds.original is delete but the stack runs on its original instance (pgstack:rds.instance is original).",
    );
    expect(() => parseStackConfig(raw({ restoreFromSnapshot: "snap_dev_x" }))).toThrow(
      "pgstack:rds.restoreFromSnapshot must be a DB snapshot identifier (letters, digits, hyphens) or a DB snapshot ARN (got 'snap_dev_x')",
    );
    expect(() => parseStackConfig(raw({ instance: "newest" }))).toThrow("pgstack:rds.instance must be one of original, restored (got 'newest')");
    expect(() => parseStackConfig(raw({ instance: "restored", original: "drop" }))).toThrow("pgstack:rds.original must be one of keep, unprotect, delete (got 'drop')");
  });
});
