/**
 * `npm run rollback -- --stack <s> [--snapshot <id>] [--yes] [--keep-old]`
 * `npm run rollback -- --stack <s> --revert [--to <migration>] [--accept-loss] [--yes]`
 * `npm run rollback -- --stack <s> --unpin`
 *
 * `--revert` keeps the data: it runs the reverse of the migrations applied
 * since the target (core/revert/revert.ts) instead of restoring a snapshot,
 * then pins the chain and runs `pulumi up` the same way.
 *
 * Restores a stack's database in place from a snapshot (default: the one
 * taken before the last update that applied anything, successful or not,
 * found from the snapshots and the ledger: core/snapshot/target.ts), after
 * showing what it discards (rows per table now vs at the snapshot, and the
 * migrations rolled back) and asking (unless --yes; prod always needs --yes).
 * Then it pins the migration chain at the snapshot's last migration
 * (`pgstack:pinnedMigration`), so the next `up` does not re-apply what was
 * rolled back, and runs `pulumi up --yes` so the outputs show the restored
 * state. `--unpin` lifts the pin: the next `up` applies the later migrations.
 *
 * A rollback records its pin in the database at its point of no return (the
 * restore's swap, the revert's commit: core/snapshot/intent.ts) and clears it
 * once the stack is pinned. A rollback that finds one left (killed in between,
 * or a `pgstack revert` run by hand) finishes it: it pins the chain there and
 * undoes nothing more. `--unpin` refuses while one is unfinished. A record
 * its ledger contradicts (a migration after the pin applied since, or the pin
 * not applied) is stale: cleared with a sentence, never pinned from.
 *
 * The database URL comes from the stack's secret `databaseUrl` output and is
 * never printed or put on a command line.
 *
 * rds stacks are restored as a new instance instead (see rollbackRds): the
 * rollback sets pgstack:rds.restoreFromSnapshot and the pin, then runs `pulumi up`.
 */
import * as path from "node:path";
import * as readline from "node:readline/promises";
import type { StackConfig } from "../config/schema";
import { readStackConfig, readStackOutputs, removeStackConfig, setStackConfig } from "../config/stack";
import { discoverMigrations } from "../core/migrations/discover";
import { withClient } from "../core/db/client";
import { deployerBusy, migrationLockHolder } from "../core/db/deployers";
import { parseDatabaseUrl } from "../core/db/url";
import { checkedRollbackIntentOn, clearRollbackIntent, describeIntent, staleIntentMessage, type CheckedIntent, type RollbackIntent } from "../core/snapshot/intent";
import { migrationOfRdsSnapshotId } from "../core/snapshot/naming";
import { PgstackError } from "../core/errors";
import { failpoint } from "../core/failpoint";
import { stderrLogger } from "../core/logger";
import { planRestore, restoreSnapshot } from "../core/snapshot/restore";
import { DEFAULT_SNAPSHOTS_DIR } from "../core/snapshot/store";
import { renderDiscarded, renderRestorePlan } from "../cli/commands/snapshot";
import { recoverBeforeCommand } from "../cli/main";
import { describeTarget, rollbackTarget } from "../core/snapshot/target";
import { executeRevert, planRevert, type RevertPlan } from "../core/revert/revert";
import { resolveSettings, type Settings } from "../core/settings";
import { renderRevertPlan } from "../cli/commands/revert";
import { sideBySide } from "../cli/output";
import { PROJECT_ROOT, pulumiForScript, runMain, say, type Pulumi } from "./run-pulumi";

/** The pin, without and with its namespace. */
const PIN = "pinnedMigration";
const PIN_KEY = `pgstack:${PIN}`;

export interface RollbackArgs {
  stack?: string;
  snapshot?: string;
  yes: boolean;
  unpin: boolean;
  keepOld: boolean;
  /** Undo by running the reverse of the migrations (keeps the data) instead of restoring a snapshot. */
  revert: boolean;
  acceptLoss: boolean;
  /** --revert: the last migration to keep (default: the one before the last update that applied anything). */
  to?: string;
}

