import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import type { LoadedStackConfig } from "./config";
import type { StackConfig } from "./config/schema";
import { commandDirFor } from "./components/command";
import { Database, type DatabaseArgs } from "./components/database";
import { expandAfterSplit, MigrationChain, pendingLinks, phasesMessage, planChain, splitPoint, splitPointByLedger, type ChainLink, type ChainMigration } from "./components/migrations";
import { classifyMigration, type MigrationCompatibility } from "./core/compat";
import { SEED_SCRIPT, Seed } from "./components/seed";
import { Verification } from "./components/verify";
import { migrationSetKey, PreUpdateSnapshot } from "./components/snapshot";
import { isPgstackError } from "./core/errors";
import type { Logger } from "./core/logger";
import { removeAbandonedPartials } from "./core/snapshot/dump";
import { recoverInterrupted } from "./core/snapshot/fence";
import { staleIntentMessage, unfinishedRollbackMessage } from "./core/snapshot/intent";
import { appliedUnder, chainIdentity, missingMigrationsNote, observeDatabase, stackIdentity, type DatabaseObservation } from "./core/snapshot/observe";
import { DEFAULT_SNAPSHOTS_DIR } from "./core/snapshot/store";
import { discoverMigrations } from "./core/migrations/discover";
import { modesOf } from "./core/migrations/mode";
import { previouslyAppliedMigrations } from "./config/stack";
import { contractGateMessage, contractNote, enforceLintGate, expandAfterContractMessage, pendingContract } from "./guards/lint";

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
export const NAMES = { database: "db", snapshot: "pre-update", chain: "migrations", seed: "seed", verify: "verify" } as const;

/**
 * The parts' options under a parent (the PgStack component): the same names,
 * aliased to the top-level resources a program registered before, so an
 * existing stack upgrades without a replace (Pulumi carries the alias down to
 * their children).
 */
function childOptions(parent: pulumi.Resource | undefined): (name: string) => pulumi.ComponentResourceOptions {
  return (name) => (parent ? { parent, aliases: [{ name, parent: pulumi.rootStackResource }] } : {});
}

