import { timingSafeEqual } from "node:crypto";
import { lstatSync, promises as fs } from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { PgstackError } from "../errors";
import { assertPrivateDir, removeIfOurs, type FileRef } from "./folder";
import { anchorAlive, type ProcessRef } from "./identity";

export { assertPrivateDir };

/**
 * The serving side of a deploy session: the program of one `pulumi up`
 * answers its own migration steps, so each step pays a small client's
 * start-up instead of Node.js's and the CLI's, and carries no database URL.
 *
 * One step at a time, in arrival order. When the step being served goes away
 * (a cancelled step) `onStepGone` aborts its work, as killing the CLI would;
 * when a process of the update is gone (a killed `pulumi up`) `onUpdateGone`
 * runs (the program then exits, so its connections close, the server rolls
 * back an unfinished migration and frees the deployer lock). Nothing here
 * keeps the process alive: the program ends when Pulumi is done with it.
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
  /** The update's processes, when known: `onUpdateGone` runs once one of them is gone. */
  anchor?: ProcessRef[];
  /** Runs one step's command line; resolves to its exit code. */
  handle(argv: string[], io: StepIO): Promise<number>;
  /** The step being served disconnected before its answer. */
  onStepGone(): void;
  /** The update ended under the session (checked every `watchMs`). */
  onUpdateGone(): void;
  /** How often the anchor is checked. */
  watchMs?: number;
}

export interface Session {
  /** Stops listening and removes the socket. */
  close(): void;
}

/** The longest socket path every platform's sockaddr_un takes (macOS: 104 bytes with the terminating NUL). */
export const MAX_SOCKET_PATH = 103;

export function socketPathTooLong(socketPath: string): PgstackError {
  return new PgstackError("E_USAGE", `The deploy session's socket path is too long (${socketPath}): set XDG_RUNTIME_DIR or TMPDIR to a shorter directory.`);
}

/** Listens until closed or the update is gone; resolves once it listens. */
export async function serveSession(options: SessionOptions): Promise<Session> {
  const { socketPath, anchor, handle } = options;
  // Node.js would listen on a silently truncated path that no step finds (sun_path: 108 bytes on Linux, 104 on macOS).
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) throw socketPathTooLong(socketPath);
  await assertPrivateDir(path.dirname(socketPath));
  const expected = Buffer.from(options.token);
  let queue: Promise<void> = Promise.resolve();
  let closed = false;
  // The socket this session bound (bind fails on any existing name, a symlink too): the only one it removes.
  let bound: FileRef | undefined;

  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(watch);
    server.close();
    removeIfOurs(bound);
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
      queue = queue.then(() => runStep(socket, argv as string[]));
    });
  });

  async function runStep(socket: net.Socket, argv: string[]): Promise<void> {
    // A step that goes away mid-run was cancelled or killed: its work stops as the CLI's would.
    const onGone = () => options.onStepGone();
    socket.once("close", onGone);
    const line = (t: string) => (t.endsWith("\n") ? t : t + "\n");
    let code: number;
    try {
      code = await handle(argv, { out: (t) => socket.write(frame("o", line(t))), err: (t) => socket.write(frame("e", line(t))) });
    } catch (err) {
      socket.write(frame("e", line(`pgstack: ${(err as Error)?.message ?? String(err)}`)));
      code = 1;
    }
    socket.off("close", onGone);
    socket.end(frame("x", String(code)));
  }

  const watch = setInterval(() => {
    if (anchor && !anchorAlive(anchor)) {
      close();
      options.onUpdateGone();
    }
  }, options.watchMs ?? 100);
  watch.unref();

  await new Promise<void>((resolve, reject) => {
    const listen = (retry: boolean) => {
      server.once("error", async (err: NodeJS.ErrnoException) => {
        if (retry && err.code === "EADDRINUSE" && (await fs.lstat(socketPath).then((i) => i.isSocket(), () => false)) && !(await answers(socketPath))) {
          // A socket left by a session that was killed (in this user's private folder): take its place.
          await fs.unlink(socketPath);
          listen(false);
        } else reject(err);
      });
      server.listen(socketPath, () => resolve());
    };
    listen(true);
  });
  const { dev, ino } = lstatSync(socketPath);
  bound = { path: socketPath, dev, ino };
  // Pulumi ends the program once its own work is done; a listening socket must not keep it waiting.
  server.unref();
  return { close };
}

/**
 * One frame of a step's answer: <kind><length in bytes>:<bytes>, kind o
 * (stdout), e (stderr) or x (the exit code, last). Trivial to read in the
 * C client (infra/bin/step/pgstack-step.c) and in infra/bin/step-client.js.
 */
export function frame(kind: "o" | "e" | "x", text: string): Buffer {
  const body = Buffer.from(text, "utf8");
  return Buffer.concat([Buffer.from(`${kind}${body.length}:`), body]);
}

/** True when something accepts connections on `socketPath`. */
export function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}
