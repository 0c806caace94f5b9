import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { type RdsConfig } from "../../config/schema";
import { stackSlug } from "../../core/snapshot/naming";
import { serverUrl } from "../../core/db/url";
import type { DatabaseEndpoint } from "./types";

/**
 * Amazon RDS for PostgreSQL: subnet group, security group, parameter group
 * and the instance. Every field is validated by the stack config (see
 * infra/config/schema.ts); prod's invariants (Multi-AZ, deletion protection,
 * final snapshot, backups >= 7 days, encryption, managed password) are
 * enforced there.
 */
export type RdsArgs = RdsConfig & {
  /** Master password, a secret; used only when manageMasterUserPassword is false. */
  password?: pulumi.Input<string>;
};

/** Parameters every pgstack database gets; the stack's `parameters` override them. */
export const DEFAULT_PARAMETERS: Record<string, string> = {
  "rds.force_ssl": "1",
  // Long-running statements (a migration holding a lock) show up in the logs.
  log_min_duration_statement: "1000",
  log_lock_waits: "1",
};

/** Static parameters need a reboot; everything else applies at once. */
const STATIC_PARAMETERS = new Set(["shared_preload_libraries", "max_connections", "rds.logical_replication"]);

export function rdsParameters(args: RdsArgs): aws.types.input.rds.ParameterGroupParameter[] {
  const merged = { ...DEFAULT_PARAMETERS, ...args.parameters };
  return Object.keys(merged)
    .sort()
    .map((name) => ({ name, value: merged[name], applyMethod: STATIC_PARAMETERS.has(name) ? "pending-reboot" : "immediate" }));
}

export function rdsSecurityGroupArgs(args: RdsArgs, stack: string): aws.ec2.SecurityGroupArgs {
  return {
    vpcId: args.vpcId,
    description: `pgstack ${stack}: PostgreSQL clients`,
    ingress: [
      {
        description: "PostgreSQL",
        protocol: "tcp",
        fromPort: 5432,
        toPort: 5432,
        cidrBlocks: args.allowedCidrBlocks.length > 0 ? args.allowedCidrBlocks : undefined,
        securityGroups: args.allowedSecurityGroupIds.length > 0 ? args.allowedSecurityGroupIds : undefined,
      },
    ],
    egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"] }],
    tags: tagsFor(stack),
  };
}

/** The final snapshot's identifier: fixed per stack and database, so it never shows as a change. */
export function finalSnapshotIdentifier(stack: string, databaseName: string): string {
  return `pgstack-${stackSlug(stack)}-${stackSlug(databaseName)}-final`;
}

/** The restored instance's final snapshot identifier: its own, so it never collides with the original's. */
export function restoredFinalSnapshotIdentifier(stack: string, databaseName: string): string {
  return finalSnapshotIdentifier(stack, databaseName).replace(/-final$/, "-restored-final");
}

/** Resource name suffixes: state, never renamed. The restored one does not depend on the snapshot it came from. */
export const RDS_INSTANCE_SUFFIX = { original: "instance", restored: "restored" } as const;

/** The instance's inputs, given the subnet, security and parameter groups. Pure. */
export function rdsInstanceArgs(
  args: RdsArgs,
  refs: { subnetGroupName: pulumi.Input<string>; securityGroupId: pulumi.Input<string>; parameterGroupName: pulumi.Input<string> },
  databaseName: string,
  stack: string,
): aws.rds.InstanceArgs {
  const managed = args.manageMasterUserPassword;
  return {
    engine: "postgres",
    engineVersion: args.engineVersion,
    instanceClass: args.instanceClass,
    allocatedStorage: args.allocatedStorage,
    maxAllocatedStorage: args.maxAllocatedStorage,
    storageType: args.storageType,
    storageEncrypted: args.storageEncrypted,
    kmsKeyId: args.kmsKeyId,
    dbName: databaseName,
    username: args.username,
    manageMasterUserPassword: managed ? true : undefined,
    password: managed ? undefined : args.password && pulumi.secret(args.password),
    multiAz: args.multiAz,
    dbSubnetGroupName: refs.subnetGroupName,
    vpcSecurityGroupIds: [refs.securityGroupId],
    parameterGroupName: refs.parameterGroupName,
    publiclyAccessible: args.publiclyAccessible,
    backupRetentionPeriod: args.backupRetentionDays,
    deletionProtection: args.deletionProtection,
    skipFinalSnapshot: args.skipFinalSnapshot,
    finalSnapshotIdentifier: args.skipFinalSnapshot ? undefined : finalSnapshotIdentifier(stack, databaseName),
    copyTagsToSnapshot: true,
    performanceInsightsEnabled: args.performanceInsights,
    performanceInsightsRetentionPeriod: args.performanceInsights ? args.performanceInsightsRetentionDays : undefined,
    autoMinorVersionUpgrade: true,
    applyImmediately: args.applyImmediately,
    tags: tagsFor(stack),
  };
}

/**
 * The restored instance's inputs: the original's (same encryption, deletion
 * protection, subnet group, security group, parameter group, Multi-AZ,
 * backups, monitoring, password management) plus the snapshot it is created
 * from and its own final snapshot. No `dbName`: the database comes with the
 * snapshot. Pure.
 */