export function parseArgs(argv: string[]): RollbackArgs {
  const args: RollbackArgs = { yes: false, unpin: false, keepOld: false, revert: false, acceptLoss: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new PgstackError("E_USAGE", `${a} needs a value.`);
      return v;
    };
    if (a === "--stack" || a === "-s") args.stack = value();
    else if (a.startsWith("--stack=")) args.stack = a.slice(8);
    else if (a === "--snapshot") args.snapshot = value();
    else if (a.startsWith("--snapshot=")) args.snapshot = a.slice(11);
    else if (a === "--yes" || a === "-y") args.yes = true;
    else if (a === "--unpin") args.unpin = true;
    else if (a === "--keep-old") args.keepOld = true;
    else if (a === "--revert") args.revert = true;
    else if (a === "--accept-loss") args.acceptLoss = true;
    else if (a === "--to") args.to = value();
    else if (a.startsWith("--to=")) args.to = a.slice(5);
    else throw new PgstackError("E_USAGE", `Unknown argument '${a}': usage is npm run rollback -- --stack <name> [--snapshot <id>] [--yes] [--keep-old] | --revert [--to <migration>] [--accept-loss] [--yes] | --unpin.`);
  }
  if (!args.stack) throw new PgstackError("E_USAGE", "Name the stack to roll back: npm run rollback -- --stack <name>.");
  if (args.revert && (args.snapshot || args.keepOld)) throw new PgstackError("E_USAGE", "--revert runs the reverse of the migrations and restores no snapshot: drop --snapshot and --keep-old.");
  if (!args.revert && (args.to || args.acceptLoss)) throw new PgstackError("E_USAGE", "--to and --accept-loss go with --revert.");
  return args;
}

/** A prod rollback is never answered at a prompt: it needs --yes on the command line. Pure. */
export function requireYesOnProd(stack: string, environment: string, yes: boolean): void {
  if (environment === "prod" && !yes) {
    throw new PgstackError("E_USAGE", `Stack '${stack}' is prod: a rollback there always needs --yes (nothing was changed).`);
  }
}

async function ask(question: string): Promise<string> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

async function confirm(question: string): Promise<boolean> {
  return /^y(es)?$/i.test((await ask(question)).trim());
}

function migrationsDirOf(projectDir: string, config: StackConfig): string {
  return path.join(projectDir, config.migrationsDir);
}

/** The revert that would undo the same migrations as the restore, when one can be planned. */
async function revertAlternative(url: string, projectDir: string, config: StackConfig, pin: string): Promise<RevertPlan | undefined> {
  try {
    return await planRevert(resolveSettings({ url, dir: migrationsDirOf(projectDir, config) }), { to: pin, log: stderrLogger() });
  } catch {
    return undefined;
  }
}

