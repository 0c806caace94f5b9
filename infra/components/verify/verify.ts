import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { DriftPolicy } from "../../core/verify/policy";
import { childDependencies, pgstackStepCommand } from "../command";

export interface VerificationArgs {
  stack: string;
  /** The migrations folder, relative to the project root. */
  migrationsDir: string;
  /** The major the server must run (pgstack:postgresVersion). */
  postgresVersion: string;
  /** pgstack:drift. */
  drift: DriftPolicy;
  /** Whether the latest snapshot is verified too (not on rds: its snapshots are RDS's, not pgstack's). */
  snapshot: boolean;
  /** What the steps before it ran on: any change runs the verification again (the migration set's key, the database under each migration, the seed's). */
  triggers: pulumi.Input<string>[];
  /** Working directory of the command: the project root, relative (see commandDirFor). Default ".". */
  dir?: string;
}

/** The verification step's command line, as the deploy session serves it (infra/cli/session.ts). Pure. */
export function verifyStepArgs(args: Pick<VerificationArgs, "migrationsDir" | "postgresVersion" | "drift" | "snapshot">): string[] {
  return [
    "verify",
    "--dir",
    args.migrationsDir,
    "--postgres-version",
    args.postgresVersion,
    "--changed",
    args.drift.changed,
    "--extra",
    args.drift.extra,
    ...args.drift.allow.flatMap((a) => ["--allow", a]),
    ...(args.snapshot ? [] : ["--no-snapshot"]),
  ];
}

/** The verification's command: `pgstack verify` through the update's deploy session, like a migration step. Pure. */
export function verificationCommandArgs(args: VerificationArgs): command.local.CommandArgs {
  return {
    dir: args.dir ?? ".",
    create: pgstackStepCommand(verifyStepArgs(args)),
    environment: { PGSTACK_STACK: args.stack },
    triggers: args.triggers,
  };
}

/**
 * After the migrations and the seed (`opts.dependsOn`): `pgstack verify` on
 * the database they ran on (database health, ledger, schema drift against the
 * applied history replayed on a throwaway server, the latest snapshot). A
 * failing check fails the update with its sentence. It runs in every update
 * that ran a migration or the seed (its triggers are theirs), never in one
 * that changed nothing.
 */
export class Verification extends pulumi.ComponentResource {
  public readonly command: command.local.Command;
  /** Its command line, for the deploy session to serve. */
  public readonly step: string[];

  constructor(name: string, args: VerificationArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("pgstack:db:Verification", name, {}, opts);
    this.step = verifyStepArgs(args);
    this.command = new command.local.Command(`${name}-run`, verificationCommandArgs(args), { parent: this, dependsOn: childDependencies(opts.dependsOn) });
    this.registerOutputs({});
  }
}