/** The migration folders, as the chain needs them; a malformed folder stops the program with one sentence. */
export async function readMigrations(projectDir: string, migrationsDir: string): Promise<ChainMigration[]> {
  try {
    const found = await discoverMigrations(path.join(projectDir, migrationsDir));
    const modes = await modesOf(found);
    const compatibility = new Map<string, MigrationCompatibility>();
    // SQL that does not parse comes back `contract` (rule unknown-statement): it cannot be shown harmless.
    for (const m of found) compatibility.set(m.name, await classifyMigration(m.sql));
    return found.map((m) => ({ name: m.name, checksum: m.checksum, mode: modes.get(m.name), compatibility: compatibility.get(m.name) }));
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

/**
 * Reads the database as it is now (see core/snapshot/observe.ts); during an
 * update (not a preview) it first repairs what an interrupted snapshot or
 * restore left, as every pgstack command does, so an `up` with nothing to
 * apply repairs too. Undefined when the database does not answer from here.
 */
export type Observe = (url: string, options: { repair: boolean; snapshotsDir: string }) => Promise<DatabaseObservation | undefined>;

const pulumiLogger: Logger = {
  debug: (m) => void pulumi.log.debug(m),
  info: (m) => void pulumi.log.info(m),
  warn: (m) => void pulumi.log.warn(m),
  error: (m) => void pulumi.log.error(m),
};

export const observeLive: Observe = async (url, options) => {
  try {
    if (options.repair) {
      await removeAbandonedPartials(options.snapshotsDir, pulumiLogger);
      await recoverInterrupted(url, { log: pulumiLogger, waitMs: 5000 });
    }
    return await observeDatabase(url, { snapshotsDir: options.snapshotsDir });
  } catch {
    return undefined;
  }
};

/** Serves the update's migration steps (see infra/cli/session.ts); tests pass their own. */
export type ServeSteps = (options: { projectDir: string; stack: string; databaseUrl: pulumi.Output<string>; steps: string[][]; after?: string[][] }) => Promise<{ close(): void }>;

/** The names of the rollout's resources, as the preview shows them. */
async function resourceNames(resources: pulumi.Input<pulumi.Resource>[]): Promise<string[]> {
  const resolved = await Promise.all(resources.map((r) => (pulumi.Output.isInstance(r) ? new Promise<pulumi.Resource>((done) => r.apply(done)) : Promise.resolve(r))));
  const urns = await Promise.all(resolved.map((r) => new Promise<string>((done) => r.urn.apply(done))));
  return urns.map((urn) => urn.slice(urn.lastIndexOf("::") + 2));
}

export const serveSteps: ServeSteps = async (options) => {
  // Loaded only by an update that runs steps: a preview never pays for the CLI's commands.
  const { run } = require("./cli/main") as typeof import("./cli/main");
  const { serveMigrationSteps } = require("./cli/session") as typeof import("./cli/session");
  try {
    return await serveMigrationSteps({
      ...options,
      databaseUrl: new Promise<string>((resolve) => options.databaseUrl.apply((url) => resolve(url))),
      runner: run,
    });
  } catch (err) {
    if (isPgstackError(err)) throw new pulumi.RunError(err.message);
    throw err;
  }
};

/**
 * Drift found on the live database before an update applies migrations onto
 * it: said as a warning; on a `lint: strict` stack, failing drift (by
 * pgstack:drift) refuses the preview and the update, with the objects' DDL,
 * unless PGSTACK_ACCEPT_DRIFT=1 (the one-off acceptance) or the config allows
 * it. The check itself never stops an update: a drift check that cannot run is
 * a warning here (the verification after the update reports it).
 */
async function driftGate(url: string, projectDir: string, config: StackConfig): Promise<string | undefined> {
  // Loaded only by a program that will apply migrations onto a database it can read.
  const { driftOf, driftRefusal } = require("./core/verify") as typeof import("./core/verify");
  const check = await driftOf(url, {
    migrationsDir: path.join(projectDir, config.migrationsDir),
    policy: config.drift,
    cacheDir: path.join(projectDir, ".pgstack", "cache", "verify"),
    log: { debug: () => undefined, info: () => undefined, warn: (m) => pulumi.log.warn(m), error: (m) => pulumi.log.error(m) },
  });
  if (check.status === "pass") return undefined;
  if (check.details.error !== undefined) {
    pulumi.log.warn(`drift: not checked before the update: ${check.sentence}`);
    return undefined;
  }
  const accepted = process.env.PGSTACK_ACCEPT_DRIFT === "1";
  const refusal = config.lint === "strict" && !accepted ? driftRefusal(check, `Stack '${config.stack}'`) : undefined;
  if (refusal) return refusal.replace("or pass --accept-drift to deploy anyway", "or set PGSTACK_ACCEPT_DRIFT=1 for this preview and update to deploy anyway");
  pulumi.log.warn(`drift: ${check.sentence}${accepted && check.status === "fail" ? " (accepted: PGSTACK_ACCEPT_DRIFT=1)" : ""}`);
  return undefined;
}

/** The pgstack program: database, pre-update snapshot, migration chain, seed. */
export async function defineStack(
  loaded: LoadedStackConfig,
  projectDir: string,
  deps: {
    observe?: Observe;
    serveSteps?: ServeSteps;
    parent?: pulumi.Resource;
    ready?: pulumi.Resource[];
    /** The application rollout (PgStackArgs.contractAfter): the contract phase waits for it. */
    contractAfter?: pulumi.Input<pulumi.Resource>[];
    /** Told the last resource of the expand phase (PgStack.expanded stands for it), once the split is decided. */
    expanded?: (last: Promise<pulumi.Resource>) => void;
  } = {},
): Promise<StackOutputs> {
  const observe = deps.observe ?? observeLive;
  const under = childOptions(deps.parent);
  const config: StackConfig = loaded.config;
  const migrations = await readMigrations(projectDir, config.migrationsDir);
  // The chain's links (in order, up to the pin); their migrations are the set the chain brings the database to,
  // which keys the snapshot.
  let links: ChainLink[];
  try {
    links = planChain(NAMES.chain, migrations, config.pinnedMigration);
  } catch (err) {
    throw new pulumi.RunError((err as Error).message);
  }
  const chainSet: ChainMigration[] = links.map((link) => link.migration);
  // What the previous update applied: the lint gate's "would run", and where the chain splits around the rollout.
  // Read only when needed (it is a read of the stack's own outputs, which every preview would show).
  const previouslyApplied = config.lint === "strict" || deps.contractAfter ? await previouslyAppliedMigrations() : undefined;
  // Before any resource is registered: a refused preview or up changes nothing.
  if (config.lint === "strict") {
    await enforceLintGate({ stack: config.stack, projectDir, migrationsDir: config.migrationsDir, pinnedMigration: config.pinnedMigration, previouslyApplied });
    if (!deps.contractAfter && previouslyApplied !== undefined) {
      const contract = pendingContract(pendingLinks(links, previouslyApplied).map((l) => l.migration));
      const refusal = contractGateMessage(config.stack, contract);
      if (refusal) throw new pulumi.RunError(refusal);
      for (const m of contract) pulumi.log.info(`contract: accepted ${m.name} while the application version now running is live: ${m.compatibility!.acknowledged}`, deps.parent);
    }
    if (deps.contractAfter && previouslyApplied !== undefined) {
      // An expand migration that sorts after the first pending contract one runs after the rollout: refused unless
      // acknowledged (the new version does not need it). Said again, by the database's ledger, once it is read.
      const split = splitPoint(links, previouslyApplied);
      const later = expandAfterSplit(links, split, new Set(pendingLinks(links, previouslyApplied).map((l) => l.migration.name))).filter((m) => !m.compatibility?.acknowledged);
      if (later.length > 0) throw new pulumi.RunError(expandAfterContractMessage(config.stack, links[split!].migration, later, true));
    }
  }
  // Where the chain splits around the rollout: decided once the database's ledger is read (below), by the ledger when
  // the program can read it, else by the previous update's outputs. Every step's dependencies wait for the decision
  // (MigrationChain); nothing it waits for comes after a step, so the steps before the split never wait on the rollout.
  let decideSplit!: { resolve(split: number | undefined): void };
  const decided = new Promise<number | undefined>((resolve) => (decideSplit = { resolve }));
  const key = migrationSetKey(chainSet);

  const dir = commandDirFor(projectDir);
  const db = new Database(NAMES.database, { ...databaseArgs(loaded, dir), reachabilityKey: key }, under(NAMES.database));

  // An update refused after an unfinished rollback serves no steps: its session ends at once.
  let refused = false;
  let closeSession = () => undefined as void;

  // Where the chain splits, what the update will run in each phase, or which contract migrations run while the old
  // version serves: decided and said once, from the database's ledger when it answers, else from what the previous
  // update applied.
  let reported = false;
  const decidePhases = (ledger: Set<string> | undefined): void => {
    if (reported) return;
    reported = true;
    const pending = ledger ? links.filter((l) => !ledger.has(l.migration.name)) : previouslyApplied ? pendingLinks(links, previouslyApplied) : undefined;
    if (deps.contractAfter) {
      // By the ledger: an adopted database with an application on it, or one a restore took back behind the outputs,
      // splits too; an empty ledger is a new database (no split).
      const split = ledger ? splitPointByLedger(links, ledger) : splitPoint(links, previouslyApplied);
      if (pending) {
        const names = new Set(pending.map((l) => l.migration.name));
        const rollout = deps.contractAfter;
        void resourceNames(rollout).then((resources) => {
          const message = phasesMessage(links, split, names, resources);
          if (message) pulumi.log.info(message, deps.parent);
        });
        // An expand migration sorted after the split runs after the rollout: the new version goes live without it.
        // (A strict stack refused the unacknowledged ones before registering anything, by its outputs; this is by the ledger.)
        const later = expandAfterSplit(links, split, names);
        const strict = config.lint === "strict";
        const blocked = later.filter((m) => !(strict && m.compatibility?.acknowledged));
        if (blocked.length > 0) pulumi.log.warn(expandAfterContractMessage(config.stack, links[split!].migration, blocked, false), deps.parent);
        for (const m of later.filter((x) => strict && x.compatibility?.acknowledged)) {
          pulumi.log.info(`contract: accepted ${m.name} after the application rollout: ${m.compatibility!.acknowledged}`, deps.parent);
        }
      }
      decideSplit.resolve(split);
      return;
    }
    decideSplit.resolve(undefined);
    if (!pending) return;
    // A fresh database (an empty ledger) has no application running on it yet.
    if (ledger && ledger.size === 0) return;
    const note = contractNote(pendingContract(pending.map((l) => l.migration)));
    if (note) pulumi.log.warn(note, deps.parent);
  };

  // What the database holds now, not what the last update left: after a restore only the
  // migrations it removed run again. rds is never restored in place (a restore is a new instance).
  const names = chainSet.map((m) => m.name);
  const underIdentity = pulumi.unsecret(
    pulumi.all([db.url, db.identity]).apply(async ([url, recorded]) => {
      if (config.engine === "rds" || names.length === 0) {
        decidePhases(undefined);
        return appliedUnder(names, undefined, recorded, undefined);
      }
      const observation = await observe(url, { repair: !pulumi.runtime.isDryRun(), snapshotsDir: path.join(projectDir, DEFAULT_SNAPSHOTS_DIR) });
      decidePhases(observation ? new Set(observation.applied.keys()) : undefined);
      // A rollback killed (or a `pgstack revert` run by hand) past its point of no return, before the pin:
      // applying what it removed would undo it, so nothing runs until it is finished.
      // Only while the ledger agrees with it: a stale or forged record never blocks the update.
      if (observation?.staleRollback) pulumi.log.warn(staleIntentMessage(config.stack, observation.staleRollback, "ignored"));
      const intent = observation?.unfinishedRollback;
      if (intent && intent.pin !== config.pinnedMigration) {
        // Said once, plainly: the error thrown here reaches Pulumi wrapped once per resource that waits on it.
        pulumi.log.error(unfinishedRollbackMessage(config.stack, intent));
        refused = true;
        closeSession();
        throw new pulumi.RunError(`this update is refused until the interrupted rollback of stack '${config.stack}' is finished (see the error above)`);
      }
      // Drift before the update (README, "Verify"): only when it will apply something onto this database.
      // (With the live observer only: a program under test that is handed its observation reads no database.)
      if (deps.observe === undefined && observation && observation.applied.size > 0 && names.some((n) => !observation.applied.has(n))) {
        const refusal = await driftGate(url, projectDir, config);
        if (refusal) {
          pulumi.log.error(refusal);
          refused = true;
          closeSession();
          throw new pulumi.RunError(`this update is refused: database of stack '${config.stack}' differs from its migrations (see the error above)`);
        }
      }
      const live = observation ? stackIdentity(config.engine, observation.identity) : undefined;
      const under = appliedUnder(names, observation, recorded, live);
      const note = missingMigrationsNote(names, observation, recorded, live);
      if (note) pulumi.log.info(note);
      return under;
    }),
  );
  // A preview of a database not created yet runs no apply above: the previous outputs decide (no split without them).
  const settled = () => void decidePhases(undefined);
  (underIdentity as unknown as { isKnown: Promise<boolean> }).isKnown.then(settled, settled);
  const snapshotIdentity = pulumi.all([underIdentity, db.identity]).apply(([under, recorded]) => chainIdentity(under, recorded));

  // Every engine snapshots before an update that applies migrations; no migration runs unless it succeeded.
  let snapshot: PreUpdateSnapshot | undefined;
  if (chainSet.length > 0) {
    snapshot = new PreUpdateSnapshot(NAMES.snapshot, {
      engine: config.engine,
      stack: config.stack,
      dir,
      key,
      databaseUrl: db.url,
      identity: snapshotIdentity,
      rdsInstanceIdentifier: db.rdsInstanceIdentifier,
      keep: config.engine === "rds" ? undefined : config.snapshots.keep,
      maxPauseMs: config.engine === "rds" ? undefined : config.snapshots.maxPauseMs,
      migrationsDir: config.migrationsDir,
      pinnedMigration: config.pinnedMigration,
    }, { ...under(NAMES.snapshot), dependsOn: db.ready });
  }

  const chain = new MigrationChain(NAMES.chain, {
    migrations,
    migrationsDir: config.migrationsDir,
    dir,
    stack: config.stack,
    identity: db.identity,
    appliedUnder: underIdentity,
    pinnedMigration: config.pinnedMigration,
    // Split only around a rollout: without one the chain (its steps and their dependencies) is as it always was.
    ...(deps.contractAfter ? { contractAfter: deps.contractAfter, contractFrom: decided.then((split) => (split === undefined ? undefined : links[split].migration.name)) } : {}),
  }, { ...under(NAMES.chain), dependsOn: snapshot ? [snapshot] : db.ready });
  // The expand phase ends with its last step; before any, with the snapshot; without a chain, with the database.
  deps.expanded?.(chain.expandCommands.then((expand) => expand[expand.length - 1] ?? snapshot?.resource ?? db.ready[db.ready.length - 1]));

  let seeded: Seed | undefined;
  // A database whose first migration is (again) to be applied is a new one: seed it again.
  const seedIdentity = config.seed ? pulumi.all([underIdentity, db.identity]).apply(([under, recorded]) => (names.length > 0 ? under[names[0]] : recorded)) : undefined;
  if (config.seed) {
    seeded = new Seed(NAMES.seed, {
      environment: config.environment,
      stack: config.stack,
      dir,
      databaseUrl: db.url,
      identity: seedIdentity!,
      scriptChecksum: seedChecksum(projectDir),
    }, { ...under(NAMES.seed), dependsOn: chain.last ? [chain.last] : db.ready });
  }

  // Every update that ran a migration or the seed ends by verifying the database (README, "Verify"): served by the
  // deploy session like the steps, so only where there are steps (the session serves nothing else).
  let verification: Verification | undefined;
  if (chain.steps.length > 0) {
    verification = new Verification(NAMES.verify, {
      stack: config.stack,
      dir,
      migrationsDir: config.migrationsDir,
      postgresVersion: config.postgresVersion,
      drift: config.drift,
      // rds snapshots are RDS's own (aws.rds.Snapshot), not pgstack's to read.
      snapshot: config.engine !== "rds",
      triggers: [key, snapshotIdentity, ...(seeded ? [seedChecksum(projectDir), seedIdentity!] : [])],
    }, { ...under(NAMES.verify), dependsOn: [...(chain.last ? [chain.last] : []), ...(seeded ? [seeded] : [])] });
  }

  // An update (not a preview) serves its own migration steps; the session closes once the last one ran. It holds
  // the migration lock from the first step to the last, through the rollout of a split chain (infra/cli/session.ts).
  if (!pulumi.runtime.isDryRun() && chain.steps.length > 0) {
    const session = await (deps.serveSteps ?? serveSteps)({
      projectDir,
      stack: config.stack,
      databaseUrl: db.url,
      steps: chain.steps,
      ...(verification ? { after: [verification.step] } : {}),
    });
    // Open until the verification ran too (it is served after the chain and the seed, without the migration lock).
    pulumi.all([chain.appliedMigrations, verification ? verification.command.id : ""]).apply(() => session.close());
    closeSession = () => session.close();
    if (refused) session.close();
  }

  // What application resources depend on (PgStack.ready): every step, the seed and the verification.
  deps.ready?.push(db, chain, ...(seeded ? [seeded] : []), ...(verification ? [verification] : []));

  const latestSnapshot = snapshot ? snapshot.snapshotId : pulumi.output("");
  return {
    databaseUrl: pulumi.secret(db.url),
    appliedMigrations: chain.appliedMigrations,
    latestSnapshot,
    rollbackCommand: latestSnapshot.apply((id) => rollbackCommand(config.stack, id)),
    pinnedMigration: pulumi.output(config.pinnedMigration ?? ""),
  };
}
