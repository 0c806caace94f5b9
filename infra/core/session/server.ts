import { timingSafeEqual } from "node:crypto";
import { promises as fs, unlinkSync } from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { PgstackError } from "../errors";
import { anchorAlive, type ProcessRef } from "./identity";

/**
 * The resident side of a deploy session: one process per `pulumi up` that
 * runs the steps' command lines, so each step pays a small client's start-up
 * instead of Node.js's and the CLI's.
 *
 * One step at a time, in arrival order. The session ends (process exit, which
 * closes its database connections, so the server rolls back an unfinished
 * migration and frees the deployer lock) when the update's engine or command
 * provider is gone (a finished or killed `pulumi up`), when the step it is
 * running disconnects (a cancelled step, as if the CLI itself were killed),
 * or after `idleMs` without a step.
 */

/** Where a step's output goes: each call is one line or more, as the CLI prints it. */
export interface StepIO {
  out(text: string): void;
  err(text: string): void;
}

export interface SessionOptions {
  /** The socket to listen on, inside a 0700 directory of this user. */
  socketPath: string;
  /** What a step must send to be served. */
  token: string;
  /** The update's processes: the session ends when one of them is gone. */
  anchor: ProcessRef[];
  /** Runs one step's command line; resolves to its exit code. */
  handle(argv: string[], io: StepIO): Promise<number>;
  idleMs?: number;
  /** How often the anchor is checked. */
  watchMs?: number;
  /** Ends the process (tests pass their own). */
  exit?: (code: number) => void;
}

/** Refuses a socket directory that is not this user's own and closed to everyone else. */
export async function assertPrivateDir(dir: string): Promise<void> {
  const info = await fs.lstat(dir);
  const uid = process.getuid?.();
  if (!info.isDirectory() || (info.mode & 0o777) !== 0o700 || (uid !== undefined && info.uid !== uid)) {
    throw new PgstackError("E_USAGE", `The deploy session's directory ${dir} must be a 0700 directory of this user: remove it and run again.`);
  }
}

/** Listens and serves until the session ends; resolves once it listens. */
export async function serveSession(options: SessionOptions): Promise<net.Server> {
  const { socketPath, anchor, handle } = options;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  await assertPrivateDir(path.dirname(socketPath));
  const expected = Buffer.from(options.token);
  let queue: Promise<void> = Promise.resolve();
  let lastActivity = Date.now();
  let busy = 0;

  const end = (code: number) => {
    clearInterval(watch);
    server.close();
    try {
      unlinkSync(socketPath);
    } catch {
      // already gone
    }
    exit(code);
  };

  const server = net.createServer((socket) => {
    let buffered = "";
    let accepted = false;
    socket.on("error", () => undefined);
    socket.on("data", (chunk) => {
      if (accepted) return;
      buffered += chunk.toString("utf8");
      const newline = buffered.indexOf("\n");
      if (newline < 0) {
        if (buffered.length > 1 << 20) socket.destroy();
        return;
      }
      accepted = true;
      let request: { token?: unknown; argv?: unknown };
      try {
        request = JSON.parse(buffered.slice(0, newline));
      } catch {
        socket.destroy();
        return;
      }
      const token = Buffer.from(typeof request.token === "string" ? request.token : "");
      const argv = request.argv;
      if (token.length !== expected.length || !timingSafeEqual(token, expected) || !Array.isArray(argv) || !argv.every((a) => typeof a === "string")) {
        socket.destroy();
        return;
      }
      busy++;
      queue = queue.then(() => runStep(socket, argv as string[]));
    });
  });

  async function runStep(socket: net.Socket, argv: string[]): Promise<void> {
    // A step that goes away mid-run was cancelled or killed: end as the CLI would have.
    const onGone = () => end(1);
    socket.once("close", onGone);
    const send = (frame: object) => socket.write(JSON.stringify(frame) + "\n");
    const line = (t: string) => (t.endsWith("\n") ? t : t + "\n");
    let code: number;
    try {
      code = await handle(argv, { out: (t) => send({ o: line(t) }), err: (t) => send({ e: line(t) }) });
    } catch (err) {
      send({ e: line(`pgstack: ${(err as Error)?.message ?? String(err)}`) });
      code = 1;
    }
    socket.off("close", onGone);
    socket.end(JSON.stringify({ x: code }) + "\n");
    busy--;
    lastActivity = Date.now();
  }

  const idleMs = options.idleMs ?? 10 * 60_000;
  const watch = setInterval(() => {
    if (!anchorAlive(anchor)) end(0);
    else if (busy === 0 && Date.now() - lastActivity > idleMs) end(0);
  }, options.watchMs ?? 100);
  watch.unref();

  await new Promise<void>((resolve, reject) => {
    const listen = (retry: boolean) => {
      server.once("error", async (err: NodeJS.ErrnoException) => {
        if (retry && err.code === "EADDRINUSE" && !(await answers(socketPath))) {
          // A socket left by a session that was killed: take its place.
          await fs.rm(socketPath, { force: true });
          listen(false);
        } else reject(err);
      });
      server.listen(socketPath, () => resolve());
    };
    listen(true);
  });
  // The server keeps the process alive; the anchor watch ends it.
  watch.ref();
  return server;
}

/** True when something accepts connections on `socketPath`. */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}
