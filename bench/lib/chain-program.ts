/**
 * The Pulumi program of the chain benchmark (run by `pulumi up` through the
 * generated project in bench/.work/chain/project): the project's own
 * MigrationChain component over a generated migrations folder, against a
 * throwaway database. Everything comes from the environment, so the
 * benchmark's stacks need no config files:
 *
 *   BENCH_CHAIN_DIR      migrations folder, relative to the repository root
 *   BENCH_CHAIN_URL      database URL (made a secret here, as the real stack does)
 *   BENCH_CHAIN_VARIANT  shipped | before | single
 *     shipped: infra/components/migrations MigrationChain as it is (node infra/bin/pgstack.js)
 *     before:  the same commands and options, running the CLI as it was before issue #6 (bench/lib/before.ts)
 *     single:  one command resource running `pgstack apply --all` (the floor: one process, one connection)
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { childDependencies } from "../../infra/components/command";
import { MigrationChain, migrationCommandArgs, PGSTACK_BIN } from "../../infra/components/migrations/chain";
import { discoverMigrations } from "../../infra/core/migrations/discover";
import { BEFORE_BIN_REL } from "./before";

const REPO = path.resolve(__dirname, "..", "..");

export default async function program(): Promise<Record<string, unknown>> {
  const dir = process.env.BENCH_CHAIN_DIR;
  const rawUrl = process.env.BENCH_CHAIN_URL;
  const variant = process.env.BENCH_CHAIN_VARIANT ?? "shipped";
  if (!dir || !rawUrl) throw new Error("BENCH_CHAIN_DIR and BENCH_CHAIN_URL must be set");
  const url = pulumi.secret(rawUrl);
  const runDir = path.relative(process.cwd(), REPO) || ".";
  const migrations = (await discoverMigrations(path.join(REPO, dir))).map((m) => ({ name: m.name, checksum: m.checksum }));
  const identity = "bench";

  if (variant === "shipped") {
    const chain = new MigrationChain("migrations", { migrations, migrationsDir: dir, databaseUrl: url, dir: runDir, identity });
    return { applied: chain.appliedMigrations.apply((a) => a.length) };
  }
  if (variant === "single") {
    const all = new command.local.Command("migrations-all", {
      dir: runDir,
      create: `node ${PGSTACK_BIN} apply --all --dir ${dir}`,
      environment: { DATABASE_URL: url },
      triggers: [migrations.map((m) => m.checksum).join(","), identity],
    });
    return { applied: all.id.apply(() => migrations.length) };
  }
  // before: exactly the component's commands, with the CLI from before issue #6.
  const parent = new pulumi.ComponentResource("pgstack:db:MigrationChain", "migrations");
  let previous: command.local.Command | undefined;
  for (const m of [...migrations].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const args = migrationCommandArgs(m, { migrationsDir: dir, databaseUrl: url, dir: runDir, identity });
    const create = String(args.create).replace(PGSTACK_BIN, BEFORE_BIN_REL);
    previous = new command.local.Command(`migrations-${m.name}`, { ...args, create }, {
      parent,
      dependsOn: childDependencies(undefined, ...(previous ? [previous] : [])),
    });
  }
  return { applied: migrations.length };
}
