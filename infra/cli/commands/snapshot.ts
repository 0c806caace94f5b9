import { Command, Option } from "commander";
import { whenNoDeployer } from "../../core/db/deployers";
import { PgstackError } from "../../core/errors";
import { willApply } from "../../core/migrations/plan";
import { DEFAULTS, resolveSettings } from "../../core/settings";
import { snapshotId, type SnapshotIdStyle } from "../../core/snapshot/naming";
import { verifySnapshot } from "../../core/verify/snapshot";
import { DEFAULT_SNAPSHOTS_DIR, createSnapshot, deleteSnapshot, listAllSnapshots, type EngineChoice, type StoreOptions } from "../../core/snapshot/store";
import type { SnapshotInfo } from "../../core/snapshot/engine";
import { planRestore, restoreSnapshot, type RestorePlan, type RestoreResult } from "../../core/snapshot/restore";
import { pruneSnapshots } from "../../core/snapshot/retention";
import { lastAppliedMigration } from "../../core/snapshot/template";
import type { Context } from "../context";
import { databaseUrlFrom } from "../options";
import { table } from "../output";

/**
 * `pgstack snapshot list|create|restore|delete|prune` for the embedded,
 * docker and external engines (rds snapshots are aws.rds.Snapshot resources).
 */
interface SnapshotFlags {
  url?: string;
  json?: boolean;
  verbose?: boolean;
  snapshotsDir?: string;
  stack?: string;
}

function withSnapshotOptions(command: Command): Command {
  return command
    .addOption(new Option("--url <url>", "database URL (default: $DATABASE_URL)"))
    .addOption(new Option("--snapshots-dir <path>", "folder of pg_dump snapshots").default(DEFAULT_SNAPSHOTS_DIR))
    .addOption(new Option("--json", "machine-readable output on stdout"))
    .addOption(new Option("-v, --verbose", "more progress on stderr"));
}

function urlOf(flags: SnapshotFlags, ctx: Context): string {
  return databaseUrlFrom(flags, ctx.env);
}

function store(flags: SnapshotFlags, ctx: Context): StoreOptions {
  return { snapshotsDir: flags.snapshotsDir, env: ctx.env };
}

/** What a restore will do, for people: the snapshot, then every table that differs from it. */

/**
 * A snapshot as --json prints it: without the digests, the seal and the table
 * list a restore checks against; how it was made as `method`, `reason`, `pauseMs`.
 */
function publicRecord(info: SnapshotInfo): Omit<SnapshotInfo, "tables" | "states" | "files" | "fileDigest" | "schema" | "seal" | "sealKeyId" | "methodReason"> & { reason?: string } {
  const { tables: _t, states: _s, files: _fp, fileDigest: _f, schema: _c, seal: _l, sealKeyId: _k, methodReason, ...plain } = info;
  return methodReason === undefined ? plain : { ...plain, reason: methodReason };
}

/** How a snapshot was made, for people: "clone, paused 95 ms" (nothing for one taken by an older pgstack). */
function howMade(info: SnapshotInfo): string {
  if (!info.method) return "";
  if (info.method === "dump") return info.pauseMs ? `, pg_dump after a pause of ${info.pauseMs} ms` : ", pg_dump, no pause";
  return `, ${info.method === "clone" ? "clone" : "template copy"}, paused ${info.pauseMs ?? 0} ms`;
}

/** `--max-pause-ms`: a whole number of ms. */
export function parseMaxPause(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new PgstackError("E_USAGE", `--max-pause-ms must be a whole number of milliseconds (got '${text}').`);
  return Number(text);
}