export async function rollback(argv: string[], deps: { pulumi?: Pulumi; projectDir?: string } = {}): Promise<number> {
  const args = parseArgs(argv);
  const stack = args.stack!;
  const pulumi = deps.pulumi ?? (await pulumiForScript(stack));
  const projectDir = deps.projectDir ?? PROJECT_ROOT;

  if (args.unpin) {
    // A stale record (the ledger contradicts it) blocks nothing: lifting the pin then is what it would be without it.
    const unfinished = await unfinishedRollbackOfStack(pulumi, stack);
    if (unfinished) {
      throw new PgstackError(
        "E_USAGE",
        `The database of stack '${stack}' was rolled back to ${unfinished.pin} (${describeIntent(unfinished)}) and the chain was never pinned there: finish that rollback first with \`npm run rollback -- --stack ${stack} --yes\`, then lift the pin (nothing was changed).`,
      );
    }
    await removeStackConfig(pulumi, stack, PIN);
    say(`pin lifted on stack '${stack}': the next \`pulumi up\` (npm run dev on dev) applies every migration in the folder.`);
    return 0;
  }

  const config = await readStackConfig(stack, pulumi, projectDir);
  requireYesOnProd(stack, config.environment, args.yes);
  if (config.engine === "rds" && !args.revert) return rollbackRds(pulumi, args, config, projectDir);

  const url = (await readStackOutputs(stack, pulumi, { showSecrets: true })).databaseUrl;
  if (!url) throw new PgstackError("E_USAGE", `Stack '${stack}' has no databaseUrl output: run \`pulumi up\` on it first.`);
  const store = { snapshotsDir: path.join(projectDir, DEFAULT_SNAPSHOTS_DIR) };
  await recoverBeforeCommand(url, stderrLogger());
  // Before choosing a target: with a rollback already past its point of no return, the last update is undone already.
  const checked = await checkedRollback(url);
  if (checked?.stale) {
    // Never pinned from: the ledger says the database is not where it claims. Cleared, then the rollback runs as without it.
    await withClient(url, (c, target) => clearRollbackIntent(c, target.database), { applicationName: "pgstack rollback" });
    say(staleIntentMessage(stack, checked, "was cleared; this rollback goes on as if it had never been recorded"));
  } else if (checked) return finishRollback(pulumi, stack, url, checked.intent);
  if (args.revert) return rollbackByRevert(pulumi, args, resolveSettings({ url, dir: migrationsDirOf(projectDir, config) }), store);
  // Not the latestSnapshot output: Pulumi writes outputs only when an update succeeds.
  const target = args.snapshot ? undefined : await rollbackTarget(url, stack, store);
  const id = args.snapshot ?? target?.snapshot.snapshotId ?? "";
  if (!id) throw new PgstackError("E_USAGE", `Stack '${stack}' has no pre-update snapshot yet: pass --snapshot <id> (see \`pgstack snapshot list\`).`);
  // A restore refuses while a deployer holds the lock: say so before a plan it would not carry out.
  const deployer = await withClient(url, (c) => migrationLockHolder(c), { applicationName: "pgstack rollback" });
  if (deployer) throw deployerBusy("restore", parseDatabaseUrl(url).database, deployer);
  if (target) process.stderr.write(`This rollback undoes ${describeTarget(target)}.\n`);

  const plan = await planRestore(url, id, store);
  const pin = plan.snapshot.lastMigration;
  if (!pin) {
    throw new PgstackError("E_USAGE", `Snapshot '${id}' holds no applied migration, so the chain cannot be pinned before all of them: restore it with \`pgstack snapshot restore\` instead (nothing was changed).`);
  }
  // Asked at a terminal with both kinds possible: the two reports side by side, and which one.
  const revertPlan = !args.yes && !args.snapshot && process.stdin.isTTY ? await revertAlternative(url, projectDir, config, pin) : undefined;
  if (revertPlan) {
    process.stderr.write(sideBySide(["RESTORE (discards every write since the snapshot)", "", ...renderRestorePlan(plan).split("\n")], ["REVERT (keeps the data)", "", ...renderRevertPlan(revertPlan).split("\n")]) + "\n");
    process.stderr.write(`Either way the migration chain is then pinned at ${pin} (${PIN_KEY}) and \`pulumi up\` runs on stack '${stack}'.\n`);
    const answer = (await ask(`Undo by [r]estore or re[v]ert${revertPlan.losses.length > 0 ? " (needs --accept-loss)" : ""}? [r/v/N] `)).trim().toLowerCase();
    if (answer === "v" || answer === "revert") {
      return rollbackByRevert(pulumi, { ...args, revert: true, to: pin, yes: true }, resolveSettings({ url, dir: migrationsDirOf(projectDir, config) }), store);
    }
    if (answer !== "r" && answer !== "restore") {
      say("nothing changed.");
      return 1;
    }
  } else {
    process.stderr.write(renderRestorePlan(plan) + "\n");
    process.stderr.write(`Then the migration chain is pinned at ${pin} (${PIN_KEY}) and \`pulumi up\` runs on stack '${stack}'.\n`);
    if (!args.yes) {
      if (!process.stdin.isTTY) throw new PgstackError("E_USAGE", "Not asking without a terminal: run again with --yes to restore (nothing was changed).");
      if (!(await confirm(`Restore '${plan.database}' on stack '${stack}' from ${id}? [y/N] `))) {
        say("nothing changed.");
        return 1;
      }
    }
  }

  const result = await restoreSnapshot(url, plan, { log: stderrLogger(), keepOld: args.keepOld, intent: { pin } });
  process.stderr.write(renderDiscarded(result) + "\n");
  if (result.keptAs) say(`the database as it was before the rollback is kept as ${result.keptAs}; remove it with: DROP DATABASE "${result.keptAs}";`);
  await pinStack(pulumi, stack, url, pin, "restored");
  say(`restored from ${id}; migration chain pinned at ${pin}. Running pulumi up on '${stack}'...`);
  const code = await pulumi.run(["up", "--yes", "--stack", stack]);
  if (code !== 0) {
    say(`pulumi up failed (see above); the database is restored and pinned. Fix and run \`pulumi up\` on '${stack}' again.`);
    return code;
  }
  say(`rolled back to ${id}. Lift the pin once the migration is fixed: npm run rollback -- --stack ${stack} --unpin`);
  return 0;
}


/**
 * `--revert`: the reverse of the migrations applied since the target (see
 * core/revert/revert.ts), keeping every write; then the chain is pinned at the
 * target and `pulumi up` runs, as after a restore.
 */
