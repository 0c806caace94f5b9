import * as pulumi from "@pulumi/pulumi";
import { readStackConfigValues, parseConfig, type LoadedStackConfig } from "../config";
import type {
  DockerConfig,
  EmbeddedConfig,
  Engine,
  Environment,
  LintMode,
  PostgresVersion,
  RawStackConfig,
  RdsConfig,
  SnapshotsConfig,
} from "../config/schema";
import { findProjectDir } from "../core/project";
import { defineStack, type Observe, type ServeSteps, type StackOutputs } from "../stack";

/**
 * The settings of a pgstack database: the `pgstack:*` stack config keys,
 * typed. A field left out is read from the stack config (`pgstack:<field>`),
 * then defaults as documented; a field given here wins over the stack config.
 * The keys `npm run rollback` writes (`pgstack:pinnedMigration`,
 * `pgstack:rds.restoreFromSnapshot`, `rds.instance`, `rds.original`) are always
 * read from the stack config, over what is given here.
 */
export interface PgStackArgs {
  /** Where the database runs: `embedded` (a local server, no Docker), `docker`, `rds` or `external` (a URL you own). Default embedded. */
  engine?: Engine;
  /** dev, staging or prod: decides the defaults (seed, lint) and the prod rules. Default: from the stack name (prod/production, staging/stage, else dev). */
  environment?: Environment;
  /** PostgreSQL major of every engine: "15", "16", "17" or "18"; dev runs what prod runs. Default "18". */
  postgresVersion?: PostgresVersion;
  /** The application database (a lower-case PostgreSQL identifier). Default `app`. */
  databaseName?: string;
  /** The migrations folder, relative to the Pulumi project (e.g. `prisma/migrations`). Default `migrations`. */
  migrationsDir?: string;
  /** Run `prisma/seed.ts` after the migrations. Default: true on dev only; refused on prod. */
  seed?: boolean;
  /** strict: a blocking lint finding in a migration the update would run fails preview and up; warn: printed only. Default: warn on dev, strict elsewhere. */
  lint?: LintMode;
  /** The embedded engine's settings: port (default 54329), dataDir (relative to the project, default `.pgstack/<stack>/data`), removeDataOnDestroy (default false). */
  embedded?: Partial<EmbeddedConfig>;
  /** The docker engine's settings: image (default `postgres:<postgresVersion>-alpine`), port (default 5432). */
  docker?: Partial<DockerConfig>;
  /** The rds engine's settings: instanceClass, vpcId, subnetIds and allowedCidrBlocks or allowedSecurityGroupIds are required (see RdsConfig for the rest and their defaults). */
  rds?: Partial<Omit<RdsConfig, "restoreFromSnapshot" | "instance" | "original">>;
  /** Pre-update snapshots kept per stack by the embedded, docker and external engines: keep (default 5, 0 keeps all). */
  snapshots?: Partial<SnapshotsConfig>;
  /** Secret: the docker superuser password, or the rds master password when rds.manageMasterUserPassword is false. Default: `pgstack:password`. */
  password?: pulumi.Input<string>;
  /** Secret: the external engine's connection URL (postgresql://...). Default: `pgstack:externalUrl`. */
  externalUrl?: pulumi.Input<string>;
  /**
   * The application rollout: the resources whose completion means the new
   * application version is live. With it, one update runs the pending
   * migrations in two phases around the rollout: the expand phase (migrations
   * the version now running keeps working with), then these resources, then
   * the contract phase, from the first pending contract migration on (it
   * drops, renames or retypes what the old version uses; see README
   * "Zero-downtime schema changes"). Either the resources themselves, or a
   * function that receives the expand phase's handle (`PgStack.expanded`,
   * what the application's resources `dependsOn`) and the component itself
   * (its `databaseUrl`, for the application; never its `ready`, which waits
   * for the contract phase) and returns them; it is called inside the
   * constructor. Default: none, every migration runs before anything that
   * depends on `ready`, while the version now running serves.
   */
  contractAfter?: pulumi.Input<pulumi.Resource>[] | ((expanded: pulumi.Resource[], db: PgStack) => pulumi.Resource[]);
}

