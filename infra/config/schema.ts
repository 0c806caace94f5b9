import { z } from "zod";
import { stackSlug } from "../core/snapshot/naming";
import { DEFAULT_DRIFT_POLICY, type DriftPolicy } from "../core/verify/policy";

/**
 * The stack configuration, validated in one place. Pure: no @pulumi import, so
 * every rule is unit-tested with plain objects. `infra/config/index.ts` reads
 * the values with pulumi.Config and hands them here.
 *
 * Keys (namespace `pgstack`, nested values set with `pulumi config set --path`):
 *
 *   pgstack:engine           embedded | docker | rds | external (default embedded)
 *   pgstack:environment      dev | staging | prod (default: from the stack name)
 *   pgstack:postgresVersion  PostgreSQL major of every engine: 15, 16, 17 or 18 (default 18); dev runs what prod runs
 *   pgstack:databaseName     the application database (default app)
 *   pgstack:migrationsDir    migrations folder, relative to the project (default migrations)
 *   pgstack:seed             run prisma/seed.ts after the migrations (default: true on dev only; never on prod)
 *   pgstack:pinnedMigration  the chain stops after this migration (set by rollback; default: none)
 *   pgstack:lint             strict | warn: strict fails preview and up on an unaccepted blocking lint finding
 *                            in a migration the update would run (default: strict on staging and prod, warn on dev)
 *   pgstack:drift            { changed, extra, allow }: what `pgstack verify` and the verification step of an update do
 *                            with schema drift: changed (objects the history made, changed by hand) and extra (objects no
 *                            migration made) are each pass | warn | fail (default changed: fail, extra: warn); allow lists
 *                            objects never counted ("table public.audit", "public.audit", "audit_*")
 *   pgstack:embedded         { port, dataDir, removeDataOnDestroy }
 *   pgstack:docker           { image, port }
 *   pgstack:rds              { instanceClass, vpcId, subnetIds, ... } (see RdsConfig), including the restore keys
 *                            rds.restoreFromSnapshot, rds.instance and rds.original (see RdsConfig)
 *   pgstack:snapshots        { keep, maxPauseMs } pre-update snapshots kept per stack by the template-copy engines (default 5);
 *                            how long a snapshot or a restore's swap waits, with the database closed, for the application's
 *                            transactions to finish before ending its sessions (ms, default 1000)
 *   pgstack:password         secret: superuser password for docker, master password for rds without manageMasterUserPassword
 *   pgstack:externalUrl      secret: the connection URL of the external engine
 */

export const ENGINES = ["embedded", "docker", "rds", "external"] as const;
export type Engine = (typeof ENGINES)[number];
export const ENVIRONMENTS = ["dev", "staging", "prod"] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

export const NAMESPACE = "pgstack";
/** Keys whose value is an object (set with `pulumi config set --path`). */
export const OBJECT_KEYS: ReadonlySet<string> = new Set(["embedded", "docker", "rds", "snapshots", "drift"]);
/** Keys that must be secrets; the schema sees only whether they are set. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(["password", "externalUrl"]);
export const POSTGRES_VERSIONS = ["15", "16", "17", "18"] as const;
export type PostgresVersion = (typeof POSTGRES_VERSIONS)[number];
/** The embedded binaries the project installs, and the pg_dump Debian's stable release ships. */
export const DEFAULT_POSTGRES_VERSION: PostgresVersion = "18";
export const DEFAULT_EMBEDDED_PORT = 54329;
export const DEFAULT_DATABASE_NAME = "app";

export interface EmbeddedConfig {
  /** TCP port on 127.0.0.1. Default 54329. */
  port: number;
  /** Data directory, relative to the project root. Default `.pgstack/<stack>/data`. */
  dataDir: string;
  /** Delete the data directory on `pulumi destroy`. Default false (data kept). */
  removeDataOnDestroy: boolean;
}

export interface DockerConfig {
  /** Image reference. Default `postgres:<postgresVersion>-alpine`. */
  image: string;
  /** Host port published on 127.0.0.1. Default 5432. */
  port: number;
}

