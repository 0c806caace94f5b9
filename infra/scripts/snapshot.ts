/**
 * The PreUpdateSnapshot component's commands (DATABASE_URL in the environment,
 * never on the command line):
 *
 *   node -r tsx/cjs infra/scripts/snapshot.ts create --stack <stack> [--key <key>]
 *       embedded engine: a new template copy of the database (infra/core/snapshot);
 *       prints the SnapshotInfo as one JSON line.
 *   node -r tsx/cjs infra/scripts/snapshot.ts name --stack <stack> --style rds
 *       rds engine: prints {"snapshotId": ...} for aws.rds.Snapshot, made of the
 *       stack, the last migration applied and the current time.
 */
import { isPgstackError, messageOf, PgstackError } from "../core/errors";
import { stderrLogger } from "../core/logger";
import { snapshotId, type SnapshotIdStyle } from "../core/snapshot/naming";
import { createTemplateSnapshot, lastAppliedMigration } from "../core/snapshot/template";

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...args] = argv;
  try {
    const url = env.DATABASE_URL;
    if (!url) throw new PgstackError("E_USAGE", "snapshot.ts needs DATABASE_URL in its environment.");
    const stack = flag(args, "--stack");
    if (!stack) throw new PgstackError("E_USAGE", "snapshot.ts needs --stack <name>.");
    switch (command) {
      case "create": {
        const info = await createTemplateSnapshot({ url, stack, key: flag(args, "--key"), log: stderrLogger() });
        process.stdout.write(JSON.stringify(info) + "\n");
        return 0;
      }
      case "name": {
        const style = (flag(args, "--style") ?? "rds") as SnapshotIdStyle;
        if (style !== "rds" && style !== "postgres") throw new PgstackError("E_USAGE", "--style is rds or postgres.");
        const lastMigration = await lastAppliedMigration(url);
        const at = new Date();
        process.stdout.write(
          JSON.stringify({ snapshotId: snapshotId({ stack, lastMigration: lastMigration ?? undefined, at }, style), lastMigration, createdAt: at.toISOString() }) + "\n",
        );
        return 0;
      }
      default:
        throw new PgstackError("E_USAGE", `snapshot.ts: unknown command '${command ?? ""}' (expected create or name).`);
    }
  } catch (err) {
    process.stderr.write(`pgstack: ${isPgstackError(err) ? err.message : `unexpected error: ${messageOf(err).split("\n")[0]}`}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
