import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { MigrationCompatibility } from "../../core/compat";
import { compareMigrationNames } from "../../core/migrations/discover";
import { upToPin } from "../../core/migrations/pending";
import { childDependencies, PGSTACK_BIN, pgstackStepCommand } from "../command";

export { PGSTACK_BIN };

/** A migration folder as the program found it on disk. */
export interface ChainMigration {
  /** Folder name, `<14-digit timestamp>_<name>`. */
  name: string;
  /** SHA-256 of migration.sql (Prisma's checksum). */
  checksum: string;
  /** How it runs (transaction, statements, as-written); undefined when its SQL does not parse. */
  mode?: string;
  /**
   * Whether the application version now running keeps working once it ran
   * (`expand`) or not (`contract`), with the statements and reasons
   * (core/compat); SQL that does not parse is `contract`.
   */
  compatibility?: MigrationCompatibility;
}

export interface MigrationChainArgs {
  /** Every migration folder, in any order (the chain sorts by name). */
  migrations: ChainMigration[];
  /** The migrations folder relative to the project root, where the commands run. Default `migrations`. */
  migrationsDir?: string;
  /**
   * The stack's name: each step finds the update's deploy session by it and
   * the project folder ($PGSTACK_STACK). The steps carry no database URL: the
   * program that serves them has it (infra/cli/session.ts).
   */
  stack: string;
  /** Working directory of the commands: the project root, relative (see commandDirFor). Default ".". */
  dir?: string;
  /** Database identity; in every command's triggers, so a replaced database is migrated again. */
  identity: pulumi.Input<string>;
  /**
   * Per migration, the identity of the database it was (or will be) applied
   * to, read from the database itself (core/snapshot/observe.ts): in its
   * command's triggers instead of `identity`, so a migration that a restore
   * removed is applied again and the others stay as they are. Default: `identity`.
   */
  appliedUnder?: pulumi.Input<Record<string, string>>;
  /**
   * Stop the chain after this migration: the ones after it get no resource,
   * so they are not applied (the pin `npm run rollback` sets, from config
   * `pgstack:pinnedMigration`). Default: the whole folder.
   */
  pinnedMigration?: string;
  /**
   * The application rollout: the resources whose completion means the new
   * application version is live. With `contractFrom`, that migration's step
   * and every later one also wait for them. Default: none.
   */
  contractAfter?: pulumi.Input<pulumi.Resource>[];
  /**
   * The first migration of the contract phase (see splitPoint); undefined: the chain is not split. A promise when
   * it is decided from the database's ledger (infra/stack.ts): each step's dependencies wait for it, so the steps
   * before the split never wait on the rollout.
   */
  contractFrom?: string | Promise<string | undefined>;
}

export interface ChainLink {
  migration: ChainMigration;
  /** The command resource's name: `${chain}-${folder}`, stable for the folder's life. */
  resourceName: string;
  /** The previous link's resource name, if any. */
  after?: string;
}

/**
 * The chain's links in name order, up to the pin. Pure; throws one sentence
 * for a duplicate folder or a pin that names no migration.
 */
export function planChain(name: string, migrations: ChainMigration[], pinnedMigration?: string): ChainLink[] {
  // Prisma's order, the runner's: each step's `apply` refuses while an earlier migration is not applied.
  const sorted = [...migrations].sort((a, b) => compareMigrationNames(a.name, b.name));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].name === sorted[i - 1].name) throw new Error(`Migration ${sorted[i].name} is listed twice.`);
  }
  if (pinnedMigration !== undefined && !sorted.some((m) => m.name === pinnedMigration)) {
    throw new Error(`pgstack:pinnedMigration '${pinnedMigration}' names no migration in the migrations folder.`);
  }
  const upTo = upToPin(sorted, pinnedMigration);
  return upTo.map((migration, i) => ({
    migration,
    resourceName: `${name}-${migration.name}`,
    after: i > 0 ? `${name}-${upTo[i - 1].name}` : undefined,
  }));
}