/** The keys the tools write into the stack config; they win over the program's arguments. */
const OPERATIONAL_TOP = ["pinnedMigration"] as const;
const OPERATIONAL_RDS = ["restoreFromSnapshot", "instance", "original"] as const;
const ARG_KEYS = ["engine", "environment", "postgresVersion", "databaseName", "migrationsDir", "seed", "lint", "embedded", "docker", "rds", "snapshots"] as const;

/** The stack config's raw values with the arguments over them and the operational keys over both. Pure. */
export function mergeArgs(fromConfig: RawStackConfig, args: PgStackArgs): RawStackConfig {
  const values: Record<string, unknown> = { ...fromConfig.values };
  for (const k of ARG_KEYS) {
    if (args[k] !== undefined) values[k] = args[k];
  }
  for (const k of OPERATIONAL_TOP) {
    if (fromConfig.values[k] === undefined) delete values[k];
    else values[k] = fromConfig.values[k];
  }
  const configRds = fromConfig.values.rds;
  if (args.rds !== undefined && configRds && typeof configRds === "object") {
    const rds: Record<string, unknown> = { ...(args.rds as Record<string, unknown>) };
    for (const k of OPERATIONAL_RDS) {
      const v = (configRds as Record<string, unknown>)[k];
      if (v !== undefined) rds[k] = v;
    }
    values.rds = rds;
  }
  const keys = new Set(fromConfig.keys);
  for (const k of Object.keys(values)) keys.add(k);
  if (args.password !== undefined) keys.add("password");
  if (args.externalUrl !== undefined) keys.add("externalUrl");
  return {
    ...fromConfig,
    keys: [...keys],
    values,
    hasPassword: fromConfig.hasPassword || args.password !== undefined,
    hasExternalUrl: fromConfig.hasExternalUrl || args.externalUrl !== undefined,
    // A secret given as an argument is the program's own: only the stack file's plain values are refused.
    plainSecrets: (fromConfig.plainSecrets ?? []).filter((k) => !(k === "password" ? args.password !== undefined : k === "externalUrl" ? args.externalUrl !== undefined : false)),
  };
}

/** `contractAfter`'s shape, checked before anything is registered: one sentence naming what is wrong. Pure. */
export function contractAfterError(value: unknown): string | undefined {
  if (value === undefined || typeof value === "function") return undefined;
  const shape = "must be a list of resources or a function (expanded) => resources";
  if (!Array.isArray(value)) return `PgStackArgs.contractAfter ${shape}; got ${value === null ? "null" : typeof value}.`;
  const bad = value.findIndex((v) => !isResourceInput(v));
  return bad < 0 ? undefined : `PgStackArgs.contractAfter ${shape}; item ${bad} is ${describe(value[bad])}, not a resource.`;
}

/** What the callback returned: every item a resource. */
function rolloutError(value: unknown): string | undefined {
  if (Array.isArray(value) && value.every((v) => pulumi.Resource.isInstance(v))) return undefined;
  const what = Array.isArray(value) ? `a list whose item ${value.findIndex((v) => !pulumi.Resource.isInstance(v))} is ${describe(value.find((v) => !pulumi.Resource.isInstance(v)))}` : describe(value);
  return `PgStackArgs.contractAfter's function must return the list of the rollout's resources; it returned ${what}.`;
}

function isResourceInput(v: unknown): boolean {
  return pulumi.Resource.isInstance(v) || pulumi.Output.isInstance(v) || v instanceof Promise;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  return typeof v === "string" ? `the string '${v}'` : `a ${typeof v}`;
}

/**
 * The expand phase's handle: one resource that stands for the database and
 * every migration step before the contract phase (it is their last one, which
 * the others come before), known in the constructor although where the chain
 * splits is read asynchronously (the migration folders, the database's
 * ledger, the stack's previous update). Never registered: a resource that depends on it waits for that last
 * step; nothing else in the state changes.
 */
