import { dockerContainerName } from "../../infra/components/database/docker";
import { isPostgresSnapshotName, postgresSnapshotName, rdsSnapshotId, stackSlug, timestamp } from "../../infra/core/snapshot/naming";

const at = new Date("2025-11-22T00:30:15.123Z");

describe("snapshot ids", () => {
  it("carry the stack, the last migration they contain and the UTC time", () => {
    expect(timestamp(at)).toBe("20251122003015");
    expect(postgresSnapshotName({ stack: "dev", lastMigration: "20250203141527_add_projects", at })).toBe("snap_dev_20250203141527_add_projects_20251122003015");
    expect(rdsSnapshotId({ stack: "prod", lastMigration: "20250203141527_add_projects", at })).toBe("pgstack-prod-20250203141527-add-projects-20251122003015");
  });

  it("say `empty` before any migration", () => {
    expect(postgresSnapshotName({ stack: "dev", at })).toBe("snap_dev_empty_20251122003015");
    expect(rdsSnapshotId({ stack: "acme/pgstack/prod", at })).toBe("pgstack-prod-empty-20251122003015");
  });

  it("fit PostgreSQL's 63-byte names, keeping the migration's timestamp", () => {
    const name = postgresSnapshotName({ stack: "a-very-long-stack-name-indeed", lastMigration: "20260113094501_add_org_billing_and_last_login_and_more", at });
    expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
    expect(name).toBe("snap_a_very_long_stac_20260113094501_add_org_bil_20251122003015");
    expect(isPostgresSnapshotName(name)).toBe(true);
  });

  it("are valid RDS snapshot identifiers: a letter first, no double or trailing hyphen", () => {
    const id = rdsSnapshotId({ stack: "Prod--EU_", lastMigration: "20250101000000__weird--name_", at });
    expect(id).toBe("pgstack-prod-eu-20250101000000-weird-name-20251122003015");
    expect(id).toMatch(/^[a-z](?!.*--)[a-z0-9-]*[a-z0-9]$/);
  });
});

describe("stack-name rules", () => {
  it("the one slug: last segment, lower case, runs of other characters one separator", () => {
    expect(stackSlug("acme/My_Stack.1")).toBe("my-stack-1");
    expect(stackSlug("acme/My_Stack.1", "_")).toBe("my_stack_1");
    expect(stackSlug("--dev--")).toBe("dev");
    expect(stackSlug("___")).toBe("stack");
  });

  it("the docker container keeps the stack name as it is (a changed name would replace users' containers)", () => {
    expect(dockerContainerName("dev")).toBe("pgstack-dev-postgres");
    expect(dockerContainerName("acme/My_Stack.1")).toBe("pgstack-My_Stack.1-postgres");
    expect(dockerContainerName("acme/My_Stack.1")).not.toBe(`pgstack-${stackSlug("acme/My_Stack.1")}-postgres`);
  });
});