export function renderRestorePlan(plan: RestorePlan): string {
  const s = plan.snapshot;
  const lines = [
    `Restore database '${plan.database}' from snapshot ${s.snapshotId}`,
    `  taken ${s.createdAt} (${s.engine ?? "template"}), last migration in it: ${s.lastMigration ?? "none"}`,
  ];
  if (plan.discardedMigrations.length > 0) lines.push(`  migrations rolled back: ${plan.discardedMigrations.join(", ")}`);
  const changed = plan.tables.filter((t) => t.changed);
  if (plan.byFiles) {
    // A clone snapshot's rows are not read: the changes only, counted against a throwaway clone of it.
    lines.push(
      changed.length > 0
        ? "Discarded by the restore (writes since the snapshot, counted now by changed blocks while the application can still write):"
        : "No table differs from the snapshot (compared now by changed blocks, while the application can still write).",
    );
    if (changed.length > 0) {
      lines.push(
        table(["TABLE", "INSERTED", "UPDATED", "DELETED"], changed.map((t) => [t.table, String(t.inserted ?? 0), String(t.updated ?? 0), String(t.deleted ?? 0)]))
          .split("\n")
          .map((l) => `  ${l}`)
          .join("\n"),
      );
    }
  } else {
    lines.push(changed.length > 0 ? "Discarded by the restore (rows now -> at the snapshot; writes since the snapshot):" : "No table differs from the snapshot (content digests).");
    if (changed.length > 0) {
      const cell = (n: number | null | undefined) => (n === null ? "(no table)" : n === undefined ? "?" : String(n));
      lines.push(
        table(
          ["TABLE", "NOW", "AT SNAPSHOT", "CHANGE", "INSERTED", "UPDATED", "DELETED"],
          changed.map((t) => [
            t.table,
            cell(t.now),
            cell(t.atSnapshot),
            typeof t.now === "number" && typeof t.atSnapshot === "number" ? String(t.now - t.atSnapshot).replace(/^(\d)/, "+$1") : "-",
            cell(t.inserted),
            cell(t.updated),
            cell(t.deleted),
          ]),
        )
          .split("\n")
          .map((l) => `  ${l}`)
          .join("\n"),
      );
      if (changed.some((t) => t.inserted === undefined)) lines.push("  (? = counted exactly during the restore, once the dump is copied back)");
    }
  }
  lines.push("The final count is taken with the database closed to writes, right before the swap, and printed with the result.");
  return lines.join("\n");
}

/** What a finished restore discarded, exactly. */
export function renderDiscarded(result: RestoreResult): string {
  if (result.discarded.length === 0) return "Discarded: nothing (every table equalled the snapshot when the database was closed).";
  return [
    "Discarded (counted with the database closed to writes, right before the swap):",
    table(["TABLE", "INSERTED", "UPDATED", "DELETED"], result.discarded.map((d) => [d.table, String(d.inserted), String(d.updated), String(d.deleted)]))
      .split("\n")
      .map((l) => `  ${l}`)
      .join("\n"),
  ].join("\n");
}

export function planJson(plan: RestorePlan) {
  return { database: plan.database, snapshot: plan.snapshot, tables: plan.tables, discardedMigrations: plan.discardedMigrations };
}

