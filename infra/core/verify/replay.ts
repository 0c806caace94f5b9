import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EMBEDDED_VERSIONS, freePort, initCluster, startCluster, stopCluster } from "../cluster/embedded";
import { withClient } from "../db/client";
import { recordThrowaway } from "../db/copy";
import { localServerUrl, parseDatabaseUrl, quoteIdent, withDatabase } from "../db/url";
import { PgstackError, messageOf } from "../errors";
import type { Logger } from "../logger";
import type { Migration } from "../migrations/discover";
import { applyMigrations } from "../migrations/runner";
import { inspectSchema, type InspectedSchema } from "./schema";

/**
 * Where the applied history is replayed: `local`, a throwaway embedded
 * PostgreSQL of the same major started for the replay (the production server
 * is only read, whatever its engine: rds and external alike); `server`, a
 * throwaway database on the database's own server (CREATEDB needed), only
 * when the user asks for it.
 */
export type ReplayOn = "local" | "server";

export interface ReplayOptions {
  /** The live database: its schema name, and (for `server`) its server. */
  url: string;
  /** Major of the live server ("15"). */
  major: string;
  /** The migrations folder. */
  migrationsDir: string;
  /** The applied migrations, in the order they apply. */
  applied: Migration[];
  /** Every migration of the folder, in order. */
  migrations: Migration[];
  replayOn: ReplayOn;
  log: Logger;
}

/**
 * Replays the applied history into an empty database with the runner a
 * deploy uses, and returns migra's inspection of the result. The throwaway
 * server or database is removed afterwards, on failure too.
 */
export async function replayHistory(options: ReplayOptions): Promise<InspectedSchema> {
  const { schema } = parseDatabaseUrl(options.url);
  return options.replayOn === "local" ? replayLocally(options, schema) : replayOnServer(options, schema);
}

async function replayLocally(options: ReplayOptions, schema: string): Promise<InspectedSchema> {
  // Binaries of the database's major: the installed ones, or pgstack's cached copy of that major.
  if (!EMBEDDED_VERSIONS[options.major]) {
    throw new PgstackError(
      "E_VERIFY",
      `The history is replayed on a throwaway embedded PostgreSQL of the database's major (${options.major}), which pgstack does not run (it runs ${Object.keys(EMBEDDED_VERSIONS).join(", ")}): pass --replay-on server to replay in a throwaway database on the database's own server.`,
    );
  }
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-verify-"));
  // As root the server runs as `postgres`, which must reach the data dir.
  await fs.chmod(root, 0o755);
  const dataDir = path.join(root, "data");
  const port = await freePort();
  const password = randomBytes(18).toString("hex");
  try {
    await initCluster({ dataDir, port, password, major: options.major });
    await startCluster({ dataDir, port, major: options.major });
    const admin = localServerUrl("postgres", password, port, "postgres");
    await withClient(admin, (c) => c.query(`CREATE DATABASE replay`), { applicationName: "pgstack verify" });
    return await replayInto(options, withSchema(localServerUrl("postgres", password, port, "replay"), schema), schema);
  } finally {
    await stopCluster(dataDir).catch((err) => options.log.warn(`could not stop the throwaway PostgreSQL in ${dataDir}: ${messageOf(err)}`));
    await fs.rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function replayOnServer(options: ReplayOptions, schema: string): Promise<InspectedSchema> {
  const name = `pgstack_verify_${randomBytes(5).toString("hex")}`;
  const admin = withDatabase(options.url, "postgres");
  await withClient(
    admin,
    async (c) => {
      await c.query(`CREATE DATABASE ${quoteIdent(name)}`);
      // Recorded at once, so a verify killed before its finally is cleaned up by the next pgstack command (core/db/copy.ts).
      await recordThrowaway(c, name, "verify");
      await c.query(`ALTER DATABASE ${quoteIdent(name)} SET synchronous_commit = off`);
    },
    { applicationName: "pgstack verify" },
  ).catch((err) => {
    if ((err as { code?: string }).code === "42501") {
      throw new PgstackError("E_VERIFY", "Replaying the history on the database's server needs a role that may create databases (CREATEDB): grant it, or replay locally (the default, without --replay-on server).");
    }
    throw err;
  });
  try {
    return await replayInto(options, withDatabase(options.url, name), schema);
  } finally {
    await withClient(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`), { applicationName: "pgstack verify" }).catch((err) =>
      options.log.warn(`could not drop the throwaway database ${name}: ${messageOf(err)}`),
    );
  }
}

function withSchema(url: string, schema: string): string {
  if (schema === "public") return url;
  const u = new URL(url);
  u.searchParams.set("schema", schema);
  return u.toString();
}

async function replayInto(options: ReplayOptions, url: string, schema: string): Promise<InspectedSchema> {
  const quiet = { ...options.log, info: () => undefined };
  const settings = { databaseUrl: url, migrationsDir: options.migrationsDir, lockWaitSeconds: 0, lockTimeoutMs: 0, statementTimeoutMs: 0, retries: 0, retryDelayMs: 0 };
  const names = options.applied.map((m) => m.name);
  const prefix = names.every((n, i) => options.migrations[i]?.name === n);
  if (names.length > 0) {
    if (prefix) await applyMigrations(settings, { kind: "all", to: names[names.length - 1] }, quiet);
    else {
      // Applied out of the folder's order (a later migration applied, an earlier one reverted): a folder of the applied ones only.
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-verify-history-"));
      try {
        for (const m of options.applied) await fs.cp(m.dir, path.join(dir, m.name), { recursive: true });
        await applyMigrations({ ...settings, migrationsDir: dir }, { kind: "all" }, quiet);
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    }
  }
  return inspectSchema(url, schema);
}
