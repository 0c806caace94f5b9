import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import type { LoadedStackConfig } from "./config";
import type { StackConfig } from "./config/schema";
import { commandDirFor } from "./components/command";
import { Database, type DatabaseArgs } from "./components/database";
import { MigrationChain, planChain, type ChainMigration } from "./components/migrations";
import { SEED_SCRIPT, Seed } from "./components/seed";
import { migrationSetKey, PreUpdateSnapshot } from "./components/snapshot";
import { isPgstackError } from "./core/errors";
import { discoverMigrations } from "./core/migrations/discover";
import { modesOf } from "./core/migrations/mode";
import { enforceLintGate, previouslyAppliedMigrations } from "./guards/lint";

/** Every stack's outputs. */
export interface StackOutputs {
  /** postgresql:// URL of the application database (secret). */
  databaseUrl: pulumi.Output<string>;
  /** Names of the migrations applied by the chain, in order. */
  appliedMigrations: pulumi.Output<string[]>;
  /** Id of the latest pre-update snapshot ("" when none was ever needed, or the engine has none yet). */
  latestSnapshot: pulumi.Output<string>;
  /** The exact command that restores it. */
  rollbackCommand: pulumi.Output<string>;
  /** The migration the chain is pinned at after a rollback ("" when not pinned): later ones wait for `--unpin`. */
  pinnedMigration: pulumi.Output<string>;
}

/** Resource names: state, never renamed. */
export const NAMES = { database: "db", snapshot: "pre-update", chain: "migrations", seed: "seed" } as const;

/** The migration folders, as the chain needs them; a malformed folder stops the program with one sentence. */
export async function readMigrations(projectDir: string, migrationsDir: string): Promise<ChainMigration[]> {
  try {
    const found = await discoverMigrations(path.join(projectDir, migrationsDir));
    const modes = await modesOf(found);
    return found.map((m) => ({ name: m.name, checksum: m.checksum, mode: modes.get(m.name) }));
  } catch (err) {
    if (isPgstackError(err)) throw new pulumi.RunError(err.message);
    throw err;
  }
}

/** Database component arguments from the stack config. Pure. */
export function databaseArgs(loaded: LoadedStackConfig, dir: string): DatabaseArgs {
  const c = loaded.config;
  const base = { engine: c.engine, databaseName: c.databaseName, stack: c.stack, dir };
  switch (c.engine) {
    case "embedded":
      return { ...base, embedded: { ...c.embedded!, postgresVersion: c.postgresVersion } };
    case "docker":
      return { ...base, docker: { ...c.docker!, password: loaded.password! } };
    case "rds":
      return { ...base, rds: { ...c.rds!, password: loaded.password } };
    case "external":
      return { ...base, external: { url: loaded.externalUrl! } };
  }
}

export function rollbackCommand(stack: string, snapshotId: string): string {
  return `npm run rollback -- --stack ${stack}${snapshotId ? ` --snapshot ${snapshotId}` : ""}`;
}

function seedChecksum(projectDir: string): string {
  const file = path.join(projectDir, SEED_SCRIPT);
  if (!existsSync(file)) throw new pulumi.RunError(`pgstack:seed is true but ${SEED_SCRIPT} does not exist: add it, or set pgstack:seed to false.`);
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** The pgstack program: database, pre-update snapshot, migration chain, seed. */
export async function defineStack(loaded: LoadedStackConfig, projectDir: string): Promise<StackOutputs> {
  const config: StackConfig = loaded.config;
  const migrations = await readMigrations(projectDir, config.migrationsDir);
  // Before any resource is registered: a refused preview or up changes nothing.
  if (config.lint === "strict") {
    await enforceLintGate({
      stack: config.stack,
      projectDir,
      migrationsDir: config.migrationsDir,
      pinnedMigration: config.pinnedMigration,
      previouslyApplied: await previouslyAppliedMigrations(),
    });
  }

  // The set the chain brings the database to (in order, up to the pin), which keys the snapshot.
  let chainSet: ChainMigration[];
  try {
    chainSet = planChain(NAMES.chain, migrations, config.pinnedMigration).map((link) => link.migration);
  } catch (err) {
    throw new pulumi.RunError((err as Error).message);
  }
  const key = migrationSetKey(chainSet);

  const dir = commandDirFor(projectDir);
  const db = new Database(NAMES.database, { ...databaseArgs(loaded, dir), reachabilityKey: key });

  // Every engine snapshots before an update that applies migrations; no migration runs unless it succeeded.
  let snapshot: PreUpdateSnapshot | undefined;
  if (chainSet.length > 0) {
    snapshot = new PreUpdateSnapshot(NAMES.snapshot, {
      engine: config.engine,
      stack: config.stack,
      dir,
      key,
      databaseUrl: db.url,
      identity: db.identity,
      rdsInstanceIdentifier: db.rdsInstanceIdentifier,
      keep: config.engine === "rds" ? undefined : config.snapshots.keep,
      migrationsDir: config.migrationsDir,
      pinnedMigration: config.pinnedMigration,
    }, { dependsOn: db.ready });
  }

  const chain = new MigrationChain(NAMES.chain, {
    migrations,
    migrationsDir: config.migrationsDir,
    dir,
    databaseUrl: db.url,
    identity: db.identity,
    pinnedMigration: config.pinnedMigration,
  }, { dependsOn: snapshot ? [snapshot] : db.ready });

  if (config.seed) {
    new Seed(NAMES.seed, {
      environment: config.environment,
      stack: config.stack,
      dir,
      databaseUrl: db.url,
      identity: db.identity,
      scriptChecksum: seedChecksum(projectDir),
    }, { dependsOn: chain.last ? [chain.last] : db.ready });
  }

  const latestSnapshot = snapshot ? snapshot.snapshotId : pulumi.output("");
  return {
    databaseUrl: pulumi.secret(db.url),
    appliedMigrations: chain.appliedMigrations,
    latestSnapshot,
    rollbackCommand: latestSnapshot.apply((id) => rollbackCommand(config.stack, id)),
    pinnedMigration: pulumi.output(config.pinnedMigration ?? ""),
  };
}
