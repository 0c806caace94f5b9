import * as path from "node:path";
import { migrationOfRdsSnapshotId as migrationOfRdsSnapshot } from "../../infra/core/snapshot/naming";
import { parseArgs, requireYesOnProd, rollback } from "../../infra/scripts/rollback";

describe("npm run rollback arguments", () => {
  it("reads the stack, the snapshot, --yes, --keep-old and --unpin", () => {
    expect(parseArgs(["--stack", "dev", "--snapshot", "snap_dev_x", "--yes"])).toEqual({ stack: "dev", snapshot: "snap_dev_x", yes: true, unpin: false, keepOld: false, revert: false, acceptLoss: false });
    expect(parseArgs(["--stack=staging", "--unpin"])).toMatchObject({ stack: "staging", unpin: true, yes: false });
    expect(parseArgs(["-s", "dev", "-y", "--keep-old"])).toMatchObject({ stack: "dev", yes: true, keepOld: true });
  });

  it("reads --revert with --to and --accept-loss, and refuses them where they do not belong", () => {
    expect(parseArgs(["--stack", "dev", "--revert", "--to", "20250101000000_a", "--accept-loss", "--yes"])).toMatchObject({ revert: true, to: "20250101000000_a", acceptLoss: true, yes: true });
    expect(() => parseArgs(["--stack", "dev", "--revert", "--snapshot", "snap_dev_x"])).toThrow(/^--revert runs the reverse of the migrations and restores no snapshot: drop --snapshot and --keep-old\.$/);
    expect(() => parseArgs(["--stack", "dev", "--accept-loss"])).toThrow(/^--to and --accept-loss go with --revert\.$/);
  });

  it("refuses a missing stack, a flag without its value and an unknown flag, in one sentence each", () => {
    expect(() => parseArgs([])).toThrow(/^Name the stack to roll back: npm run rollback -- --stack <name>\.$/);
    expect(() => parseArgs(["--stack", "dev", "--snapshot"])).toThrow(/^--snapshot needs a value\.$/);
    expect(() => parseArgs(["--stack", "dev", "--force"])).toThrow(/^Unknown argument '--force': usage is npm run rollback/);
  });

  it("never asks on prod: a prod rollback without --yes is refused before anything changes", () => {
    expect(() => requireYesOnProd("prod", "prod", false)).toThrow("Stack 'prod' is prod: a rollback there always needs --yes (nothing was changed).");
    expect(() => requireYesOnProd("prod", "prod", true)).not.toThrow();
    expect(() => requireYesOnProd("staging", "staging", false)).not.toThrow();
  });
});

describe("rollback of an rds stack (pulumi faked: no AWS here)", () => {
  const REPO = path.resolve(__dirname, "..", "..");
  const LAST = "20260113094501_add_org_billing_and_last_login";
  const BEFORE = "20251105150337_add_audit_events_org_created_at_idx";
  const SNAPSHOT = "pgstack-prod-20251105150337-add-audit-events-org-created-at-idx-20261120101500";

  /** A valid prod rds block (as in Pulumi.prod.yaml): the rollback reads the config through the stack's schema. */
  const PROD_RDS = {
    instanceClass: "db.m7g.large",
    vpcId: "vpc-1",
    subnetIds: ["subnet-a", "subnet-b"],
    allowedSecurityGroupIds: ["sg-app"],
    multiAz: true,
    backupRetentionDays: 14,
  };

  function fakePulumi(rds: Record<string, unknown> = PROD_RDS) {
    const calls: string[][] = [];
    return {
      calls,
      pulumi: {
        async capture(args: string[]) {
          calls.push(args);
          if (args[0] === "config" && args[1] === "--json") {
            return { code: 0, stderr: "", stdout: JSON.stringify({ "pgstack:engine": { value: "rds" }, "pgstack:rds": { value: JSON.stringify(rds), objectValue: rds } }) };
          }
          if (args[0] === "stack" && args[1] === "output") {
            return { code: 0, stderr: "", stdout: JSON.stringify({ latestSnapshot: SNAPSHOT, appliedMigrations: [BEFORE, LAST], databaseUrl: "[secret]" }) };
          }
          return { code: 0, stdout: "", stderr: "" };
        },
        async run(args: string[]) {
          calls.push(args);
          return 0;
        },
      },
    };
  }

  it("finds the snapshot's last migration in its id", () => {
    expect(migrationOfRdsSnapshot(SNAPSHOT, [BEFORE, LAST])).toBe(BEFORE);
    expect(migrationOfRdsSnapshot("pgstack-prod-empty-20261120101500", [BEFORE, LAST])).toBeUndefined();
  });

  it("sets the restore settings and the pin, then runs pulumi up; never reads the secret URL", async () => {
    const fake = fakePulumi();
    const stderr = jest.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      expect(await rollback(["--stack", "prod", "--yes"], { pulumi: fake.pulumi, projectDir: REPO })).toBe(0);
      expect(stderr.mock.calls.map((c) => String(c[0])).join("")).toContain(`migrations rolled back: ${LAST}`);
    } finally {
      stderr.mockRestore();
    }
    const sets = fake.calls.filter((c) => c[0] === "config" && c[1] === "set");
    expect(sets).toEqual([
      ["config", "set", "--path", "--stack", "prod", "pgstack:rds.restoreFromSnapshot", SNAPSHOT],
      ["config", "set", "--path", "--stack", "prod", "pgstack:rds.instance", "restored"],
      ["config", "set", "--stack", "prod", "pgstack:pinnedMigration", BEFORE],
    ]);
    expect(fake.calls.at(-1)).toEqual(["up", "--yes", "--stack", "prod"]);
    expect(fake.calls.some((c) => c.includes("--show-secrets"))).toBe(false);
  });

  it("refuses a stack already running on a restored instance, changing nothing", async () => {
    const fake = fakePulumi({ ...PROD_RDS, restoreFromSnapshot: "pgstack-prod-x-20261101000000", instance: "restored" });
    await expect(rollback(["--stack", "prod", "--yes"], { pulumi: fake.pulumi, projectDir: REPO })).rejects.toThrow(
      /^Stack 'prod' already runs on an instance restored from pgstack-prod-x-20261101000000: .*\(nothing was changed\)\.$/,
    );
    expect(fake.calls.filter((c) => c[1] === "set" || c[0] === "up")).toEqual([]);
  });

  it("prod without --yes is refused before reading anything else", async () => {
    const fake = fakePulumi();
    await expect(rollback(["--stack", "prod"], { pulumi: fake.pulumi, projectDir: REPO })).rejects.toThrow(/always needs --yes/);
    expect(fake.calls).toEqual([["config", "--json", "--stack", "prod"]]);
  });
});
