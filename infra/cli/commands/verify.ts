import * as path from "node:path";
import { Command, Option } from "commander";
import { StackConfigError, parseDriftPolicy } from "../../config/schema";
import { readStack } from "../../config/stack";
import { PgstackError } from "../../core/errors";
import { findProjectDir } from "../../core/project";
import { DEFAULT_SNAPSHOTS_DIR } from "../../core/snapshot/store";
import { failureSentence, verifyDatabase, type ReplayOn } from "../../core/verify";
import type { Context } from "../context";
import { driftLines } from "../render/drift";
import { settingsFrom, withDatabaseOptions, type DatabaseFlags } from "../options";

type VerifyFlags = DatabaseFlags & {
  stack?: string;
  changed?: string;
  extra?: string;
  allow?: string[];
  replayOn?: ReplayOn;
  postgresVersion?: string;
  cache?: boolean;
  cacheDir?: string;
  snapshot?: boolean;
  snapshotsDir?: string;
};

/** Where expected schemas are cached: the project's .pgstack/cache/verify (the migrations folder's project). */
export function verifyCacheDir(migrationsDir: string): string {
  const project = findProjectDir(path.dirname(migrationsDir)) ?? process.cwd();
  return path.join(project, ".pgstack", "cache", "verify");
}

/**
 * `pgstack verify`: the database's health, its ledger's, and its schema
 * against what the applied migrations make. Exit 1 when a check fails.
 */
export function verifyCommand(ctx: Context): Command {
  return withDatabaseOptions(new Command("verify"))
    .description("check the database: it answers, its ledger agrees with the folder, its schema is what the applied migrations make (drift), its latest snapshot verifies")
    .option("--stack <name>", "the database of a Pulumi stack (its databaseUrl output) and its pgstack:drift and postgresVersion config")
    .addOption(new Option("--changed <status>", "status of an object the migrations made and someone changed (default: pgstack:drift.changed, else fail)").choices(["pass", "warn", "fail"]))
    .addOption(new Option("--extra <status>", "status of an object no migration made (default: pgstack:drift.extra, else warn)").choices(["pass", "warn", "fail"]))
    .option("--allow <object...>", "objects never counted as drift, e.g. 'table public.audit' or 'audit_*' (added to pgstack:drift.allow)")
    .addOption(new Option("--replay-on <where>", "replay the history on a throwaway local embedded PostgreSQL (default) or in a throwaway database on the database's own server").choices(["local", "server"]).default("local"))
    .option("--postgres-version <major>", "the major the server must run (default: the stack's pgstack:postgresVersion)")
    .option("--no-cache", "replay the history even when the expected schema of this applied set is cached")
    .option("--no-snapshot", "leave out the snapshot check (the latest snapshot exists and verifies)")
    .addOption(new Option("--snapshots-dir <path>", "folder of pg_dump snapshots").default(DEFAULT_SNAPSHOTS_DIR))
    .addOption(new Option("--cache-dir <path>", "where expected schemas are cached (default: the project's .pgstack/cache/verify)").hideHelp())
    .action(async (flags: VerifyFlags) => {
      let configured: { drift?: unknown; postgresVersion?: string } = {};
      if (flags.stack) {
        const state = await readStack(flags.stack);
        if (state.databaseUrl && !flags.url) flags.url = state.databaseUrl;
        configured = { drift: state.config.drift, postgresVersion: state.config.postgresVersion };
      }
      if (flags.postgresVersion !== undefined && !/^\d+$/.test(flags.postgresVersion)) {
        throw new PgstackError("E_USAGE", `--postgres-version must be a PostgreSQL major such as 15 (got '${flags.postgresVersion}').`);
      }
      const settings = settingsFrom(flags, ctx.env);
      let policy;
      try {
        const base = (configured.drift ?? {}) as { changed?: string; extra?: string; allow?: string[] };
        policy = parseDriftPolicy(
          { ...base, ...(flags.changed ? { changed: flags.changed } : {}), ...(flags.extra ? { extra: flags.extra } : {}), allow: [...(base.allow ?? []), ...(flags.allow ?? [])] },
          "--allow/--changed/--extra",
        );
      } catch (err) {
        if (err instanceof StackConfigError) throw new PgstackError("E_USAGE", err.message);
        throw err;
      }
      const log = ctx.logger(flags);
      const result = await verifyDatabase(settings.databaseUrl, {
        migrationsDir: settings.migrationsDir,
        log,
        policy,
        expectedMajor: flags.postgresVersion ?? configured.postgresVersion,
        cacheDir: flags.cache === false ? undefined : flags.cacheDir ? path.resolve(flags.cacheDir) : verifyCacheDir(settings.migrationsDir),
        replayOn: flags.replayOn ?? "local",
        snapshots: flags.snapshot === false ? false : { snapshotsDir: flags.snapshotsDir, env: ctx.env },
      });
      if (flags.json) {
        for (const c of result.checks) ctx.output.out(JSON.stringify({ name: c.name, status: c.status, details: { sentence: c.sentence, ...c.details } }));
      } else {
        for (const c of result.checks) {
          ctx.output.out(`${c.status.toUpperCase().padEnd(4)}  ${c.name}: ${c.sentence}`);
          for (const line of driftLines(c)) ctx.output.out(line);
        }
      }
      const failed = failureSentence(result.checks);
      if (failed) throw new PgstackError("E_VERIFY", failed, { checks: result.checks.filter((c) => c.status === "fail").map((c) => c.name) });
    });
}
