import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { localServerUrl } from "../../core/db/url";
import { identityCommandText, parseScriptOutput } from "../command";
import type { DatabaseEndpoint } from "./types";

export const DOCKER_SUPERUSER = "postgres";

/** PostgreSQL in a container from an official image, its data in a named volume. */
export interface DockerArgs {
  /** Image reference. Default `postgres:18-alpine`. */
  image?: string;
  /** Host port published on 127.0.0.1. Default 5432. */
  port?: number;
  /** Superuser password, a secret (`pgstack:password`). Required. */
  password: pulumi.Input<string>;
}

/**
 * The container's name: the stack name's last `/` segment as it is, not the
 * stack slug (core/snapshot/naming.ts stackSlug), which lowercases it and
 * turns `_` and `.` into `-`. Changing the name would make every existing
 * stack with such a name replace its container; pinned by a unit test.
 */
export function dockerContainerName(stack: string): string {
  return `pgstack-${stack.split("/").pop()}-postgres`;
}

/** The container's inputs, given the image and volume. Pure. */
export function dockerContainerArgs(
  args: { image: pulumi.Input<string>; volumeName: pulumi.Input<string>; port: number; password: pulumi.Input<string> },
  databaseName: string,
  stack: string,
): docker.ContainerArgs {
  return {
    image: args.image,
    name: dockerContainerName(stack),
    // The password is the container's environment: secret in the state as a whole.
    envs: pulumi.secret(
      pulumi.all([args.password]).apply(([password]) => [
        `POSTGRES_USER=${DOCKER_SUPERUSER}`,
        `POSTGRES_PASSWORD=${password}`,
        `POSTGRES_DB=${databaseName}`,
      ]),
    ),
    ports: [{ internal: 5432, external: args.port, ip: "127.0.0.1" }],
    volumes: [{ volumeName: args.volumeName, containerPath: "/var/lib/postgresql/data" }],
    restart: "unless-stopped",
    healthcheck: {
      tests: ["CMD-SHELL", `pg_isready -U ${DOCKER_SUPERUSER} -d ${databaseName}`],
      interval: "2s",
      timeout: "5s",
      retries: 30,
      startPeriod: "5s",
    },
    // Created only once the server answers, so the migrations find it ready.
    wait: true,
    waitTimeout: 120,
    mustRun: true,
  };
}

export function dockerUrl(password: string, port: number, databaseName: string): string {
  return localServerUrl(DOCKER_SUPERUSER, password, port, databaseName);
}

export function provisionDocker(name: string, args: DockerArgs, databaseName: string, stack: string, dir: string, parent: pulumi.Resource): DatabaseEndpoint {
  const port = args.port ?? 5432;
  const image = new docker.RemoteImage(`${name}-image`, { name: args.image ?? "postgres:18-alpine", keepLocally: true }, { parent });
  // No fixed name: Docker generates one, so a replaced volume (new data) has a new name.
  const volume = new docker.Volume(`${name}-data`, { labels: [{ label: "pgstack.stack", value: stack }] }, { parent, retainOnDelete: true });
  const container = new docker.Container(
    `${name}-server`,
    dockerContainerArgs({ image: image.imageId, volumeName: volume.name, port, password: args.password }, databaseName, stack),
    { parent, additionalSecretOutputs: ["envs"] },
  );
  const url = pulumi.secret(pulumi.all([args.password]).apply(([password]) => dockerUrl(password, port, databaseName)));
  const probe = new command.local.Command(
    `${name}-identity`,
    { dir, create: identityCommandText("docker"), environment: { DATABASE_URL: url }, triggers: [volume.name] },
    { parent, dependsOn: [container] },
  );
  const identity = pulumi.unsecret(probe.stdout.apply((out) => parseScriptOutput<{ identity: string }>(out, "The identity command").identity));
  return { url, identity, ready: [container, probe] };
}
