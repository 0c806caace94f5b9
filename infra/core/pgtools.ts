/**
 * The PostgreSQL client tools (pg_dump, pg_restore, psql), for snapshots,
 * restore and the rehearsal: one resolution (PGSTACK_PG_DUMP, else PATH), one
 * version check, one way to run them (credentials in libpq's environment
 * variables, never on a command line).
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import * as path from "node:path";
import { PgstackError, messageOf } from "./errors";
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

/**
 * Where a PostgreSQL client tool is: next to PGSTACK_PG_DUMP (or `pgDump`)
 * when set, so one setting picks the whole set of one version, else on PATH;
 * one sentence saying what to install when it is not there.
 */
export function resolveTool(tool: PgTool, options: { pgDump?: string; env?: NodeJS.ProcessEnv }): string {
  const env = options.env ?? process.env;
  const dump = options.pgDump ?? env.PGSTACK_PG_DUMP;
  if (dump) {
    const file = tool === "pg_dump" ? dump : path.join(path.dirname(dump), tool);
    if (existsSync(file)) return file;
    throw new PgstackError("E_SNAPSHOT", `${tool} was not found at ${file}: ${INSTALL_HINT}.`);
  }
  const found = findOnPath(tool, env.PATH);
  if (!found) throw new PgstackError("E_SNAPSHOT", `${tool} was not found on PATH: ${INSTALL_HINT}.`);
  return found;
}

/** Runs a client tool with the connection in libpq variables: no URL or password on its command line. */
export function runTool(file: string, args: string[], connEnv: Record<string, string>, env: NodeJS.ProcessEnv): Promise<ProcessResult> {
  return runProcess(file, args, { env: toolEnv(connEnv, env) });
}

/** Refuses a pg_dump older than the server: it cannot read a newer server's catalogs correctly. */
export async function checkDumpTool(pgDump: string, serverVersionNum: number, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const out = await runTool(pgDump, ["--version"], {}, env);
  const major = out.code === 0 ? parseToolMajor(out.stdout) : undefined;
  if (major === undefined) throw new PgstackError("E_SNAPSHOT", `${pgDump} did not report a PostgreSQL version (is it pg_dump?): ${INSTALL_HINT}.`);
  const server = serverMajor(serverVersionNum);
  if (major < server) {
    throw new PgstackError(
      "E_SNAPSHOT",
      `The pg_dump at ${pgDump} is version ${major} but the server is PostgreSQL ${server}, and an older pg_dump cannot be trusted with a newer server: install pg_dump ${server} or newer (Debian/Ubuntu: apt-get install postgresql-client-${server}) or set PGSTACK_PG_DUMP to its path; nothing was dumped.`,
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