async function rollbackByRevert(pulumi: Pulumi, args: RollbackArgs, settings: Settings, store: { snapshotsDir: string }): Promise<number> {
  const stack = args.stack!;
  const log = stderrLogger();
  let to = args.to;
  if (to === undefined) {
    const target = await rollbackTarget(settings.databaseUrl, stack, store);
    if (!target || target.undoes.length === 0) {
      throw new PgstackError("E_USAGE", `No update of stack '${stack}' applied a migration since its last snapshot: name the last migration to keep with --to <migration> (nothing was changed).`);
    }
    process.stderr.write(`This revert undoes ${describeTarget(target)}.\n`);
    to = target.snapshot.lastMigration ?? undefined;
    if (!to) throw new PgstackError("E_USAGE", "That update applied the first migrations of the history: there is no migration to pin the chain at, so restore its snapshot instead (nothing was changed).");
  }
  const plan = await planRevert(settings, { to, log });
  process.stderr.write(renderRevertPlan(plan) + "\n");
  process.stderr.write(`Then the migration chain is pinned at ${to} (${PIN_KEY}) and \`pulumi up\` runs on stack '${stack}'.\n`);
  if (!args.yes) {
    if (!process.stdin.isTTY) throw new PgstackError("E_USAGE", "Not asking without a terminal: run again with --yes to revert (nothing was changed).");
    if (!(await confirm(`Revert ${plan.reverted.join(", ")} on stack '${stack}'? [y/N] `))) {
      say("nothing changed.");
      return 1;
    }
  }
  await executeRevert(settings, plan, { acceptLoss: args.acceptLoss, log });
  await pinStack(pulumi, stack, settings.databaseUrl, to, "reverted");
  say(`reverted ${plan.reverted.join(", ")}; migration chain pinned at ${to}. Running pulumi up on '${stack}'...`);
  const code = await pulumi.run(["up", "--yes", "--stack", stack]);
  if (code !== 0) {
    say(`pulumi up failed (see above); the database is reverted and the chain pinned. Fix and run \`pulumi up\` on '${stack}' again.`);
    return code;
  }
  say(`reverted to ${to}, keeping the data. Lift the pin once the migrations are fixed: npm run rollback -- --stack ${stack} --unpin`);
  return 0;
}

/** The rollback recorded in the database of `url` (intent.ts), checked against its ledger, if any. */
async function checkedRollback(url: string, connectTimeoutMs?: number): Promise<CheckedIntent | undefined> {
  return withClient(url, (c, target) => checkedRollbackIntentOn(c, target.database), { applicationName: "pgstack rollback", connectTimeoutMs });
}

/** The unfinished rollback of a stack (the ledger agreeing), from its outputs; undefined when it has no database URL or the database does not answer. */
async function unfinishedRollbackOfStack(pulumi: Pulumi, stack: string): Promise<RollbackIntent | undefined> {
  const url = (await readStackOutputs(stack, pulumi, { showSecrets: true }).catch(() => undefined))?.databaseUrl;
  const checked = url ? await checkedRollback(url, 5000).catch(() => undefined) : undefined;
  return checked && !checked.stale ? checked.intent : undefined;
}

/** Pins the chain at `pin`, then clears the database's record of the rollback: a kill in between is finished by a retry. */
async function pinStack(pulumi: Pulumi, stack: string, url: string, pin: string, done: "restored" | "reverted"): Promise<void> {
  try {
    await setStackConfig(pulumi, stack, PIN, pin);
  } catch {
    throw new PgstackError(
      "E_STACK",
      `The database is ${done} but pinning failed: run \`npm run rollback -- --stack ${stack} --yes\` again before the next up (it pins the chain at ${pin} and undoes nothing more).`,
    );
  }
  failpoint("rollback:pinned");
  await withClient(url, (c, target) => clearRollbackIntent(c, target.database), { applicationName: "pgstack rollback" });
}

/**
 * A rollback (or a `pgstack revert` by hand) passed its point of no return
 * and the stack was never pinned: pin it where that rollback left the
 * database and run `pulumi up`, undoing nothing more.
 */
async function finishRollback(pulumi: Pulumi, stack: string, url: string, intent: RollbackIntent): Promise<number> {
  say(`the database was already rolled back to ${intent.pin} (${describeIntent(intent)}, at ${intent.at}) and the stack never pinned there: finishing that rollback, which undoes nothing more.`);
  await pinStack(pulumi, stack, url, intent.pin, intent.op === "restore" ? "restored" : "reverted");
  say(`migration chain pinned at ${intent.pin}. Running pulumi up on '${stack}'...`);
  const code = await pulumi.run(["up", "--yes", "--stack", stack]);
  if (code !== 0) {
    say(`pulumi up failed (see above); the database is rolled back and the chain pinned. Fix and run \`pulumi up\` on '${stack}' again.`);
    return code;
  }
  say(`rolled back to ${intent.pin}. Lift the pin once the migrations are fixed: npm run rollback -- --stack ${stack} --unpin`);
  return 0;
}