class ExpandPhase extends pulumi.DependencyResource {
  constructor(urn: Promise<string>) {
    super("");
    (this as unknown as { urn: pulumi.Output<string> }).urn = quiet(pulumi.output(handled(urn)));
  }
}

/** What the Pulumi unit tests replace (not part of the public entry): the project folder, the database reads, the step server. */
export const programDeps: { projectDir?: string; observe?: Observe; serveSteps?: ServeSteps } = {};

/**
 * pgstack's refusals are one sentence; their stack is never shown. Formatting
 * it anyway, through the source maps of every loaded module (@pulumi/aws has
 * thousands), took ~15 s of CPU on each failed preview.
 */
function withoutStack(err: unknown): unknown {
  if (pulumi.RunError.isInstance(err) || pulumi.ResourceError.isInstance(err)) {
    Object.defineProperty(err, "stack", { value: `${err.name}: ${err.message}`, writable: true, configurable: true });
  }
  return err;
}

function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/** Marks an Output's promises handled (see the constructor). */
function quiet<T>(o: pulumi.Output<T>): pulumi.Output<T> {
  const noop = () => undefined;
  const impl = o as unknown as { promise(withUnknowns?: boolean): Promise<unknown>; isKnown: Promise<boolean>; isSecret: Promise<boolean>; allResources?: () => Promise<unknown> };
  impl.promise(true).catch(noop);
  impl.promise().catch(noop);
  impl.isKnown.catch(noop);
  impl.isSecret.catch(noop);
  impl.allResources?.().catch(noop);
  return o;
}

/**
 * One PostgreSQL database per stack, as pgstack deploys it: the database
 * (embedded, docker, rds or external), a snapshot before an update that
 * applies migrations, the migrations as a chain of steps (one per folder), and
 * the seed (never on prod).
 *
 * One per stack: the tools (`pgstack`, `npm run rollback`, `npm run dev`) read
 * the stack outputs `databaseUrl`, `appliedMigrations` and `latestSnapshot`,
 * so the program exports them (`export const { databaseUrl, appliedMigrations,
 * latestSnapshot, rollbackCommand, pinnedMigration } = db;`). Application
 * resources that need the migrated database take `dependsOn: db.ready`.
 */
export class PgStack extends pulumi.ComponentResource {
  /** postgresql:// URL of the application database (secret). */
  public readonly databaseUrl: pulumi.Output<string>;
  /** Names of the migrations applied by the chain, in order. */
  public readonly appliedMigrations: pulumi.Output<string[]>;
  /** Id of the latest pre-update snapshot ("" when none was needed yet). */
  public readonly latestSnapshot: pulumi.Output<string>;
  /** The exact command that restores it. */
  public readonly rollbackCommand: pulumi.Output<string>;
  /** The migration the chain is pinned at after a rollback ("" when not pinned). */
  public readonly pinnedMigration: pulumi.Output<string>;
  /** What application resources depend on (`dependsOn: db.ready`): done once every migration and the seed succeeded. */
  public readonly ready: pulumi.Output<pulumi.Resource[]>;
  /**
   * The expand phase: the database and every migration step before the
   * contract phase (all of them when the chain is not split), as one resource
   * standing for its last step. The new application version depends on it
   * (`dependsOn: db.expanded`), not on `ready`, when it is in `contractAfter`
   * (that would be a cycle).
   */
  public readonly expanded: pulumi.Resource[];