/** The migrations of `links` that the stack's previous update did not apply (all of them before its first update). Pure. */
export function pendingLinks(links: ChainLink[], previouslyApplied: string[] | undefined): ChainLink[] {
  const done = new Set(previouslyApplied ?? []);
  return links.filter((l) => !done.has(l.migration.name));
}

/**
 * Where the chain splits around the application rollout: at the first
 * pending contract migration, pending meaning not applied by the stack's
 * previous update (its `appliedMigrations` output, as the lint gate reads it),
 * so an old contract migration already applied holds nothing back. History
 * order is kept: everything from there on, a later expand migration too, runs
 * after the rollout. Undefined (no split) when no pending migration is
 * contract, or before the stack's first update (`previouslyApplied`
 * undefined): no application version runs on its database yet. Pure.
 */
export function splitPoint(links: ChainLink[], previouslyApplied: string[] | undefined): number | undefined {
  if (previouslyApplied === undefined) return undefined;
  const first = pendingLinks(links, previouslyApplied).find((l) => l.migration.compatibility?.compatibility === "contract");
  return first ? links.indexOf(first) : undefined;
}

/**
 * splitPoint by the database's own ledger (the migrations it records as
 * applied), which is what an application on it runs against: an adopted
 * database, or one a restore took back behind the stack's outputs. No split
 * when the ledger is empty (a new database: nothing runs on it yet). Pure.
 */
export function splitPointByLedger(links: ChainLink[], ledger: Set<string>): number | undefined {
  if (ledger.size === 0) return undefined;
  const first = links.find((l) => !ledger.has(l.migration.name) && l.migration.compatibility?.compatibility === "contract");
  return first ? links.indexOf(first) : undefined;
}

/**
 * The pending expand migrations that sort after the split: they run after the
 * rollout, so the new version goes live without them. Pure.
 */
export function expandAfterSplit(links: ChainLink[], split: number | undefined, pending: Set<string>): ChainMigration[] {
  if (split === undefined) return [];
  return links.slice(split + 1).map((l) => l.migration).filter((m) => pending.has(m.name) && m.compatibility?.compatibility === "expand");
}

/** The update's two phases as the preview shows them (`pending` are the names that will run), or undefined without a split. Pure. */
export function phasesMessage(links: ChainLink[], split: number | undefined, pending: Set<string>, rollout: string[]): string | undefined {
  if (split === undefined) return undefined;
  const list = (part: ChainLink[]) => {
    const names = part.map((l) => l.migration.name).filter((n) => pending.has(n));
    return `${names.length} migration${names.length === 1 ? "" : "s"}${names.length ? ` (${names.join(", ")})` : ""}`;
  };
  return `expand: ${list(links.slice(0, split))}; then the application rollout (${rollout.join(", ") || "no resource"}); then contract: ${list(links.slice(split))}`;
}

/**
 * What one migration's step runs: `apply <name> --dir <dir>`, and
 * `--mode <m>` for a non-atomic one, so it says so in the preview and runs
 * only in that mode. Pure.
 */
export function stepArgs(migration: ChainMigration, migrationsDir = "migrations"): string[] {
  return ["apply", migration.name, "--dir", migrationsDir, ...(migration.mode && migration.mode !== "transaction" ? ["--mode", migration.mode] : [])];
}

/**
 * One migration's command. `create` applies it (idempotent: an applied
 * migration is a no-op, so re-running is harmless), through the update's
 * deploy session (infra/bin/pgstack-step): the same apply, without a Node.js
 * start per step and without the URL in the step. No `delete`: removing or
 * replacing the resource never runs a down migration. Pure.
 */
