"use strict";
// The guardian of a database closed to connections (guardian.ts starts it).
// Plain JavaScript so that it starts in one bare `node` (no compiler): the
// owner waits for it before it closes the database.
//
//   node guardian-process.js        stage 1: starts stage 2 in its own session
//                                    and exits, so stage 2 is reparented and
//                                    outside the owner's process group and tree;
//   node guardian-process.js watch  stage 2: reads one JSON line (the URL) from
//                                    fd 3, answers "ready <pid>" on fd 1, then waits.
//
// fd 3 is a pipe from the owner (the same one in both stages): "done" means
// the operation ended and the guardian exits; end of file without it means
// the owner died (any way: SIGKILL, OOM, machine's process tree killed) or
// could not repair a failed operation itself and handed over, and
// the guardian runs the repair every pgstack command runs (fence.ts
// recoverInterrupted), which never touches an operation whose session lives.
// Nothing secret is in its argv or environment: the URL comes over the pipe.
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");

const stage = process.argv[2];

if (stage !== "watch") {
  const child = spawn(process.execPath, [__filename, "watch"], { detached: true, stdio: ["ignore", 1, 2, 3], env: process.env });
  child.unref();
  process.exit(0);
}

process.stderr.on("error", () => undefined); // the owner's stderr may be gone
let input = "";
let request;
let finished = false;

function say(line) {
  try {
    fs.writeSync(2, `pgstack guardian: ${line}\n`);
  } catch {
    // nobody reads it any more
  }
}

// fd 3, not stdin: Node closes a child's stdin pipe in the parent as soon as stage 1 exits.
const control = new net.Socket({ fd: 3, readable: true, writable: false });
control.setEncoding("utf8");
control.on("data", (chunk) => {
  input += chunk;
  if (!request) {
    const nl = input.indexOf("\n");
    if (nl < 0) return;
    request = JSON.parse(input.slice(0, nl));
    input = input.slice(nl + 1);
    Object.assign(process.env, request.env ?? {});
    try {
      fs.writeSync(1, `ready ${process.pid}\n`);
    } catch {
      // the owner is already gone: the end of fd 3 follows
    }
  }
  if (input.includes("done\n")) {
    finished = true;
    process.exit(0);
  }
});
control.on("error", () => undefined);
control.on("end", () => {
  if (finished || !request) process.exit(0);
  repair().then(
    () => process.exit(0),
    (err) => {
      say(`could not repair database '${request.database}': ${String((err && err.message) || err).split("\n")[0]}`);
      process.exit(1);
    },
  );
});

/** The owner died or handed over: the repair, until no marker about the database is left (a session still finishing a statement is waited for; a server unreachable for a moment, a failover, is retried). */
async function repair() {
  require("tsx/cjs");
  const { recoverInterrupted, operationsAbout } = require(path.join(__dirname, "fence.ts"));
  const { withClient } = require(path.join(__dirname, "..", "db", "client.ts"));
  const { withDatabase } = require(path.join(__dirname, "..", "db", "url.ts"));
  const { lineLogger } = require(path.join(__dirname, "..", "logger.ts"));
  const log = lineLogger((line) => say(line));
  const until = Date.now() + 10 * 60_000;
  let lastError;
  for (;;) {
    try {
      await recoverInterrupted(request.url, { log, waitMs: 30_000 });
      // A marker may have moved meanwhile (the owner's last statement, a swap, committed after the repair looked): again.
      const left = await withClient(withDatabase(request.url, "postgres"), (c) => operationsAbout(c, request.database), { applicationName: "pgstack guardian", connectTimeoutMs: 5000 });
      if (left.length === 0) return;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > until) {
      if (lastError) throw lastError;
      return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
