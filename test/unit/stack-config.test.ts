import { environmentOf, parseStackConfig, type RawStackConfig } from "../../infra/config/schema";
import { stackFileConfig } from "../support/pulumi-mocks";

/** The raw config Pulumi would hand the program for a Pulumi.<stack>.yaml `config:` map. */
function raw(stack: string, config: Record<string, unknown>, secrets: { password?: boolean; externalUrl?: boolean } = {}): RawStackConfig {
  const values: Record<string, unknown> = {};
  const keys: string[] = [];
  for (const [k, v] of Object.entries(config)) {
    if (!k.startsWith("pgstack:")) continue;
    const key = k.slice("pgstack:".length);
    keys.push(key);
    // Top-level scalars arrive as strings, objects as parsed JSON.
    values[key] = typeof v === "object" ? v : String(v);
  }
  if (secrets.password) keys.push("password");
  if (secrets.externalUrl) keys.push("externalUrl");
  return { stack, project: "pgstack", keys, values, hasPassword: !!secrets.password, hasExternalUrl: !!secrets.externalUrl };
}

const rds = {
  instanceClass: "db.t4g.micro",
  vpcId: "vpc-1",
  subnetIds: ["subnet-a", "subnet-b"],
  allowedCidrBlocks: ["10.0.0.0/16"],
};

