/**
 * The PostgreSQL client tools (pg_dump, pg_restore, psql), for snapshots,
 * restore and the rehearsal: one resolution (PGSTACK_PG_DUMP, else PATH when
 * new enough for the server, else pgstack's cached copy), one version check, one way to run them (credentials in libpq's environment
 * variables, never on a command line).
 */
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import * as path from "node:path";
import { withClient } from "./db/client";
import { PgstackError, messageOf } from "./errors";
import { ensurePgTools, PGTOOLS_MAJOR } from "./pgtools-cache";
import { findOnPath, runProcess, type ProcessResult } from "./process";

export type PgTool = "pg_dump" | "pg_restore" | "psql";

/** Major version from `pg_dump --version` output ("pg_dump (PostgreSQL) 15.18 (Debian ...)"). */
export function parseToolMajor(output: string): number | undefined {
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(output);
  return m ? Number(m[1]) : undefined;
}

/** Major version from server_version_num (150018 -> 15; 90624 -> 9). */
export function serverMajor(versionNum: number): number {
  return Math.floor(versionNum / 10000);
}

const INSTALL_HINT = "install the PostgreSQL client tools (Debian/Ubuntu: apt-get install postgresql-client) or set PGSTACK_PG_DUMP to its path";

export interface ResolveToolOptions {
  /** The major of the server the tool will talk to: the tool must be at least that. */
  serverMajor: number;
  /** Default PGSTACK_PG_DUMP: that pg_dump and its neighbours, and nothing else. */
  pgDump?: string;
  env?: NodeJS.ProcessEnv;
  /** `<platform>-<arch>` for the cached copy (tests). */
  platform?: string;
  /** Told once when the cached copy is installed. */
  log?: (line: string) => void;
}

/**
 * A PostgreSQL client tool of at least the server's major: next to
 * PGSTACK_PG_DUMP (or `pgDump`) when set, so one setting picks the whole set
 * of one version (refused when older than the server); else the user's own on
 * PATH when new enough; else pgstack's cached copy, installed once
 * (core/pgtools-cache.ts).
 */
export async function resolveTool(tool: PgTool, options: ResolveToolOptions): Promise<string> {
  const env = options.env ?? process.env;
  const dump = options.pgDump ?? env.PGSTACK_PG_DUMP;
  if (dump) {
    const file = tool === "pg_dump" ? dump : path.join(path.dirname(dump), tool);
    if (!existsSync(file)) throw new PgstackError("E_SNAPSHOT", `${tool} was not found at ${file}: ${INSTALL_HINT}.`);
    await checkToolVersion(file, options.serverMajor * 10000, env);
    return file;
  }
  const found = findOnPath(tool, env.PATH);
  if (found && ((await toolMajor(found, env)) ?? 0) >= options.serverMajor) return found;
  if (options.serverMajor > PGTOOLS_MAJOR) {
    throw new PgstackError(
      "E_SNAPSHOT",
      `The server is PostgreSQL ${options.serverMajor} and ${found ? `the ${tool} on PATH is older` : `no ${tool} is on PATH`}: install the PostgreSQL ${options.serverMajor} client tools or set PGSTACK_PG_DUMP to that pg_dump.`,
    );
  }
  const bin = await ensurePgTools({ env, platform: options.platform, log: options.log });
  return path.join(bin, tool);
}

/** resolveTool for the server of `url` (one query for its version). */
export async function resolveToolFor(tool: PgTool, url: string, options: Omit<ResolveToolOptions, "serverMajor">): Promise<string> {
  const versionNum = await withClient(url, async (c) => Number((await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0].v), {
    applicationName: "pgstack",
  });
  return resolveTool(tool, { ...options, serverMajor: serverMajor(versionNum) });
}

const majors = new Map<string, number | undefined>();

/** The major a tool reports with --version (remembered per file and modification time). */
async function toolMajor(file: string, env: NodeJS.ProcessEnv): Promise<number | undefined> {
  let key: string;
  try {
    key = `${file}\0${statSync(file).mtimeMs}`;
  } catch {
    return undefined;
  }
  if (!majors.has(key)) {
    const out = await runTool(file, ["--version"], {}, env);
    majors.set(key, out.code === 0 ? parseToolMajor(out.stdout) : undefined);
  }
  return majors.get(key);
}

/** Runs a client tool with the connection in libpq variables: no URL or password on its command line. */
export function runTool(file: string, args: string[], connEnv: Record<string, string>, env: NodeJS.ProcessEnv): Promise<ProcessResult> {
  return runProcess(file, args, { env: toolEnv(connEnv, env) });
}

/** Refuses a pg_dump older than the server: it cannot read a newer server's catalogs correctly. */
export async function checkDumpTool(pgDump: string, serverVersionNum: number, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return checkToolVersion(pgDump, serverVersionNum, env);
}

async function checkToolVersion(file: string, serverVersionNum: number, env: NodeJS.ProcessEnv): Promise<number> {
  const name = path.basename(file);
  const major = await toolMajor(file, env);
  if (major === undefined) throw new PgstackError("E_SNAPSHOT", `${file} did not report a PostgreSQL version (is it ${name === "pg_dump" ? "pg_dump" : "a PostgreSQL client tool"}?): ${INSTALL_HINT}.`);
  const server = serverMajor(serverVersionNum);
  if (major < server) {
    throw new PgstackError(
      "E_SNAPSHOT",
      `The ${name} at ${file} is version ${major} but the server is PostgreSQL ${server}, and an older ${name} cannot be trusted with a newer server: install ${name} ${server} or newer (Debian/Ubuntu: apt-get install postgresql-client-${server}) or set PGSTACK_PG_DUMP to its path; nothing was dumped.`,
    );
  }
  return major;
}

/** The environment of a tool connecting with `connEnv` (libpq variables): never DATABASE_URL. */
function toolEnv(connEnv: Record<string, string>, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const childEnv: NodeJS.ProcessEnv = { ...env, ...connEnv };
  delete childEnv.DATABASE_URL;
  return childEnv;
}

export interface ToolStep {
  file: string;
  args: string[];
  /** libpq variables of the connection (libpqEnv). */
  connEnv: Record<string, string>;
}

/**
 * `from | to`: the first tool's stdout into the second's stdin (pg_dump into
 * psql). Resolves with the exit code of `to` and both tools' stderr.
 */
export function runToolPipe(from: ToolStep, to: ToolStep, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const source = spawn(from.file, from.args, { env: toolEnv(from.connEnv, env), stdio: ["ignore", "pipe", "pipe"] });
    const sink = spawn(to.file, to.args, { env: toolEnv(to.connEnv, env), stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    source.stderr.on("data", (d) => (stderr += d));
    sink.stderr.on("data", (d) => (stderr += d));
    source.on("error", (e) => (stderr += `${from.file}: ${messageOf(e)}\n`));
    sink.on("error", (e) => resolve({ code: 127, stderr: stderr + `${to.file}: ${messageOf(e)}` }));
    sink.stdin.on("error", () => undefined); // the sink died first: its own exit says why
    source.stdout.pipe(sink.stdin);
    sink.on("close", (code) => resolve({ code: code ?? 1, stderr }));
  });
}