export function rdsRestoredInstanceArgs(
  args: RdsArgs,
  refs: { subnetGroupName: pulumi.Input<string>; securityGroupId: pulumi.Input<string>; parameterGroupName: pulumi.Input<string> },
  databaseName: string,
  stack: string,
): aws.rds.InstanceArgs {
  const base = rdsInstanceArgs(args, refs, databaseName, stack);
  return {
    ...base,
    dbName: undefined,
    snapshotIdentifier: args.restoreFromSnapshot,
    finalSnapshotIdentifier: args.skipFinalSnapshot ? undefined : restoredFinalSnapshotIdentifier(stack, databaseName),
  };
}

/**
 * The options of the restored instance. `ignoreChanges: ["snapshotIdentifier"]`
 * closes the trap where removing (or changing) the restore setting later
 * makes the provider replace the instance, i.e. delete the restored data.
 */
export function rdsRestoredInstanceOptions(parent: pulumi.Resource): pulumi.CustomResourceOptions {
  return { parent, additionalSecretOutputs: ["password"], ignoreChanges: ["snapshotIdentifier"] };
}

/**
 * The original instance while the stack runs on a restored one: unchanged
 * (`keep`), unchanged but without deletion protection (`unprotect`), or gone
 * (`delete`: undefined, so Pulumi deletes it and RDS takes its final
 * snapshot). Pure.
 */
export function retiredOriginalArgs(original: aws.rds.InstanceArgs, fate: RdsArgs["original"]): aws.rds.InstanceArgs | undefined {
  if (fate === "delete") return undefined;
  if (fate === "unprotect") return { ...original, deletionProtection: false };
  return original;
}

export function tagsFor(stack: string): Record<string, string> {
  return { "pgstack:stack": stack, "managed-by": "pulumi/pgstack" };
}

/**
 * The connection URL. With manageMasterUserPassword the password lives in the
 * Secrets Manager secret RDS made; it is read at deploy time and never leaves
 * a secret Output. TLS is required (`rds.force_ssl`); `uselibpqcompat` makes
 * node-postgres read `sslmode=require` as libpq does (encrypt, no CA check).
 */
export function rdsUrl(user: string, password: string, host: string, port: number, databaseName: string): string {
  return serverUrl({ user, password, host, port, database: databaseName }, { sslmode: "require", uselibpqcompat: "true" });
}

export function provisionRds(name: string, args: RdsArgs, databaseName: string, stack: string, parent: pulumi.Resource): DatabaseEndpoint {
  const subnets = new aws.rds.SubnetGroup(`${name}-subnets`, { subnetIds: args.subnetIds, tags: tagsFor(stack) }, { parent });
  const sg = new aws.ec2.SecurityGroup(`${name}-sg`, rdsSecurityGroupArgs(args, stack), { parent });
  const params = new aws.rds.ParameterGroup(
    `${name}-params`,
    { family: args.parameterGroupFamily, description: `pgstack ${stack}`, parameters: rdsParameters(args), tags: tagsFor(stack) },
    { parent },
  );
  const refs = { subnetGroupName: subnets.name, securityGroupId: sg.id, parameterGroupName: params.name };
  const originalArgs = rdsInstanceArgs(args, refs, databaseName, stack);
  let instance: aws.rds.Instance;
  if (args.instance === "restored") {
    // The instance the stack ran on before the restore: kept until the user says it may go.
    const kept = retiredOriginalArgs(originalArgs, args.original);
    if (kept) new aws.rds.Instance(`${name}-${RDS_INSTANCE_SUFFIX.original}`, kept, { parent, additionalSecretOutputs: ["password"] });
    instance = new aws.rds.Instance(
      `${name}-${RDS_INSTANCE_SUFFIX.restored}`,
      rdsRestoredInstanceArgs(args, refs, databaseName, stack),
      rdsRestoredInstanceOptions(parent),
    );
  } else {
    instance = new aws.rds.Instance(`${name}-${RDS_INSTANCE_SUFFIX.original}`, originalArgs, { parent, additionalSecretOutputs: ["password"] });
  }

  let password: pulumi.Output<string>;
  if (args.manageMasterUserPassword) {
    const secretId = instance.masterUserSecrets.apply((secrets) => {
      const arn = secrets?.[0]?.secretArn;
      if (!arn) throw new pulumi.RunError("The RDS instance has no managed master user secret yet: run `pulumi up` again once it is available.");
      return arn;
    });
    const secret = aws.secretsmanager.getSecretVersionOutput({ secretId }, { parent });
    password = pulumi.secret(secret.secretString.apply((s) => String((JSON.parse(s) as { password?: string }).password ?? "")));
  } else {
    password = pulumi.secret(pulumi.output(args.password ?? ""));
  }
  const url = pulumi.secret(
    pulumi.all([password, instance.address, instance.port]).apply(([pw, host, port]) => rdsUrl(args.username, pw, host, port, databaseName)),
  );
  const identity = pulumi.interpolate`rds:${instance.resourceId}/${databaseName}`;
  return { url, identity, ready: [instance], rdsInstanceIdentifier: instance.identifier };
}
