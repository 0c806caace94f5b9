import { Command } from "commander";
import { realpathSync } from "node:fs";
import { keepSessionsOpen } from "../../core/db/client";
import { PgstackError } from "../../core/errors";
import { cacheDiscoveries } from "../../core/migrations/discover";
import { lineLogger } from "../../core/logger";
import { isSessionSocket, parseAnchor, sessionIdentity } from "../../core/session/identity";
import { serveSession } from "../../core/session/server";
import type { Context } from "../context";

/** Runs one CLI command line with the given context (main.ts's `run`, passed in to keep imports one way). */
export type CliRunner = (argv: string[], ctx: Context) => Promise<number>;

/** The only commands a session runs: the migration steps. */
const SESSION_COMMANDS = new Set(["apply"]);

/**
 * `pgstack session` (hidden): the resident process of one `pulumi up`, started
 * by the first migration step's client (infra/bin/step) with the update's
 * anchor and socket in PGSTACK_SESSION_ANCHOR / PGSTACK_SESSION_SOCKET and the
 * URL in DATABASE_URL, like every step. Runs each step's `apply` exactly as
 * `node infra/bin/pgstack.js apply ...` would, its output and exit code sent
 * back to that step. See core/session/server.ts for when it ends.
 */
export function sessionCommand(ctx: Context, runner: CliRunner): Command {
  return new Command("session").description("serve the migration steps of one pulumi update (started by infra/bin/pgstack-step)").action(async () => {
    const anchor = parseAnchor(ctx.env.PGSTACK_SESSION_ANCHOR);
    const socketPath = ctx.env.PGSTACK_SESSION_SOCKET;
    const url = ctx.env.DATABASE_URL;
    if (!anchor || !socketPath || !url) {
      throw new PgstackError("E_USAGE", "`pgstack session` is started by infra/bin/pgstack-step for the steps of a pulumi update, not by hand.");
    }
    const identity = sessionIdentity(anchor, realpathSync(process.cwd()), url);
    if (!isSessionSocket(socketPath, identity.socketName)) {
      throw new PgstackError("E_USAGE", "PGSTACK_SESSION_SOCKET does not belong to this update, directory and database: the session was not started.");
    }
    // One connection per database for the whole update instead of two per step.
    keepSessionsOpen();
    // Each step reads the whole history: read each file once (again when it changes).
    cacheDiscoveries();
    await serveSession({
      socketPath,
      token: identity.token,
      anchor,
      handle: (argv, io) => {
        if (!SESSION_COMMANDS.has(argv[0] ?? "")) {
          io.err(`pgstack: a deploy session runs only ${[...SESSION_COMMANDS].join(", ")}; got '${argv[0] ?? ""}'.`);
          return Promise.resolve(2);
        }
        return runner(argv, { env: ctx.env, output: io, logger: (flags) => lineLogger((line) => io.err(line), flags) });
      },
    });
    // Served until the update ends: serveSession ends the process.
    await new Promise<never>(() => undefined);
  });
}
