import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_SEED_SCRIPT, SEED_REFUSED_ON_PROD, environmentOf } from "../../config/schema";
import { childDependencies, pgstackCommand } from "../command";

export const SEED_SCRIPT = DEFAULT_SEED_SCRIPT;
export { SEED_REFUSED_ON_PROD };

export interface SeedArgs {
  /** The stack's environment; `prod` is refused. */
  environment: "dev" | "staging" | "prod";
  /** The stack's name, passed to the seed as PGSTACK_STACK (which refuses prod too). */
  stack: string;
  /** Secret URL of the migrated database; passed as $DATABASE_URL. */
  databaseUrl: pulumi.Input<string>;
  /** Database identity: a new database is seeded again. */
  identity: pulumi.Input<string>;
  /** SHA-256 of the seed script: editing it seeds again (after the migrations it depends on). */
  scriptChecksum: string;
  /** Seed script, relative to the project root. Default `prisma/seed.ts`. */
  script?: string;
  /** Working directory of the command: the project root, relative (see commandDirFor). Default ".". */
  dir?: string;
}

/** The seed command. Idempotent (upserts), so re-running is harmless; no delete. Pure. */
export function seedCommandArgs(args: SeedArgs): command.local.CommandArgs {
  return {
    dir: args.dir ?? ".",
    create: pgstackCommand(["seed", args.script ?? SEED_SCRIPT]),
    environment: { DATABASE_URL: pulumi.secret(args.databaseUrl), PGSTACK_STACK: args.stack, PGSTACK_ENV: args.environment },
    // Not the migration set: a new migration alone does not re-seed (so a
    // preview shows just it and the snapshot); a seed that needs it changes too.
    triggers: [args.scriptChecksum, args.identity],
  };
}

/**
 * Seeds the database through Prisma Client (prisma/seed.ts), after what it
 * depends on (`opts.dependsOn`: the last migration). Never on prod.
 */
export class Seed extends pulumi.ComponentResource {
  public readonly command: command.local.Command;

  constructor(name: string, args: SeedArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("pgstack:db:Seed", name, {}, opts);
    if (args.environment === "prod" || environmentOf(args.stack) === "prod") throw new pulumi.ResourceError(SEED_REFUSED_ON_PROD, this);
    this.command = new command.local.Command(`${name}-run`, seedCommandArgs(args), { parent: this, dependsOn: childDependencies(opts.dependsOn) });
    this.registerOutputs({});
  }
}
