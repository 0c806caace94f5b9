import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { DEFAULT_MAX_PAUSE_MS, DEFAULT_SNAPSHOTS_KEEP, ENGINES, type Engine } from "../../config/schema";
import { DEFAULTS } from "../../core/settings";
import { childDependencies, parseScriptOutput, pgstackCommand } from "../command";

/**
 * How the program knows, at preview time and without connecting to the
 * database, that an update will apply migrations: the snapshot is keyed by
 * the migration set the update brings the database to (names and checksums,
 * in order, up to the pin). Pulumi's own diff then does the rest:
 *
 *   - the key is unchanged  -> the snapshot resource is unchanged, and so is
 *     every migration command (same checksum, same identity): nothing runs;
 *   - a migration was added, or a not-yet-applied one was fixed (new
 *     checksum) -> the key changes, the snapshot is replaced (a new one is
 *     taken; the old one is kept, `retainOnDelete`) and, because every
 *     migration command depends on it, it is taken before any of them runs;
 *   - the database was replaced or restored (the program reads it: see
 *     core/snapshot/observe.ts) -> the migrations it does not hold run
 *     again, after a snapshot; the others stay unchanged.
 *
 * Why not "the set of pending migrations" literally: that needs either the
 * database (unreachable in preview; on RDS maybe from CI) or the previous
 * deployment's outputs through a StackReference to the stack itself, which
 * are not written when an update fails half-way, exactly when it matters.
 * The migration-set key changes exactly when Pulumi will create or replace a
 * migration command, which is when migrations are pending, and a failed
 * update that is re-run with the same files keeps its snapshot.
 */
export function migrationSetKey(migrations: { name: string; checksum: string }[]): string {
  const hash = createHash("sha256");
  for (const m of migrations) hash.update(`${m.name}:${m.checksum}\n`);
  return hash.digest("hex").slice(0, 16);
}

const SNAPSHOT_ENGINES: readonly Engine[] = ENGINES;

/** Engines whose snapshot is taken by `pgstack snapshot create` (a template copy, or pg_dump where a copy is not possible). */
export function isTemplateEngine(engine: Engine): boolean {
  return engine !== "rds";
}

/** Default number of pre-update snapshots kept per stack (pgstack:snapshots.keep). */
export const DEFAULT_KEEP = DEFAULT_SNAPSHOTS_KEEP;

export interface PreUpdateSnapshotArgs {
  /**
   * `embedded`, `docker`, `external`: a server-side copy (CREATE DATABASE ...
   * TEMPLATE, or pg_dump where the role may not create databases) by
   * `pgstack snapshot create`. `rds`: an `aws.rds.Snapshot` of the
   * instance.
   */
  engine: Engine;
  /** The stack's name; snapshot ids carry it. */
  stack: string;
  /** Key of the migration set the update applies (migrationSetKey); a new key takes a new snapshot. */
  key: string;
  /** Secret URL of the database: the copy connects to it, and reads the last applied migration for the id. */
  databaseUrl: pulumi.Input<string>;
  /** Database identity; a new database takes a new snapshot. */
  identity: pulumi.Input<string>;
  /** rds only: the instance to snapshot. Required for rds. */
  rdsInstanceIdentifier?: pulumi.Input<string>;
  /** Working directory of the commands: the project root, relative (see commandDirFor). Default ".". */
  dir?: string;
  /**
   * Template-copy engines: snapshots of this stack to keep; the snapshot
   * command prunes older ones after taking its own (`--keep`). 0 keeps all
   * (no `--keep`).
   * Default 5 (`pgstack:snapshots.keep`). Ignored by rds.
   */
  keep?: number;
  /**
   * Template-copy engines: how long the snapshot may keep the database
   * closed while the application's transactions finish, ms
   * (`--max-pause-ms`, `pgstack:snapshots.maxPauseMs`). Default: the CLI's (1000).
   */
  maxPauseMs?: number;
  /**
   * Template-copy engines: how long the snapshot waits, in seconds, for
   * another deployer of the same database (a concurrent `pulumi up` of
   * another stack, a `prisma migrate deploy`) to finish before it fails with
   * one sentence (`--lock-wait`). Default DEFAULTS.lockWaitSeconds (60), like `pgstack apply`.
   */
  lockWaitSeconds?: number;
  /**
   * Template-copy engines: the migrations folder (relative to `dir`). When
   * set, the command takes no copy if the chain, up to `pinnedMigration`,
   * will apply nothing (e.g. the update after a rollback shrinks the chain)
   * and reports the stack's newest snapshot instead. Default: always copy.
   */
  migrationsDir?: string;
  /** With migrationsDir: the migration the chain is pinned at (`pgstack:pinnedMigration`). */
  pinnedMigration?: string;
}

/**
 * The template-copy engines' snapshot command (embedded, docker, external).
 * Contract with `pgstack snapshot create --json` (infra/cli/commands/snapshot.ts):
 *   --stack <stack> --key <key> [--keep <n>] [--max-pause-ms <ms>] --lock-wait <s>, DATABASE_URL in the environment;
 *   prints the SnapshotInfo as one JSON line ({"snapshotId", ...}); exits non-zero with one sentence.
 * Pure.
 */