  /**
   * @param name the component's name (its children keep pgstack's own names, so one PgStack per stack)
   * @param args settings over the stack's `pgstack:*` config (see PgStackArgs)
   */
  constructor(name: string, args: PgStackArgs = {}, opts: pulumi.ComponentResourceOptions = {}) {
    super("pgstack:db:PgStack", name, {}, opts);
    const projectDir = programDeps.projectDir ?? findProjectDir();
    if (!projectDir) throw withoutStack(new pulumi.ResourceError(`No Pulumi.yaml in ${process.cwd()} or above: a PgStack runs inside a Pulumi program.`, this));
    let loaded: LoadedStackConfig;
    try {
      const { raw, password, externalUrl } = readStackConfigValues();
      const merged = mergeArgs(raw, args);
      loaded = {
        // Validated first: nothing is registered below a bad setting.
        config: parseConfig(merged),
        password: args.password !== undefined ? pulumi.secret(pulumi.output(args.password)) : password,
        externalUrl: args.externalUrl !== undefined ? pulumi.secret(pulumi.output(args.externalUrl)) : externalUrl,
      };
    } catch (err) {
      throw withoutStack(err);
    }
    const shape = contractAfterError(args.contractAfter);
    if (shape) throw withoutStack(new pulumi.ResourceError(shape, this));
    let expandedUrn!: { resolve(urn: string): void; reject(err: unknown): void };
    this.expanded = [new ExpandPhase(new Promise<string>((resolve, reject) => (expandedUrn = { resolve, reject })))];
    // The outputs exist before contractAfter's function runs (it may pass databaseUrl to the application);
    // the stack is defined once it returned the rollout.
    let settle!: { resolve(o: Promise<StackOutputs>): void; reject(err: unknown): void };
    const defined = new Promise<StackOutputs>((resolve, reject) => (settle = { resolve, reject })).catch((err) => {
      expandedUrn.reject(err);
      throw withoutStack(err);
    });
    const readyParts: pulumi.Resource[] = [];
    // A refusal rejects every output with the same error, which the Pulumi runtime reports once;
    // each of their promises is marked handled so that nothing else reports it again.
    const from = <T>(pick: (o: StackOutputs) => pulumi.Output<T>): pulumi.Output<T> => quiet(pulumi.output(handled(defined.then(pick))) as pulumi.Output<T>);
    this.databaseUrl = from((o) => pulumi.secret(o.databaseUrl));
    this.appliedMigrations = from((o) => o.appliedMigrations);
    this.latestSnapshot = from((o) => o.latestSnapshot);
    this.rollbackCommand = from((o) => o.rollbackCommand);
    this.pinnedMigration = from((o) => o.pinnedMigration);
    this.ready = quiet(pulumi.output(handled(defined.then(() => [...readyParts]))));

    let rollout: pulumi.Input<pulumi.Resource>[] | undefined;
    if (typeof args.contractAfter === "function") {
      // Before anything of the stack is registered: a function that throws, or returns something else, leaves nothing behind.
      let returned: unknown;
      try {
        returned = args.contractAfter(this.expanded, this);
      } catch (err) {
        settle.reject(err);
        throw withoutStack(err);
      }
      const wrong = rolloutError(returned);
      if (wrong) {
        const err = withoutStack(new pulumi.ResourceError(wrong, this));
        settle.reject(err);
        throw err;
      }
      rollout = returned as pulumi.Resource[];
    } else {
      rollout = args.contractAfter;
    }
    settle.resolve(
      defineStack(loaded, projectDir, {
        observe: programDeps.observe,
        serveSteps: programDeps.serveSteps,
        parent: this,
        ready: readyParts,
        contractAfter: rollout,
        expanded: (last) => void last.then((r) => r.urn.apply((urn) => expandedUrn.resolve(urn)), (err) => expandedUrn.reject(err)),
      }),
    );
    // The outputs are the class's fields; registered empty so that a refusal is not reported once more from here.
    this.registerOutputs({});
  }

  /** The stack outputs the pgstack tools read, to `export =` or spread into the program's own. */
  public outputs(): StackOutputs {
    return {
      databaseUrl: this.databaseUrl,
      appliedMigrations: this.appliedMigrations,
      latestSnapshot: this.latestSnapshot,
      rollbackCommand: this.rollbackCommand,
      pinnedMigration: this.pinnedMigration,
    };
  }
}
