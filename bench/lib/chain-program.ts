/**
 * The Pulumi program of the chain benchmark (run by `pulumi up` through the
 * generated project in bench/.work/chain/project), against a throwaway
 * database. Everything comes from the environment, so the benchmark's stacks
 * need no config files:
 *
 *   BENCH_CHAIN_DIR      migrations folder, relative to the repository root
 *   BENCH_CHAIN_URL      database URL (a secret here, as in the real stack; only the program and the direct variant's steps have it)
 *   BENCH_CHAIN_VARIANT  pgstack | floor | direct
 *     pgstack: infra/components/migrations MigrationChain as shipped (sh infra/bin/pgstack-step: the deploy session),
 *              its migrations read as the real program reads them (infra/stack.ts readMigrations: names, checksums, modes)
 *     floor:   one no-op command (`create: "true"`) per migration, each after the previous one: what Pulumi
 *              itself charges for a step; the same folder is read the same way, so previews compare like with like
 *     direct:  the same chain running `node infra/bin/pgstack.js apply <name>` in every step (before issue #13)
 *     floor-inputs: the floor with each migration step's inputs (environment, triggers) but `create: "true"`
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { childDependencies, pgstackCommand } from "../../infra/components/command";
import { MigrationChain, migrationCommandArgs, planChain } from "../../infra/components/migrations/chain";
import { readMigrations, serveSteps } from "../../infra/stack";

const REPO = path.resolve(__dirname, "..", "..");

export default async function program(): Promise<Record<string, unknown>> {
  const dir = process.env.BENCH_CHAIN_DIR;
  const rawUrl = process.env.BENCH_CHAIN_URL;
  const variant = process.env.BENCH_CHAIN_VARIANT ?? "pgstack";
  if (!dir || !rawUrl) throw new Error("BENCH_CHAIN_DIR and BENCH_CHAIN_URL must be set");
  const url = pulumi.secret(rawUrl);
  const runDir = path.relative(process.cwd(), REPO) || ".";
  const migrations = await readMigrations(REPO, dir);
  const identity = "bench";

  const stack = pulumi.getStack();
  if (variant === "pgstack") {
    const chain = new MigrationChain("migrations", { migrations, migrationsDir: dir, stack, dir: runDir, identity });
    // As infra/stack.ts does: the update's program serves its steps.
    if (!pulumi.runtime.isDryRun()) {
      const session = await serveSteps({ projectDir: REPO, stack, databaseUrl: url, steps: chain.steps });
      chain.appliedMigrations.apply(() => session.close());
    }
    return { applied: chain.appliedMigrations.apply((a) => a.length) };
  }
  // floor and direct: the component's shape (a parent, one command per migration after the previous one).
  const parent = new pulumi.ComponentResource("pgstack:db:MigrationChain", "migrations");
  let previous: command.local.Command | undefined;
  for (const link of planChain("migrations", migrations)) {
    const args: command.local.CommandArgs =
      variant === "floor"
        ? { dir: runDir, create: "true" }
        : variant === "floor-inputs"
          ? // Pulumi's price for a step with a migration's inputs (environment, triggers) and none of its work.
            { ...migrationCommandArgs(link.migration, { migrationsDir: dir, stack, dir: runDir, identity }), create: "true" }
          : {
            ...migrationCommandArgs(link.migration, { migrationsDir: dir, stack, dir: runDir, identity }),
            // Before issue #13: the CLI per step, with the URL in each step's environment.
            environment: { DATABASE_URL: url },
            create: pgstackCommand(["apply", link.migration.name, "--dir", dir]),
          };
    previous = new command.local.Command(link.resourceName, args, {
      parent,
      dependsOn: childDependencies(undefined, ...(previous ? [previous] : [])),
    });
  }
  return { applied: migrations.length };
}