export interface RdsConfig {
  /** Instance class, e.g. `db.t4g.micro`. Required. */
  instanceClass: string;
  /** Storage in GiB. Default 20. */
  allocatedStorage: number;
  /** Storage autoscaling ceiling in GiB. Default: no autoscaling. */
  maxAllocatedStorage?: number;
  /** gp2, gp3, io1 or io2. Default gp3. */
  storageType: string;
  /** PostgreSQL major (or full) version, of major `pgstack:postgresVersion`. Default: that major. */
  engineVersion: string;
  /** Parameter group family, matching engineVersion. Default postgres<postgresVersion>. */
  parameterGroupFamily: string;
  /** Extra server parameters (override pgstack's defaults, see DEFAULT_PARAMETERS). Default {}. */
  parameters: Record<string, string>;
  /** VPC of the instance and its security group. Required. */
  vpcId: string;
  /** At least two subnets in different availability zones. Required. */
  subnetIds: string[];
  /** CIDR blocks allowed to connect on 5432; this or allowedSecurityGroupIds is required. Default []. */
  allowedCidrBlocks: string[];
  /** Security groups allowed to connect on 5432; this or allowedCidrBlocks is required. Default []. */
  allowedSecurityGroupIds: string[];
  /** A standby in another AZ. Default false; must be true on prod. */
  multiAz: boolean;
  /** Refuse to delete the instance. Default: true on prod, false elsewhere; must be true on prod. */
  deletionProtection: boolean;
  /** Delete without a final snapshot. Default false; may be true only on dev. */
  skipFinalSnapshot: boolean;
  /** Automated backup retention in days (0-35). Default 7; at least 7 on prod. */
  backupRetentionDays: number;
  /** Encrypt storage (and snapshots). Default true; must be true on prod. */
  storageEncrypted: boolean;
  /** KMS key for storage encryption. Default: the AWS-managed key. */
  kmsKeyId?: string;
  /** Performance Insights. Default false. */
  performanceInsights: boolean;
  /** Performance Insights retention in days. Default 7. */
  performanceInsightsRetentionDays: number;
  /** RDS keeps the master password in Secrets Manager. Default true; must be true on prod. Else pgstack:password is used. */
  manageMasterUserPassword: boolean;
  /** Master user name. Default pgstack. */
  username: string;
  /** Reachable from the internet. Default false; must be false on prod. */
  publiclyAccessible: boolean;
  /** Apply modifications now rather than in the maintenance window. Default false. */
  applyImmediately: boolean;
  /**
   * Restore: the DB snapshot identifier (e.g. a pre-update snapshot) a new
   * instance, `db-restored`, is created from (`npm run rollback` sets it). The
   * instance ignores later changes of this key (`ignoreChanges`), so removing
   * it, or leaving it, never replaces the restored instance. Default: none.
   */
  restoreFromSnapshot?: string;
  /**
   * Which instance the stack runs on: `original` (`db-instance`) or
   * `restored` (`db-restored`). Default: `restored` when restoreFromSnapshot is
   * set, else `original`. Rollback sets it to `restored` together with
   * restoreFromSnapshot, and it stays so once restoreFromSnapshot is removed.
   */
  instance: RdsInstanceChoice;
  /**
   * While the stack runs on the restored instance, what becomes of the
   * original one: `keep` (default: unchanged, with its deletion protection),
   * `unprotect` (kept, deletion protection off: the step before `delete` on a
   * protected instance), `delete` (removed from the stack: RDS deletes it and
   * takes its final snapshot).
   */
  original: RdsOriginalFate;
}

export const RDS_INSTANCE_CHOICES = ["original", "restored"] as const;
export type RdsInstanceChoice = (typeof RDS_INSTANCE_CHOICES)[number];
export const RDS_ORIGINAL_FATES = ["keep", "unprotect", "delete"] as const;
export type RdsOriginalFate = (typeof RDS_ORIGINAL_FATES)[number];

export const DEFAULT_SNAPSHOTS_KEEP = 5;
/** pgstack:snapshots.maxPauseMs default (the same as core/snapshot/engine.ts DEFAULT_MAX_PAUSE_MS; config/ imports no core). */
export const DEFAULT_MAX_PAUSE_MS = 1000;

export const LINT_MODES = ["strict", "warn"] as const;
export type LintMode = (typeof LINT_MODES)[number];

export interface SnapshotsConfig {
  /**
   * Pre-update snapshots to keep per stack (template-copy engines: embedded,
   * docker, external); older ones are pruned right after a new one is taken.
   * 0 keeps every snapshot. Default 5. RDS snapshots are not pruned.
   */
  keep: number;
  /**
   * How long a snapshot or a restore's swap waits, with the database closed
   * to new sessions, for the application's transactions to finish before
   * ending its sessions, ms (`--max-pause-ms`). Default 1000.
   */
  maxPauseMs: number;
}