export function migrationCommandArgs(
  migration: ChainMigration,
  args: Pick<MigrationChainArgs, "stack" | "identity" | "appliedUnder" | "migrationsDir" | "dir">,
): command.local.CommandArgs {
  return {
    dir: args.dir ?? ".",
    create: pgstackStepCommand(stepArgs(migration, args.migrationsDir)),
    environment: { PGSTACK_STACK: args.stack },
    triggers: [
      migration.checksum,
      args.appliedUnder === undefined ? args.identity : pulumi.all([args.appliedUnder, args.identity]).apply(([under, identity]) => under[migration.name] ?? identity),
    ],
  };
}

function withRollout(own: pulumi.Input<pulumi.Input<pulumi.Resource>[]>, rollout: pulumi.Input<pulumi.Resource>[]): pulumi.Input<pulumi.Input<pulumi.Resource>[]> {
  if (Array.isArray(own)) return [...own, ...rollout];
  return pulumi.output(own).apply((d) => [...(d as pulumi.Input<pulumi.Resource>[]), ...rollout]) as pulumi.Input<pulumi.Input<pulumi.Resource>[]>;
}

/**
 * The migrations as a chain of command resources, one per folder in name
 * order, each depending on the previous one and on what the chain depends on
 * (`opts.dependsOn`: the pre-update snapshot, so no migration runs unless it
 * succeeded): a failure stops the chain there, and the next `up` resumes
 * from it.
 */
export class MigrationChain extends pulumi.ComponentResource {
  /** The command resources, in order. */
  public readonly commands: command.local.Command[];
  /** Names of the migrations this chain applies (all of them once the update succeeds). */
  public readonly appliedMigrations: pulumi.Output<string[]>;
  /** The last command, for whatever must run after every migration (the seed). */
  public readonly last?: command.local.Command;
  /** Each command's step (stepArgs), in order: what the update's deploy session serves. */
  public readonly steps: string[][];
  /** The commands before the contract phase (all of them when the chain is not split), once the split is decided. */
  public readonly expandCommands: Promise<command.local.Command[]>;

  constructor(name: string, args: MigrationChainArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("pgstack:db:MigrationChain", name, {}, opts);
    let links: ChainLink[];
    try {
      links = planChain(name, args.migrations, args.pinnedMigration);
    } catch (err) {
      throw new pulumi.ResourceError((err as Error).message, this);
    }
    const at = (from: string | undefined) => (from === undefined || args.contractAfter === undefined ? -1 : links.findIndex((l) => l.migration.name === from));
    // Known now, or (decided from the database's ledger) later: then every step's dependencies wait for it.
    const split: number | Promise<number> = args.contractFrom instanceof Promise ? args.contractFrom.then(at) : at(args.contractFrom);
    const commands: command.local.Command[] = [];
    for (const [i, link] of links.entries()) {
      const previous = commands[commands.length - 1];
      const own = childDependencies(opts.dependsOn, ...(previous ? [previous] : []));
      // The contract phase: every step from the split on names the rollout among its dependencies (not only
      // through the step before it), so the state says what each one waits for.
      const phase = (s: number) => (s >= 0 && i >= s ? withRollout(own, args.contractAfter!) : own);
      const dependsOn = typeof split === "number" ? phase(split) : (pulumi.output(split).apply(phase) as pulumi.Input<pulumi.Input<pulumi.Resource>[]>);
      const cmd = new command.local.Command(link.resourceName, migrationCommandArgs(link.migration, args), { parent: this, dependsOn });
      commands.push(cmd);
    }
    this.commands = commands;
    this.expandCommands = Promise.resolve(split).then((s) => (s >= 0 ? commands.slice(0, s) : commands));
    this.expandCommands.catch(() => undefined);
    this.last = commands[commands.length - 1];
    this.steps = links.map((l) => stepArgs(l.migration, args.migrationsDir));
    const names = links.map((l) => l.migration.name);
    // Known once every command has run; unknown in a preview that would run some.
    this.appliedMigrations = pulumi.all(commands.map((c) => c.id)).apply(() => names);
    this.registerOutputs({ appliedMigrations: this.appliedMigrations });
  }
}
