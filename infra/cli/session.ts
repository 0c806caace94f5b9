import { randomBytes } from "node:crypto";
import { promises as fs, realpathSync } from "node:fs";
import * as path from "node:path";
import { deployerSession } from "../core/db/deployers";
import { PgstackError } from "../core/errors";
import { lineLogger } from "../core/logger";
import { cacheDiscoveries } from "../core/migrations/discover";
import { sessionPaths, updateAnchor } from "../core/session/identity";
import { createExclusive, preparePrivateDir, removeIfOurs } from "../core/session/folder";
import { answers, MAX_SOCKET_PATH, serveSession, socketPathTooLong, type Session } from "../core/session/server";
import type { Context } from "./context";

/** Runs one CLI command line with the given context (main.ts's `run`, passed in to keep imports one way). */
export type CliRunner = (argv: string[], ctx: Context) => Promise<number>;

export interface MigrationStepsOptions {
  /** The project root: the steps' working directory. */
  projectDir: string;
  stack: string;
  /** The database the steps migrate; known once the database resource exists. Never leaves this process. */
  databaseUrl: Promise<string>;
  /** Each step's command line (`apply <name> --dir <dir> [--mode m]`): the only ones served. */
  steps: string[][];
  /**
   * Command lines served after the chain (the verification, `verify ...`):
   * run without the deployer's connection or the migration lock, which the
   * chain's last step let go of.
   */
  after?: string[][];
  runner: CliRunner;
  env?: NodeJS.ProcessEnv;
}

/**
 * The deploy session of one `pulumi up`, hosted by its program: every
 * migration step (infra/bin/pgstack-step) hands its command line here over a
 * Unix socket, and it runs exactly as `pgstack apply` would, on connections
 * kept open between steps. The steps carry no database URL: it stays in the
 * program, which already has it. Only this update's own step command lines
 * are served, to a client that read the token from this user's 0700 directory.
 * A cancelled step's work is aborted; a killed update ends the program.
 */
export async function serveMigrationSteps(options: MigrationStepsOptions): Promise<Session> {
  const env = options.env ?? process.env;
  const { socket, tokenFile } = sessionPaths(realpathSync(options.projectDir), options.stack, env);
  // Everything is checked before the first byte is written (a folder or symlinks planted by another user: issue 22).
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) throw socketPathTooLong(socket);
  await preparePrivateDir(path.dirname(socket));
  if (await answers(socket)) {
    throw new PgstackError(
      "E_USAGE",
      `Another pulumi update of stack '${options.stack}' from ${options.projectDir} is serving its migration steps (${socket}): let it finish, or end it, and run again.`,
    );
  }
  const token = randomBytes(32).toString("hex");
  // Written whole before a client can read it, readable by this user only, never through a link (O_EXCL|O_NOFOLLOW).
  const partial = await createExclusive(`${tokenFile}.${randomBytes(6).toString("hex")}`, token);
  await fs.rename(partial.path, tokenFile).catch((err) => {
    removeIfOurs(partial);
    throw err;
  });
  const written = { ...partial, path: tokenFile };

  const allowed = new Set([...options.steps, ...(options.after ?? [])].map((argv) => JSON.stringify(argv)));
  const afterChain = new Set((options.after ?? []).map((argv) => JSON.stringify(argv)));
  const last = JSON.stringify(options.steps[options.steps.length - 1]);
  // One deployer for the whole chain, as one `apply --all`: its connection and the migration lock are taken at
  // the first step, not before (an idle session of this program during the pre-update snapshot would make it
  // take a pg_dump instead of a template copy), and kept until the chain's last step or a failed one. A chain
  // split around the application rollout keeps them through the rollout: while the old version may still serve, no
  // other deployer (another update, `pgstack apply`, `prisma migrate deploy`) can apply a contract migration.
  const deployer = deployerSession();
  // Each step reads the whole history: read each file once (again when it changes).
  cacheDiscoveries();
  const session = await serveSession({
    socketPath: socket,
    token,
    anchor: updateAnchor(),
    handle: async (argv, io) => {
      const step = JSON.stringify(argv);
      if (!allowed.has(step)) {
        io.err(`pgstack: this update's deploy session runs only its own migration steps; got '${argv.join(" ")}'.`);
        return 2;
      }
      const ctx: Context = {
        env: { ...env, DATABASE_URL: await options.databaseUrl },
        output: io,
        logger: (flags) => lineLogger((line) => io.err(line), flags),
        // The program repaired what an interrupted snapshot or restore left before it read the database.
        repaired: true,
        step: { deployer },
      };
      const code = await options.runner(withProjectDir(argv, options.projectDir), ctx);
      if (afterChain.has(step)) return code;
      // The chain stops at a failed step; after its last one the lock is for whoever deploys next (the seed, another update).
      if (code !== 0 || step === last) await deployer.close();
      return code;
    },
    onStepGone: () => deployer.abort(),
    onUpdateGone: () => {
      deployer.abort();
      // The update is gone: nothing is left for this program to do, and it must not run on.
      process.exit(1);
    },
  }).catch((err) => {
    // Not serving: no token left behind for a session that never listened.
    removeIfOurs(written);
    throw err;
  });
  // A failed update ends without the last step: leave no socket or token behind.
  const cleanup = () => {
    session.close();
    removeIfOurs(written);
  };
  process.once("exit", cleanup);
  return {
    close() {
      process.removeListener("exit", cleanup);
      cleanup();
      void deployer.close();
    },
  };
}

/** The step's `--dir` (and `--snapshots-dir`) are relative to the project root; the program runs elsewhere (Pulumi.yaml's main). Pure. */
export function withProjectDir(argv: string[], projectDir: string): string[] {
  let out = argv;
  for (const flag of ["--dir", "--snapshots-dir"]) {
    const i = out.indexOf(flag);
    if (i < 0 || i + 1 >= out.length) continue;
    out = [...out.slice(0, i + 1), path.resolve(projectDir, out[i + 1]), ...out.slice(i + 2)];
  }
  return out;
}