describe("stack config", () => {
  it("runs one PostgreSQL major everywhere: rds and docker follow pgstack:postgresVersion, a different one is refused", () => {
    const rdsStack = (extra: Record<string, unknown>, top: Record<string, unknown> = {}) =>
      parseStackConfig(raw("staging", { "pgstack:engine": "rds", "pgstack:rds": { ...rds, ...extra }, ...top }));
    expect(rdsStack({}).rds).toMatchObject({ engineVersion: "18", parameterGroupFamily: "postgres18" });
    expect(rdsStack({}, { "pgstack:postgresVersion": "17" }).rds).toMatchObject({ engineVersion: "17", parameterGroupFamily: "postgres17" });
    expect(rdsStack({ engineVersion: "18.1" }).rds?.engineVersion).toBe("18.1");
    expect(rdsStack({ engineVersion: "15.8" }, { "pgstack:postgresVersion": "15" }).rds).toMatchObject({ engineVersion: "15.8", parameterGroupFamily: "postgres15" });
    expect(() => rdsStack({ engineVersion: "16", parameterGroupFamily: "postgres16" })).toThrow(
      "Stack 'staging' config is invalid: pgstack:rds.engineVersion is 16 but pgstack:postgresVersion is 18 (dev and every stack run one major: remove rds.engineVersion or change postgresVersion); " +
        "pgstack:rds.parameterGroupFamily is postgres16 but pgstack:postgresVersion is 18 (expected postgres18).",
    );
    expect(parseStackConfig(raw("dev", { "pgstack:engine": "docker", "pgstack:postgresVersion": "18" }, { password: true })).docker?.image).toBe("postgres:18-alpine");
    expect(() => parseStackConfig(raw("dev", { "pgstack:postgresVersion": "14" }))).toThrow(/pgstack:postgresVersion must be one of 15, 16, 17, 18 \(got '14'\)/);
  });

  it("the committed stacks agree on one major", async () => {
    const majors = await Promise.all(["dev", "staging", "prod"].map(async (s) => (await stackFileConfig(s))["pgstack:postgresVersion"]));
    expect(majors).toEqual(["18", "18", "18"]);
  });

  it("refuses secrets in plain text and the committed dev passphrase outside the dev stack, together", () => {
    const r = { ...raw("staging", { "pgstack:engine": "external" }, { externalUrl: true }), plainSecrets: ["externalUrl"], devPassphrase: true };
    expect(() => parseStackConfig(r)).toThrow(
      "Stack 'staging' config is invalid: pgstack:externalUrl is stored in plain text in Pulumi.staging.yaml (set it again with `pulumi config set --secret pgstack:externalUrl <value>`); " +
        "the stack's secrets would be encrypted with pgstack's committed dev passphrase (export PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE of this stack's own).",
    );
    expect(parseStackConfig({ ...raw("dev", {}), devPassphrase: true }).stack).toBe("dev");
  });

  it("gives a newcomer's dev stack the embedded engine, port 54329, its data dir under .pgstack, and the seed", () => {
    const c = parseStackConfig(raw("dev", {}));
    expect(c).toMatchObject({
      engine: "embedded",
      environment: "dev",
      databaseName: "app",
      migrationsDir: "migrations",
      seed: true,
      embedded: { port: 54329, dataDir: ".pgstack/dev/data", removeDataOnDestroy: false },
    });
    expect(c.rds).toBeUndefined();
  });

  it("reads the committed stack files: dev embedded, staging and prod on rds", async () => {
    const dev = parseStackConfig(raw("dev", await stackFileConfig("dev")));
    expect(dev.engine).toBe("embedded");
    expect(dev.seed).toBe(true);

    const staging = parseStackConfig(raw("staging", await stackFileConfig("staging")));
    expect(staging).toMatchObject({ engine: "rds", environment: "staging", seed: false });
    const prod = parseStackConfig(raw("prod", await stackFileConfig("prod")));
    expect(prod).toMatchObject({
      engine: "rds",
      environment: "prod",
      seed: false,
      rds: {
        multiAz: true,
        deletionProtection: true,
        skipFinalSnapshot: false,
        storageEncrypted: true,
        performanceInsights: true,
        manageMasterUserPassword: true,
        publiclyAccessible: false,
      },
    });
    expect(prod.rds!.backupRetentionDays).toBeGreaterThanOrEqual(7);
    // Staging is the smaller, cheaper one.
    expect(staging.rds!.multiAz).toBe(false);
    expect(staging.rds!.allocatedStorage).toBeLessThan(prod.rds!.allocatedStorage);
    expect(staging.rds!.backupRetentionDays).toBeLessThan(prod.rds!.backupRetentionDays);
  });

  it("refuses an unknown engine in one sentence naming the key", () => {
    expect(() => parseStackConfig(raw("dev", { "pgstack:engine": "mysql" }))).toThrow(
      "Stack 'dev' config is invalid: pgstack:engine must be one of embedded, docker, rds, external (got 'mysql').",
    );
  });

  it("names each missing rds setting", () => {
    expect(() => parseStackConfig(raw("staging", { "pgstack:engine": "rds", "pgstack:rds": { instanceClass: "db.t4g.micro", allowedCidrBlocks: ["10.0.0.0/8"] } }))).toThrow(
      "Stack 'staging' config is invalid: pgstack:rds.vpcId is missing (the rds engine needs it); pgstack:rds.subnetIds is missing (the rds engine needs it).",
    );
    expect(() => parseStackConfig(raw("staging", { "pgstack:engine": "rds" }))).toThrow(/pgstack:rds\.instanceClass is missing \(the rds engine needs it\)/);
  });

  it("holds prod to its invariants", () => {
    const weak = { ...rds, multiAz: false, backupRetentionDays: 3, storageEncrypted: false, skipFinalSnapshot: true };
    expect(() => parseStackConfig(raw("prod", { "pgstack:engine": "rds", "pgstack:rds": weak }))).toThrow(
      "Stack 'prod' config is invalid: pgstack:rds.skipFinalSnapshot may be true only on a dev stack; pgstack:rds.multiAz must be true on prod; pgstack:rds.backupRetentionDays must be at least 7 on prod (got 3); pgstack:rds.storageEncrypted must be true on prod.",
    );
  });

  it("allows skipFinalSnapshot only on dev", () => {
    expect(() => parseStackConfig(raw("staging", { "pgstack:engine": "rds", "pgstack:rds": { ...rds, skipFinalSnapshot: true } }))).toThrow(
      "pgstack:rds.skipFinalSnapshot may be true only on a dev stack",
    );
    expect(parseStackConfig(raw("dev", { "pgstack:engine": "rds", "pgstack:rds": { ...rds, skipFinalSnapshot: true } })).rds!.skipFinalSnapshot).toBe(true);
  });

  it("refuses the seed on prod", () => {
    expect(() => parseStackConfig(raw("prod", { "pgstack:engine": "rds", "pgstack:seed": "true", "pgstack:rds": { ...rds, multiAz: true } }))).toThrow(
      "Stack 'prod' config is invalid: pgstack:seed must not be true on a prod stack (the seed is dev and test data).",
    );
  });

  it("needs the docker password and the external URL as secrets", () => {
    expect(() => parseStackConfig(raw("dev", { "pgstack:engine": "docker" }))).toThrow(/pgstack:password is missing \(the docker engine needs it as a secret/);
    expect(() => parseStackConfig(raw("dev", { "pgstack:engine": "external" }))).toThrow(/pgstack:externalUrl is missing/);
    expect(parseStackConfig(raw("dev", { "pgstack:engine": "docker" }, { password: true })).docker).toEqual({ image: "postgres:18-alpine", port: 5432 });
  });

  it("rejects unknown keys, misplaced engine blocks and bad values, all in one sentence", () => {
    expect(() =>
      parseStackConfig(raw("dev", { "pgstack:enigne": "rds", "pgstack:rds": rds, "pgstack:embedded": { port: "80", extra: 1 } })),
    ).toThrow(
      "Stack 'dev' config is invalid: pgstack:enigne is not a setting pgstack knows; pgstack:rds is set but pgstack:engine is embedded; pgstack:embedded.port must be a whole number from 1024 to 65535 (got '80'); pgstack:embedded.extra is not a setting pgstack knows.",
    );
  });

  it("a nested key set without --path (pgstack:snapshots.keep as one key) is refused with the --path command that sets it", () => {
    expect(() => parseStackConfig(raw("dev", { "pgstack:snapshots.keep": "10" }))).toThrow(
      "Stack 'dev' config is invalid: pgstack:snapshots.keep was set as one key named 'snapshots.keep' (without --path), not as keep inside pgstack:snapshots: " +
        "run `pulumi config rm pgstack:snapshots.keep` and set it again with `pulumi config set --path pgstack:snapshots.keep <value>`.",
    );
    expect(() => parseStackConfig(raw("dev", { "pgstack:embedded.port": "55432" }))).toThrow(/pgstack:embedded\.port was set as one key .*`pulumi config set --path pgstack:embedded\.port <value>`/);
    expect(parseStackConfig(raw("dev", { "pgstack:snapshots": { keep: "10" } })).snapshots).toEqual({ keep: 10, maxPauseMs: 1000 });
    expect(parseStackConfig(raw("dev", { "pgstack:snapshots": { maxPauseMs: "250" } })).snapshots).toEqual({ keep: 5, maxPauseMs: 250 });
    expect(() => parseStackConfig(raw("dev", { "pgstack:snapshots": { maxPauseMs: "-1" } }))).toThrow(/pgstack:snapshots\.maxPauseMs/);
  });

  it("takes numbers and booleans as strings too (pulumi config set --path)", () => {
    const c = parseStackConfig(raw("dev", { "pgstack:seed": "false", "pgstack:embedded": { port: "55432", removeDataOnDestroy: "true" } }));
    expect(c.seed).toBe(false);
    expect(c.embedded).toEqual({ port: 55432, dataDir: ".pgstack/dev/data", removeDataOnDestroy: true });
  });

  it("keeps the embedded data dir inside the project", () => {
    expect(() => parseStackConfig(raw("dev", { "pgstack:embedded": { dataDir: "/var/lib/pg" } }))).toThrow(
      "pgstack:embedded.dataDir must be a path inside the project (relative, no ..)",
    );
  });

  it("makes lint strict on staging and prod and warn on dev unless set, and names a bad value", async () => {
    expect(parseStackConfig(raw("dev", {})).lint).toBe("warn");
    expect(parseStackConfig(raw("feature-x", { "pgstack:lint": "strict" })).lint).toBe("strict");
    expect(parseStackConfig(raw("staging", await stackFileConfig("staging"))).lint).toBe("strict");
    expect(parseStackConfig(raw("prod", await stackFileConfig("prod"))).lint).toBe("strict");
    expect(parseStackConfig(raw("prod", { "pgstack:engine": "external" }, { externalUrl: true })).lint).toBe("strict");
    expect(() => parseStackConfig(raw("dev", { "pgstack:lint": "loud" }))).toThrow("pgstack:lint must be one of strict, warn");
  });

  it("derives the environment from the stack name", () => {
    expect(environmentOf("prod")).toBe("prod");
    expect(environmentOf("acme/pgstack/production")).toBe("prod");
    expect(environmentOf("staging")).toBe("staging");
    expect(environmentOf("dev")).toBe("dev");
    expect(environmentOf("e2e-1234")).toBe("dev");
  });
});

describe("pgstack:drift", () => {
  it("defaults to changed: fail, extra: warn, nothing allowed; reads a stack's own; refuses a bad value naming the key", () => {
    expect(parseStackConfig(raw("dev", {})).drift).toEqual({ changed: "fail", extra: "warn", allow: [] });
    expect(parseStackConfig(raw("dev", { "pgstack:drift": { extra: "fail", allow: ["table public.audit", "*_tmp"] } })).drift).toEqual({
      changed: "fail",
      extra: "fail",
      allow: ["table public.audit", "*_tmp"],
    });
    expect(() => parseStackConfig(raw("dev", { "pgstack:drift": { changed: "ignore" } }))).toThrow(/pgstack:drift\.changed must be pass, warn or fail/);
    expect(() => parseStackConfig(raw("dev", { "pgstack:drift": { allowed: [] } }))).toThrow(/pgstack:drift/);
  });
});