/** Everything a stack needs, typed; nothing else reads pulumi.Config. */
export interface StackConfig {
  stack: string;
  project: string;
  engine: Engine;
  /** PostgreSQL major of every engine (embedded binaries, docker image, rds engine). */
  postgresVersion: PostgresVersion;
  environment: Environment;
  databaseName: string;
  migrationsDir: string;
  seed: boolean;
  pinnedMigration?: string;
  /** strict: blocking lint findings in migrations the update would run fail preview and up. */
  lint: LintMode;
  embedded?: EmbeddedConfig;
  docker?: DockerConfig;
  rds?: RdsConfig;
  /** Retention of pre-update snapshots. */
  snapshots: SnapshotsConfig;
  /** What schema drift does to `pgstack verify` and the verification step (pgstack:drift). */
  drift: DriftPolicy;
  /** Whether the secrets were set (their values stay in pulumi Outputs). */
  hasPassword: boolean;
  hasExternalUrl: boolean;
}

/** Plain values as read from the stack's config; secrets only as "is set". */
export interface RawStackConfig {
  stack: string;
  project: string;
  /** Every `pgstack:*` key that is set, without the namespace. */
  keys: string[];
  values: Record<string, unknown>;
  hasPassword: boolean;
  hasExternalUrl: boolean;
  /** Secret keys (`password`, `externalUrl`) that are set in plain text in the stack file. */
  plainSecrets?: string[];
  /** The stack's secrets are encrypted with pgstack's committed dev passphrase. */
  devPassphrase?: boolean;
}

/** Thrown with one sentence that names the offending key(s). */
export class StackConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StackConfigError";
  }
}

const KNOWN_KEYS = [
  "engine",
  "postgresVersion",
  "environment",
  "databaseName",
  "migrationsDir",
  "seed",
  "pinnedMigration",
  "lint",
  "embedded",
  "docker",
  "rds",
  "snapshots",
  "drift",
  "password",
  "externalUrl",
] as const;

// Config values arrive as strings at the top level and typed inside objects:
// accept both.
const bool = z.preprocess((v) => (v === "true" ? true : v === "false" ? false : v), z.boolean({ error: "must be true or false" }));
const int = (min: number, max: number) =>
  z.preprocess(
    (v) => (typeof v === "string" && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v),
    z
      .number({ error: `must be a whole number from ${min} to ${max}` })
      .int(`must be a whole number from ${min} to ${max}`)
      .min(min, `must be a whole number from ${min} to ${max}`)
      .max(max, `must be a whole number from ${min} to ${max}`),
  );
const text = z.string({ error: "must be a string" }).trim().min(1, "must not be empty");
const stringList = z.array(text, { error: "must be a list of strings" });
const identifier = text.regex(/^[a-z_][a-z0-9_]{0,62}$/, "must be a lower-case PostgreSQL identifier (letters, digits, _; at most 63)");

const embeddedSchema = z.strictObject({
  port: int(1024, 65535).default(DEFAULT_EMBEDDED_PORT),
  dataDir: text
    .refine((p) => !p.startsWith("/") && !p.split(/[\\/]/).includes(".."), "must be a path inside the project (relative, no ..)")
    .optional(),
  removeDataOnDestroy: bool.default(false),
});

const dockerSchema = z.strictObject({
  image: text.optional(),
  port: int(1024, 65535).default(5432),
});

