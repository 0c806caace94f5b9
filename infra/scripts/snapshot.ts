/**
 * The PreUpdateSnapshot component's commands (DATABASE_URL in the environment,
 * never on the command line):
 *
 *   node -r tsx/cjs infra/scripts/snapshot.ts create --stack <stack> [--key <key>] [--keep <n>] [--lock-wait <s>]
 *                                                    [--migrations-dir <dir> [--to <migration>]]
 *       embedded, docker and external engines: a new template copy of the database
 *       (infra/core/snapshot); prints the SnapshotInfo as one JSON line. With
 *       --migrations-dir, only when the chain will apply something (a migration up to
 *       --to is pending or failed, or the folder does not match the ledger); otherwise
 *       no copy is taken and the stack's newest snapshot is printed (`"taken": false`),
 *       e.g. the update right after a rollback, which shrinks the chain. Waits at most
 *       --lock-wait seconds (default 60) while another deployer works on the database
 *       (infra/core/db/deployers), then fails with the lock-timeout sentence. --keep is
 *       the stack's retention (pgstack:snapshots.keep, 0 = all) for pruning after the copy.
 *   node -r tsx/cjs infra/scripts/snapshot.ts name --stack <stack> --style rds
 *       rds engine: prints {"snapshotId": ...} for aws.rds.Snapshot, made of the
 *       stack, the last migration applied and the current time.
 */
import * as path from "node:path";
import { PgstackError, errorSentence } from "../core/errors";
import { planError, planMigrations } from "../core/migrations/plan";
import { recoverBeforeCommand } from "../cli/main";
import { resolveSettings } from "../core/settings";
import { whenNoDeployer } from "../core/db/deployers";
import { stderrLogger } from "../core/logger";
import { snapshotId, type SnapshotIdStyle } from "../core/snapshot/naming";
import { pruneSnapshots } from "../core/snapshot/retention";
import { createSnapshot, listAllSnapshots, type EngineChoice } from "../core/snapshot/store";
import { lastAppliedMigration } from "../core/snapshot/template";

/**
 * Whether `apply --all --to <to>` would run anything, by the same plan
 * `pgstack plan` and the runner use. Drift, syntax and name errors throw
 * (one sentence): the update stops here, before a snapshot is taken (and the
 * application's sessions ended, and retention run) for migrations that would
 * never be applied.
 */
export async function willApply(url: string, migrationsDir: string, to?: string): Promise<boolean> {
  const plan = await planMigrations(resolveSettings({ url, dir: path.resolve(migrationsDir) }), to);
  const refused = planError(plan);
  if (refused) throw refused;
  return plan.pending.length > 0;
}

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
    await recoverBeforeCommand(url, stderrLogger());
    switch (command) {
      case "create": {
        const log = stderrLogger();
        const waitSeconds = Number(flag(args, "--lock-wait") ?? 60);
        if (!Number.isFinite(waitSeconds) || waitSeconds < 0) throw new PgstackError("E_USAGE", "--lock-wait is a number of seconds.");
        const engine = (flag(args, "--engine") ?? "auto") as EngineChoice;
        if (!["template", "dump", "auto"].includes(engine)) throw new PgstackError("E_USAGE", "--engine is template, dump or auto.");
        const keepText = flag(args, "--keep") ?? "0";
        if (!/^\d+$/.test(keepText)) throw new PgstackError("E_USAGE", "--keep is a whole number of snapshots (0 keeps all).");
        const store = { snapshotsDir: flag(args, "--snapshots-dir"), env };
        const migrationsDir = flag(args, "--migrations-dir");
        if (migrationsDir && !(await willApply(url, migrationsDir, flag(args, "--to")))) {
          const newest = (await listAllSnapshots(url, { stack }, store)).at(-1);
          log.info("every migration of the chain is applied already: no snapshot needed");
          process.stdout.write(JSON.stringify({ snapshotId: newest?.snapshotId ?? "", lastMigration: newest?.lastMigration ?? null, taken: false }) + "\n");
          return 0;
        }
        // auto: a server-side copy where the role may create databases, else pg_dump.
        const { tables: _tables, states: _states, ...info } = await whenNoDeployer(url, { waitSeconds, log }, () =>
          createSnapshot({ url, stack, key: flag(args, "--key"), engine, log, ...store }),
        );
        // Retention only once the new snapshot exists, and never the new one.
        if (Number(keepText) > 0) await pruneSnapshots(url, { keep: Number(keepText), stack, protect: [info.snapshotId], log, ...store });
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
    process.stderr.write(`pgstack: ${errorSentence(err)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
