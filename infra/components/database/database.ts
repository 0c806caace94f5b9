import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { pgstackCommand } from "../command";
import { provisionDocker, type DockerArgs } from "./docker";
import { provisionEmbedded, type EmbeddedArgs } from "./embedded";
import { provisionExternal, type ExternalArgs } from "./external";
import { provisionRds, type RdsArgs } from "./rds";
import type { DatabaseEndpoint } from "./types";

export type DatabaseEngine = "embedded" | "docker" | "rds" | "external";
const ENGINES: DatabaseEngine[] = ["embedded", "docker", "rds", "external"];

export interface DatabaseArgs {
  /** Which engine runs PostgreSQL. Exactly the matching block below must be given. */
  engine: DatabaseEngine;
  /** Name of the application database, created by the engine. Default `app`. */
  databaseName?: string;
  /** The stack's name, used in resource names, tags and labels. */
  stack: string;
  /**
   * The project root (where Pulumi.yaml is), relative to the program's working
   * directory (see commandDirFor): the engine's commands run there and the
   * embedded data dir is under it. Relative, so the state does not depend on
   * where the clone lives. Default ".".
   */
  dir?: string;
  /** `embedded` engine settings; exclusive with docker, rds and external. */
  embedded?: EmbeddedArgs;
  /** `docker` engine settings; exclusive with embedded, rds and external. */
  docker?: DockerArgs;
  /** `rds` engine settings; exclusive with embedded, docker and external. */
  rds?: RdsArgs;
  /** `external` engine settings; exclusive with embedded, docker and rds. */
  external?: ExternalArgs;
  /**
   * rds and external: check that the database answers (`pgstack ping`) before
   * anything that depends on `ready`, again whenever this value changes. The stack
   * passes the key of the migrations the update brings the database to, so an
   * update that will snapshot and migrate first proves it can reach the database.
   */
  reachabilityKey?: string;
}

/** Engines whose database lives elsewhere: the deploy may run where it is not reachable. */
export const REMOTE_ENGINES: DatabaseEngine[] = ["rds", "external"];

/** The reachability check's inputs. Pure. */
export function reachabilityCommandArgs(url: pulumi.Input<string>, dir: string, key: string): command.local.CommandArgs {
  return {
    dir,
    create: pgstackCommand(["ping"]),
    environment: { DATABASE_URL: pulumi.secret(url) },
    triggers: [key],
    addPreviousOutputInEnv: false,
  };
}

/** The problem with `args`, as one sentence, or undefined. Pure. */
export function validateDatabaseArgs(args: DatabaseArgs): string | undefined {
  if (!ENGINES.includes(args.engine)) return `Database engine '${args.engine}' is not one of ${ENGINES.join(", ")}.`;
  if (!args[args.engine]) return `Database engine '${args.engine}' needs its '${args.engine}' settings.`;
  const others = ENGINES.filter((e) => e !== args.engine && args[e] !== undefined);
  if (others.length > 0) return `Database engine '${args.engine}' excludes the ${others.join(", ")} settings given too.`;
  if (args.databaseName !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(args.databaseName)) {
    return `Database name '${args.databaseName}' must be a lower-case PostgreSQL identifier.`;
  }
  return undefined;
}

/**
 * PostgreSQL for one stack: the engine's resources, a secret connection URL
 * and a database identity that changes when the database is replaced.
 */
export class Database extends pulumi.ComponentResource {
  /** postgresql:// URL of the application database: a secret. */
  public readonly url: pulumi.Output<string>;
  /** Changes when the database is replaced; fed to the migration commands' triggers. */
  public readonly identity: pulumi.Output<string>;
  public readonly engine: DatabaseEngine;
  public readonly databaseName: string;
  /** Resources anything that connects must wait for. */
  public readonly ready: pulumi.Resource[];
  /** rds only: the instance identifier (for snapshots). */
  public readonly rdsInstanceIdentifier?: pulumi.Output<string>;

  constructor(name: string, args: DatabaseArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("pgstack:db:Database", name, {}, opts);
    const problem = validateDatabaseArgs(args);
    if (problem) throw new pulumi.ResourceError(problem, this);

    this.engine = args.engine;
    this.databaseName = args.databaseName ?? "app";
    const dir = args.dir ?? ".";
    let endpoint: DatabaseEndpoint;
    switch (args.engine) {
      case "embedded":
        endpoint = provisionEmbedded(name, args.embedded!, this.databaseName, dir, this);
        break;
      case "docker":
        endpoint = provisionDocker(name, args.docker!, this.databaseName, args.stack, dir, this);
        break;
      case "rds":
        endpoint = provisionRds(name, args.rds!, this.databaseName, args.stack, this);
        break;
      case "external":
        endpoint = provisionExternal(name, args.external!, dir, this);
        break;
    }
    this.url = pulumi.secret(endpoint.url);
    this.identity = endpoint.identity;
    this.ready = endpoint.ready;
    if (REMOTE_ENGINES.includes(args.engine)) {
      const reachable = new command.local.Command(`${name}-reachable`, reachabilityCommandArgs(this.url, dir, args.reachabilityKey ?? ""), {
        parent: this,
        dependsOn: endpoint.ready,
      });
      this.ready = [...endpoint.ready, reachable];
    }
    this.rdsInstanceIdentifier = endpoint.rdsInstanceIdentifier;
    this.registerOutputs({ url: this.url, identity: this.identity });
  }
}