export function snapshotCommand(ctx: Context): Command {
  const snapshot = new Command("snapshot").description("snapshots of the database: list, create, restore, verify, delete, prune");

  snapshot.addCommand(
    withSnapshotOptions(new Command("list"))
      .description("every snapshot of the database, oldest first")
      .option("--stack <name>", "only this stack's snapshots")
      .action(async (flags: SnapshotFlags) => {
        const list = await listAllSnapshots(urlOf(flags, ctx), { stack: flags.stack }, store(flags, ctx));
        if (flags.json) return ctx.output.out(JSON.stringify({ snapshots: list.map(publicRecord) }));
        if (list.length === 0) return ctx.output.out("No snapshots.");
        ctx.output.out(
          table(
            ["SNAPSHOT", "ENGINE", "METHOD", "PAUSE", "STACK", "LAST MIGRATION", "TAKEN AT"],
            list.map((s) => [s.snapshotId, s.engine ?? "template", s.method ?? "-", s.pauseMs === undefined ? "-" : `${s.pauseMs} ms`, s.stack, s.lastMigration ?? "-", s.createdAt]),
          ),
        );
      })
      .exitOverride(),
  );

  snapshot.addCommand(
    withSnapshotOptions(new Command("create"))
      .description("take a snapshot now: a server-side copy when the role may create databases, else pg_dump")
      .requiredOption("--stack <name>", "the stack the snapshot belongs to (its id carries it)")
      .addOption(new Option("--engine <engine>", "template (server-side copy), dump (pg_dump) or auto").choices(["auto", "template", "dump"]).default("auto"))
      .option("--name <id>", "an exact snapshot id (refused if taken)")
      .option("--key <key>", "the migration set the snapshot is taken for (the PreUpdateSnapshot's key)")
      .option("--keep <n>", "then keep only the newest n snapshots of this stack (retention; leave out to keep all)")
      .option("--lock-wait <seconds>", `wait for another deployer of the database to finish (default ${DEFAULTS.lockWaitSeconds})`)
      .option("--migrations-dir <path>", "take no snapshot when the migrations in this folder (up to --to) would apply nothing")
      .option("--to <migration>", "with --migrations-dir: the migration the chain is pinned at")
      .option("--max-pause-ms <ms>", "how long the database may stay closed while the application's transactions finish (default 1000)")
      .action(async (flags: SnapshotFlags & { engine: EngineChoice; name?: string; key?: string; keep?: string; lockWait?: string; migrationsDir?: string; to?: string; maxPauseMs?: string }) => {
        const url = urlOf(flags, ctx);
        const log = ctx.logger(flags);
        const keep = flags.keep === undefined ? undefined : parseKeep(flags.keep);
        const maxPauseMs = parseMaxPause(flags.maxPauseMs);
        const settings = resolveSettings({ url, dir: flags.migrationsDir, lockWait: flags.lockWait });
        if (flags.migrationsDir && !(await willApply(settings, flags.to))) {
          // Nothing to protect (e.g. the update right after a rollback shrinks the chain): the stack's newest snapshot stands.
          const newest = (await listAllSnapshots(url, { stack: flags.stack }, store(flags, ctx))).at(-1);
          log.info("every migration of the chain is applied already: no snapshot needed");
          const skipped = { snapshotId: newest?.snapshotId ?? "", lastMigration: newest?.lastMigration ?? null, taken: false };
          return ctx.output.out(flags.json ? JSON.stringify(skipped) : "No snapshot taken: every migration of the chain is applied already.");
        }
        const info = await whenNoDeployer(url, { waitSeconds: settings.lockWaitSeconds, log }, () =>
          createSnapshot({ url, stack: flags.stack!, name: flags.name, key: flags.key, engine: flags.engine, maxPauseMs, log, ...store(flags, ctx) }),
        );
        // Retention only once the new snapshot exists, and never the new one.
        if (keep !== undefined) await pruneSnapshots(url, { keep, stack: flags.stack, log, protect: [info.snapshotId], ...store(flags, ctx) });
        ctx.output.out(flags.json ? JSON.stringify(publicRecord(info)) : `Snapshot ${info.snapshotId} taken (${info.engine}${howMade(info)}, last migration: ${info.lastMigration ?? "none"}).`);
      })
      .exitOverride(),
  );

  snapshot.addCommand(
    new Command("name")
      .description("the id a snapshot taken now would get (rds: the aws.rds.Snapshot's identifier), from the stack and the last migration applied")
      .addOption(new Option("--url <url>", "database URL (default: $DATABASE_URL)"))
      .requiredOption("--stack <name>", "the stack the snapshot belongs to")
      .addOption(new Option("--style <style>", "rds or postgres naming rules").choices(["rds", "postgres"]).default("rds"))
      .addOption(new Option("--json", "machine-readable output on stdout"))
      .action(async (flags: { url?: string; stack: string; style: SnapshotIdStyle; json?: boolean }) => {
        const lastMigration = await lastAppliedMigration(urlOf(flags, ctx));
        const at = new Date();
        const id = snapshotId({ stack: flags.stack, lastMigration: lastMigration ?? undefined, at }, flags.style);
        ctx.output.out(flags.json ? JSON.stringify({ snapshotId: id, lastMigration, createdAt: at.toISOString() }) : id);
      })
      .exitOverride(),
  );

  snapshot.addCommand(
    withSnapshotOptions(new Command("restore"))
      .description("restore the database in place from a snapshot (shows what it discards; --yes to do it)")
      .argument("<id>", "the snapshot id")
      .option("--yes", "restore (without it: only show what would be discarded)")
      .option("--keep-old", "keep the replaced database as <db>_before_restore_<time>")
      .option("--max-pause-ms <ms>", "how long the swap waits, with the database closed, for the application's transactions before ending its sessions (default 1000)")
      .action(async (id: string, flags: SnapshotFlags & { yes?: boolean; keepOld?: boolean; maxPauseMs?: string }) => {
        const url = urlOf(flags, ctx);
        const maxPauseMs = parseMaxPause(flags.maxPauseMs);
        const plan = await planRestore(url, id, store(flags, ctx));
        if (!flags.json) ctx.output.err(renderRestorePlan(plan));
        if (!flags.yes) {
          if (flags.json) ctx.output.out(JSON.stringify({ restored: false, plan: planJson(plan) }));
          else ctx.output.out("Nothing changed: run again with --yes to restore.");
          return;
        }
        const result = await restoreSnapshot(url, plan, { log: ctx.logger(flags), keepOld: flags.keepOld, maxPauseMs });
        if (!flags.json) ctx.output.err(renderDiscarded(result));
        ctx.output.out(
          flags.json
            ? JSON.stringify({ restored: true, plan: planJson(plan), discarded: result.discarded, keptAs: result.keptAs ?? null, method: result.method, pauseMs: result.pauseMs, countMs: result.countMs, ...(result.countedByBlocks ? { countedByBlocks: result.countedByBlocks } : {}) })
            : `Restored '${result.database}' from ${result.snapshotId} (${result.method}, paused ${result.pauseMs} ms)${result.keptAs ? `; the previous database is kept as ${result.keptAs} (remove it with: DROP DATABASE "${result.keptAs}";)` : ""}.`,
        );
      })
      .exitOverride(),
  );

  snapshot.addCommand(
    withSnapshotOptions(new Command("verify"))
      .description("check that a snapshot still holds what it held when taken: a template copy's content digests, or a dump restored into a throwaway database")
      .argument("<id>", "the snapshot id")
      .action(async (id: string, flags: SnapshotFlags) => {
        const check = await verifySnapshot(urlOf(flags, ctx), id, { ...store(flags, ctx), log: ctx.logger(flags) });
        ctx.output.out(flags.json ? JSON.stringify({ name: check.name, status: check.status, details: { sentence: check.sentence, ...check.details } }) : `${check.status.toUpperCase().padEnd(4)}  ${check.sentence}`);
        if (check.status === "fail") throw new PgstackError("E_SNAPSHOT", check.sentence, { snapshotId: id });
      })
      .exitOverride(),
  );

  snapshot.addCommand(
    withSnapshotOptions(new Command("delete"))
      .description("delete one snapshot (never a database restored from it)")
      .argument("<id>", "the snapshot id")
      .action(async (id: string, flags: SnapshotFlags) => {
        const deleted = await deleteSnapshot(urlOf(flags, ctx), id, ctx.logger(flags), store(flags, ctx));
        ctx.output.out(flags.json ? JSON.stringify({ deleted: deleted.snapshotId }) : `Snapshot ${deleted.snapshotId} deleted.`);
      })
      .exitOverride(),
  );

  snapshot.addCommand(
    withSnapshotOptions(new Command("prune"))
      .description("keep the newest n snapshots, delete the rest (never the one the database was restored from, nor the newest pre-update one)")
      .requiredOption("--keep <n>", "how many of the newest snapshots to keep")
      .option("--stack <name>", "only this stack's snapshots")
      .option("--protect <id...>", "snapshot ids never to delete")
      .option("--dry-run", "show what would be deleted")
      .action(async (flags: SnapshotFlags & { keep: string; protect?: string[]; dryRun?: boolean }) => {
        const plan = await pruneSnapshots(urlOf(flags, ctx), {
          keep: parseKeep(flags.keep),
          stack: flags.stack,
          protect: flags.protect,
          dryRun: flags.dryRun,
          log: ctx.logger(flags),
          ...store(flags, ctx),
        });
        if (flags.json) {
          return ctx.output.out(JSON.stringify({ kept: plan.keep.map((k) => ({ snapshotId: k.snapshot.snapshotId, why: k.why })), deleted: plan.remove.map((s) => s.snapshotId), dryRun: Boolean(flags.dryRun) }));
        }
        for (const k of plan.keep) ctx.output.out(`keep    ${k.snapshot.snapshotId} (${k.why})`);
        for (const s of plan.remove) ctx.output.out(`${flags.dryRun ? "would delete" : "deleted"} ${s.snapshotId}`);
      })
      .exitOverride(),
  );
  return snapshot;
}

function parseKeep(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new PgstackError("E_USAGE", `--keep must be a whole number of at least 1 (got '${text}').`);
  return Number(text);
}