const rdsSchema = z.strictObject({
  instanceClass: text.regex(/^db\.[a-z0-9-]+\.[a-z0-9]+$/, "must be an RDS instance class such as db.t4g.micro"),
  allocatedStorage: int(20, 65536).default(20),
  maxAllocatedStorage: int(20, 65536).optional(),
  storageType: z.enum(["gp2", "gp3", "io1", "io2"], { error: "must be gp2, gp3, io1 or io2" }).default("gp3"),
  engineVersion: text.optional(),
  parameterGroupFamily: text.optional(),
  parameters: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).default({}),
  vpcId: text,
  subnetIds: stringList.min(2, "must list at least two subnets (in two availability zones)"),
  allowedCidrBlocks: stringList.default([]),
  allowedSecurityGroupIds: stringList.default([]),
  multiAz: bool.default(false),
  deletionProtection: bool.optional(),
  skipFinalSnapshot: bool.default(false),
  backupRetentionDays: int(0, 35).default(7),
  storageEncrypted: bool.default(true),
  kmsKeyId: text.optional(),
  performanceInsights: bool.default(false),
  performanceInsightsRetentionDays: int(7, 731).default(7),
  manageMasterUserPassword: bool.default(true),
  username: identifier.default("pgstack"),
  publiclyAccessible: bool.default(false),
  applyImmediately: bool.default(false),
  restoreFromSnapshot: text
    .refine(
      (v) => /^[A-Za-z][A-Za-z0-9-]{0,254}$/.test(v) || /^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:snapshot:[A-Za-z][A-Za-z0-9-]{0,254}$/.test(v),
      "must be a DB snapshot identifier (letters, digits, hyphens) or a DB snapshot ARN",
    )
    .optional(),
  instance: z.enum(RDS_INSTANCE_CHOICES, { error: `must be one of ${RDS_INSTANCE_CHOICES.join(", ")}` }).optional(),
  original: z.enum(RDS_ORIGINAL_FATES, { error: `must be one of ${RDS_ORIGINAL_FATES.join(", ")}` }).default("keep"),
});

const checkStatus = z.enum(["pass", "warn", "fail"], { error: "must be pass, warn or fail" });
export const driftSchema = z.strictObject({
  changed: checkStatus.default(DEFAULT_DRIFT_POLICY.changed),
  extra: checkStatus.default(DEFAULT_DRIFT_POLICY.extra),
  allow: stringList.default([]),
});

/** `pgstack:drift` (or the same object from flags), validated; one sentence naming each problem. */
export function parseDriftPolicy(value: unknown, where = `${NAMESPACE}:drift`): DriftPolicy {
  const problems: string[] = [];
  const parsed = parsePart(driftSchema, value, where.replace(`${NAMESPACE}:`, ""), problems);
  if (!parsed) throw new StackConfigError(`${problems.join("; ")}.`);
  return parsed;
}

const snapshotsSchema = z.strictObject({
  keep: int(0, 1000).default(DEFAULT_SNAPSHOTS_KEEP),
  maxPauseMs: int(0, 600_000).default(DEFAULT_MAX_PAUSE_MS),
});

const topSchema = z.object({
  engine: z.enum(ENGINES, { error: `must be one of ${ENGINES.join(", ")}` }).default("embedded"),
  postgresVersion: z.enum(POSTGRES_VERSIONS, { error: `must be one of ${POSTGRES_VERSIONS.join(", ")}` }).default(DEFAULT_POSTGRES_VERSION),
  environment: z.enum(ENVIRONMENTS, { error: `must be one of ${ENVIRONMENTS.join(", ")}` }).optional(),
  databaseName: identifier.default(DEFAULT_DATABASE_NAME),
  migrationsDir: text
    .refine((p) => !p.startsWith("/") && !p.split(/[\\/]/).includes(".."), "must be a path inside the project (relative, no ..)")
    .default("migrations"),
  seed: bool.optional(),
  pinnedMigration: text.regex(/^\d{14}_[A-Za-z0-9][A-Za-z0-9_-]*$/, "must be a migration folder name (<timestamp>_<name>)").optional(),
  lint: z.enum(LINT_MODES, { error: `must be one of ${LINT_MODES.join(", ")}` }).optional(),
  embedded: z.unknown().optional(),
  docker: z.unknown().optional(),
  rds: z.unknown().optional(),
  snapshots: z.unknown().optional(),
  drift: z.unknown().optional(),
});

/** prod / production (or a trailing `/prod` segment) is prod; staging is staging; anything else is dev. */
export function environmentOf(stack: string): Environment {
  const last = stack.trim().toLowerCase().split("/").pop() ?? "";
  if (last === "prod" || last === "production") return "prod";
  if (last === "staging" || last === "stage") return "staging";
  return "dev";
}

export const SEED_REFUSED_ON_PROD = "The seed never runs on prod: it writes dev and test data; set pgstack:seed to false for this stack.";

/** The seed script's default path, relative to the project root. */
export const DEFAULT_SEED_SCRIPT = "prisma/seed.ts";


function key(path: PropertyKey[], prefix?: string): string {
  const parts = [...(prefix ? [prefix] : []), ...path.map(String)];
  return `${NAMESPACE}:${parts.join(".")}`;
}