/**
 * rds: a DB snapshot is restored as a new instance, never in place. The
 * rollback sets pgstack:rds.restoreFromSnapshot (and instance: restored) and
 * pins the chain; `pulumi up` then creates `db-restored` from the snapshot with
 * the original's security settings and moves the stack onto it, keeping the
 * original instance until pgstack:rds.original says otherwise.
 */
async function rollbackRds(pulumi: Pulumi, args: RollbackArgs, config: StackConfig, projectDir: string): Promise<number> {
  const stack = args.stack!;
  const rds = config.rds!;
  if (rds.restoreFromSnapshot || rds.instance === "restored") {
    throw new PgstackError(
      "E_USAGE",
      `Stack '${stack}' already runs on an instance restored from ${rds.restoreFromSnapshot ?? "a snapshot"}: a second restore would replace it, so restore that snapshot into a new stack instead (nothing was changed).`,
    );
  }
  // No --show-secrets: a new instance is made from the snapshot, the URL is not needed.
  const outputs = await readStackOutputs(stack, pulumi, { showSecrets: false });
  const id = args.snapshot ?? outputs.latestSnapshot ?? "";
  if (!id) throw new PgstackError("E_USAGE", `Stack '${stack}' has no pre-update snapshot yet: pass --snapshot <DB snapshot identifier> (nothing was changed).`);
  if (!/^[A-Za-z][A-Za-z0-9-]{0,254}$/.test(id)) {
    throw new PgstackError("E_USAGE", `'${id}' is not a DB snapshot identifier (letters, digits, hyphens): pass the id from the stack's latestSnapshot output or the RDS console (nothing was changed).`);
  }
  const dir = path.join(projectDir, config.migrationsDir);
  const names = (await discoverMigrations(dir)).map((m) => m.name);
  const pin = migrationOfRdsSnapshotId(id, names);
  if (!pin) {
    throw new PgstackError("E_USAGE", `Snapshot '${id}' names no migration of ${path.relative(projectDir, dir) || "."} (or none was applied when it was taken), so the chain cannot be pinned at it (nothing was changed).`);
  }
  const applied = outputs.appliedMigrations ?? [];
  const discarded = applied.filter((m) => m > pin);
  process.stderr.write(
    [
      `Restore stack '${stack}' (rds) from DB snapshot ${id}, last migration in it: ${pin}`,
      ...(discarded.length > 0 ? [`  migrations rolled back: ${discarded.join(", ")}`] : []),
      "  A new instance (db-restored) is created from the snapshot with the current instance's encryption, deletion protection,",
      "  network and backups, and the stack's databaseUrl moves to it: every write made since the snapshot was taken stays",
      "  only on the current instance, which is kept unchanged (set pgstack:rds.original to unprotect, then delete, to remove it;",
      "  RDS then takes its final snapshot).",
      `Then the migration chain is pinned at ${pin} (${PIN_KEY}) and \`pulumi up\` runs on stack '${stack}'.`,
      "",
    ].join("\n"),
  );
  if (!args.yes) {
    if (!process.stdin.isTTY) throw new PgstackError("E_USAGE", "Not asking without a terminal: run again with --yes to restore (nothing was changed).");
    if (!(await confirm(`Create an instance from ${id} and move stack '${stack}' onto it? [y/N] `))) {
      say("nothing changed.");
      return 1;
    }
  }
  await setStackConfig(pulumi, stack, "rds.restoreFromSnapshot", id, { path: true });
  await setStackConfig(pulumi, stack, "rds.instance", "restored", { path: true });
  await setStackConfig(pulumi, stack, PIN, pin);
  say(`stack '${stack}' set to restore ${id}; migration chain pinned at ${pin}. Running pulumi up on '${stack}'...`);
  const code = await pulumi.run(["up", "--yes", "--stack", stack]);
  if (code !== 0) {
    say(`pulumi up failed (see above); the restore settings and the pin are in the stack config. Fix and run \`pulumi up\` on '${stack}' again.`);
    return code;
  }
  say(`stack '${stack}' runs on the instance restored from ${id}. Lift the pin once the migration is fixed: npm run rollback -- --stack ${stack} --unpin`);
  return 0;
}

if (require.main === module) runMain(() => rollback(process.argv.slice(2)));