export function templateSnapshotCommandArgs(
  args: Pick<PreUpdateSnapshotArgs, "stack" | "key" | "databaseUrl" | "identity" | "dir" | "keep" | "maxPauseMs" | "lockWaitSeconds" | "migrationsDir" | "pinnedMigration">,
): command.local.CommandArgs {
  const keep = args.keep ?? DEFAULT_KEEP;
  return {
    dir: args.dir ?? ".",
    create: pgstackCommand([
      "snapshot",
      "create",
      "--json",
      "--stack",
      args.stack,
      "--key",
      args.key,
      // 0 keeps all: the CLI's --keep is at least 1, so then no --keep at all.
      ...(keep > 0 ? ["--keep", String(keep)] : []),
      // Only when not the CLI's default: an unchanged command line does not update the existing stacks' step.
      ...(args.maxPauseMs !== undefined && args.maxPauseMs !== DEFAULT_MAX_PAUSE_MS ? ["--max-pause-ms", String(args.maxPauseMs)] : []),
      "--lock-wait",
      String(args.lockWaitSeconds ?? DEFAULTS.lockWaitSeconds),
      ...(args.migrationsDir ? ["--migrations-dir", args.migrationsDir] : []),
      ...(args.migrationsDir && args.pinnedMigration ? ["--to", args.pinnedMigration] : []),
    ]),
    environment: { DATABASE_URL: pulumi.secret(args.databaseUrl) },
    triggers: [args.key, args.identity],
  };
}

/** The rds engine's naming command (stack, last applied migration, time). Pure. */
export function rdsSnapshotNameCommandArgs(args: Pick<PreUpdateSnapshotArgs, "stack" | "key" | "databaseUrl" | "identity" | "dir">): command.local.CommandArgs {
  return {
    dir: args.dir ?? ".",
    create: pgstackCommand(["snapshot", "name", "--stack", args.stack, "--style", "rds", "--json"]),
    environment: { DATABASE_URL: pulumi.secret(args.databaseUrl) },
    triggers: [args.key, args.identity],
  };
}

/**
 * The snapshot taken before an update applies migrations. Kept when replaced
 * or deleted: a snapshot is only ever removed on purpose.
 */
export class PreUpdateSnapshot extends pulumi.ComponentResource {
  /** The snapshot's id: a database name (embedded) or a DB snapshot identifier (rds). */
  public readonly snapshotId: pulumi.Output<string>;
  /** The resource the migrations depend on. */
  public readonly resource: pulumi.Resource;

  constructor(name: string, args: PreUpdateSnapshotArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("pgstack:db:PreUpdateSnapshot", name, {}, opts);
    if (!SNAPSHOT_ENGINES.includes(args.engine)) {
      throw new pulumi.ResourceError(`Pre-update snapshots support the ${SNAPSHOT_ENGINES.join(", ")} engines, not '${args.engine}'.`, this);
    }
    if (args.keep !== undefined && (!Number.isInteger(args.keep) || args.keep < 0)) {
      throw new pulumi.ResourceError(`Snapshot retention ${args.keep} is not a whole number of snapshots (0 keeps all).`, this);
    }
    if (!/^[0-9a-f]{8,64}$/.test(args.key)) throw new pulumi.ResourceError(`Snapshot key '${args.key}' is not a migration-set key.`, this);
    if (args.engine === "rds" && !args.rdsInstanceIdentifier) {
      throw new pulumi.ResourceError("An rds pre-update snapshot needs rdsInstanceIdentifier.", this);
    }

    // What the snapshot waits for (the database) comes as opts.dependsOn.
    const childOpts = { parent: this, dependsOn: childDependencies(opts.dependsOn), retainOnDelete: true };
    if (isTemplateEngine(args.engine)) {
      const copy = new command.local.Command(`${name}-copy`, templateSnapshotCommandArgs(args), childOpts);
      this.snapshotId = pulumi.unsecret(copy.stdout.apply((out) => parseScriptOutput<{ snapshotId: string }>(out, "The snapshot command").snapshotId));
      this.resource = copy;
    } else {
      const stamp = new command.local.Command(`${name}-id`, rdsSnapshotNameCommandArgs(args), childOpts);
      const stamped = pulumi.unsecret(stamp.stdout.apply((out) => parseScriptOutput<{ snapshotId: string; lastMigration: string | null }>(out, "The snapshot naming command")));
      const snapshot = new aws.rds.Snapshot(
        `${name}-rds`,
        {
          dbInstanceIdentifier: args.rdsInstanceIdentifier!,
          dbSnapshotIdentifier: stamped.snapshotId,
          tags: {
            "pgstack:stack": args.stack,
            "pgstack:migration-set": args.key,
            "pgstack:last-migration": stamped.apply((s) => s.lastMigration ?? "none"),
          },
        },
        childOpts,
      );
      this.snapshotId = snapshot.dbSnapshotIdentifier;
      this.resource = snapshot;
    }
    this.registerOutputs({ snapshotId: this.snapshotId });
  }
}