function describeIssues(issues: z.core.$ZodIssue[], prefix?: string): string[] {
  return issues.map((issue) => {
    const name = key(issue.path, prefix);
    const input = (issue as { input?: unknown }).input;
    if (issue.code === "invalid_type" && input === undefined) return `${name} is missing`;
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((k) => `${key([...issue.path, k], prefix)} is not a setting pgstack knows`).join(", ");
    }
    const got = typeof input === "string" || typeof input === "number" || typeof input === "boolean" ? ` (got '${String(input)}')` : "";
    return `${name} ${issue.message}${got}`;
  });
}

function parsePart<T>(schema: z.ZodType<T>, value: unknown, prefix: string | undefined, problems: string[]): T | undefined {
  const parsed = schema.safeParse(value ?? (prefix ? {} : value), { reportInput: true });
  if (!parsed.success) {
    problems.push(...describeIssues(parsed.error.issues, prefix));
    return undefined;
  }
  return parsed.data;
}

/**
 * Validates the raw config and returns the typed StackConfig, or throws one
 * sentence naming every offending key, e.g.
 * "Stack 'prod' config is invalid: pgstack:rds.vpcId is missing (the rds engine needs it)."
 */
export function parseStackConfig(raw: RawStackConfig): StackConfig {
  const problems: string[] = [];
  for (const k of raw.keys) {
    if ((KNOWN_KEYS as readonly string[]).includes(k)) continue;
    // `pulumi config set pgstack:snapshots.keep 10` (no --path) stores one key with a dot in its name, not keep inside snapshots.
    const [block, ...rest] = k.split(".");
    if (rest.length > 0 && OBJECT_KEYS.has(block)) {
      problems.push(
        `${NAMESPACE}:${k} was set as one key named '${k}' (without --path), not as ${rest.join(".")} inside ${NAMESPACE}:${block}: ` +
          `run \`pulumi config rm ${NAMESPACE}:${k}\` and set it again with \`pulumi config set --path ${NAMESPACE}:${k} <value>\``,
      );
    } else problems.push(`${NAMESPACE}:${k} is not a setting pgstack knows`);
  }
  const top = parsePart(topSchema, raw.values, undefined, problems);
  if (!top) throw configError(raw.stack, problems);

  const engine = top.engine;
  const environment = top.environment ?? environmentOf(raw.stack);
  const needs = (block: "embedded" | "docker" | "rds") => engine === block;
  for (const block of ["embedded", "docker", "rds"] as const) {
    if (!needs(block) && raw.values[block] !== undefined) {
      problems.push(`${NAMESPACE}:${block} is set but pgstack:engine is ${engine}`);
    }
  }

  const snapshots = parsePart(snapshotsSchema, raw.values.snapshots, "snapshots", problems);
  const drift = parsePart(driftSchema, raw.values.drift, "drift", problems);
  const embedded = needs("embedded") ? parsePart(embeddedSchema, raw.values.embedded, "embedded", problems) : undefined;
  const pg = top.postgresVersion;
  const dockerParsed = needs("docker") ? parsePart(dockerSchema, raw.values.docker, "docker", problems) : undefined;
  const docker = dockerParsed && { ...dockerParsed, image: dockerParsed.image ?? `postgres:${pg}-alpine` };
  let rds: RdsConfig | undefined;
  if (needs("rds")) {
    const before = problems.length;
    const parsed = parsePart(rdsSchema, raw.values.rds, "rds", problems);
    for (let i = before; i < problems.length; i++) {
      if (problems[i].endsWith(" is missing")) problems[i] += " (the rds engine needs it)";
    }
    if (parsed) {
      const engineVersion = parsed.engineVersion ?? pg;
      const parameterGroupFamily = parsed.parameterGroupFamily ?? `postgres${pg}`;
      if (engineVersion.split(".")[0] !== pg) {
        problems.push(`${NAMESPACE}:rds.engineVersion is ${engineVersion} but ${NAMESPACE}:postgresVersion is ${pg} (dev and every stack run one major: remove rds.engineVersion or change postgresVersion)`);
      }
      if (parameterGroupFamily !== `postgres${pg}`) {
        problems.push(`${NAMESPACE}:rds.parameterGroupFamily is ${parameterGroupFamily} but ${NAMESPACE}:postgresVersion is ${pg} (expected postgres${pg})`);
      }
      rds = {
        ...parsed,
        engineVersion,
        parameterGroupFamily,
        deletionProtection: parsed.deletionProtection ?? environment === "prod",
        instance: parsed.instance ?? (parsed.restoreFromSnapshot ? "restored" : "original"),
      };
    }
  }

  if (engine === "docker" && !raw.hasPassword) problems.push(`${NAMESPACE}:password is missing (the docker engine needs it as a secret: pulumi config set --secret ${NAMESPACE}:password)`);
  if (engine === "rds" && rds && !rds.manageMasterUserPassword && !raw.hasPassword) {
    problems.push(`${NAMESPACE}:password is missing (set it as a secret, or set ${NAMESPACE}:rds.manageMasterUserPassword to true)`);
  }
  if (engine === "external" && !raw.hasExternalUrl) {
    problems.push(`${NAMESPACE}:externalUrl is missing (the external engine needs it as a secret: pulumi config set --secret ${NAMESPACE}:externalUrl postgresql://...)`);
  }

  for (const key of raw.plainSecrets ?? []) {
    problems.push(
      `${NAMESPACE}:${key} is stored in plain text in Pulumi.${raw.stack}.yaml (set it again with \`pulumi config set --secret ${NAMESPACE}:${key} <value>\`)`,
    );
  }
  if (raw.devPassphrase && raw.stack !== "dev") {
    problems.push(
      `the stack's secrets would be encrypted with pgstack's committed dev passphrase (export PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE of this stack's own)`,
    );
  }

  const seed = top.seed ?? environment === "dev";
  if (seed && environment === "prod") problems.push(`${NAMESPACE}:seed must not be true on a prod stack (the seed is dev and test data)`);

  if (rds) {
    if (rds.skipFinalSnapshot && environment !== "dev") problems.push(`${NAMESPACE}:rds.skipFinalSnapshot may be true only on a dev stack`);
    if (environment === "prod") {
      if (!rds.multiAz) problems.push(`${NAMESPACE}:rds.multiAz must be true on prod`);
      if (!rds.deletionProtection) problems.push(`${NAMESPACE}:rds.deletionProtection must be true on prod`);
      if (rds.backupRetentionDays < 7) problems.push(`${NAMESPACE}:rds.backupRetentionDays must be at least 7 on prod (got ${rds.backupRetentionDays})`);
      if (!rds.storageEncrypted) problems.push(`${NAMESPACE}:rds.storageEncrypted must be true on prod`);
      if (!rds.manageMasterUserPassword) problems.push(`${NAMESPACE}:rds.manageMasterUserPassword must be true on prod`);
      if (rds.publiclyAccessible) problems.push(`${NAMESPACE}:rds.publiclyAccessible must be false on prod`);
    }
    if (rds.instance === "original" && rds.restoreFromSnapshot) {
      problems.push(`${NAMESPACE}:rds.restoreFromSnapshot is set but ${NAMESPACE}:rds.instance is original (set it to restored, or remove restoreFromSnapshot)`);
    }
    if (rds.instance === "original" && rds.original !== "keep") {
      problems.push(`${NAMESPACE}:rds.original is ${rds.original} but the stack runs on its original instance (${NAMESPACE}:rds.instance is original)`);
    }
    if (rds.allowedCidrBlocks.length === 0 && rds.allowedSecurityGroupIds.length === 0) {
      problems.push(`${NAMESPACE}:rds.allowedCidrBlocks or ${NAMESPACE}:rds.allowedSecurityGroupIds is missing (nothing could reach the database, not even the migrations)`);
    }
  }

  if (problems.length > 0) throw configError(raw.stack, problems);

  const stackDir = stackSlug(raw.stack);
  return {
    stack: raw.stack,
    project: raw.project,
    engine,
    postgresVersion: pg,
    environment,
    databaseName: top.databaseName,
    migrationsDir: top.migrationsDir,
    seed,
    pinnedMigration: top.pinnedMigration,
    lint: top.lint ?? (environment === "dev" ? "warn" : "strict"),
    embedded: embedded && { ...embedded, dataDir: embedded.dataDir ?? `.pgstack/${stackDir}/data` },
    docker,
    rds,
    snapshots: snapshots ?? { keep: DEFAULT_SNAPSHOTS_KEEP, maxPauseMs: DEFAULT_MAX_PAUSE_MS },
    drift: drift ?? { ...DEFAULT_DRIFT_POLICY },
    hasPassword: raw.hasPassword,
    hasExternalUrl: raw.hasExternalUrl,
  };
}

function configError(stack: string, problems: string[]): StackConfigError {
  return new StackConfigError(`Stack '${stack}' config is invalid: ${problems.join("; ")}.`);
}
