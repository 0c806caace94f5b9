#!/usr/bin/env node
// The migration step's client for machines without a C compiler: the same as
// infra/bin/step/pgstack-step.c (read that first), in plain Node.js (no
// bundle, no dependencies), so it costs a Node.js start per step but nothing more.
"use strict";
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

function fail(message) {
  process.stderr.write(`pgstack-step: ${message}\n`);
  process.exit(1);
}

/** FNV-1a, 64 bits (keep in step with sessionName in infra/core/session/identity.ts). */
function sessionName(parts) {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(parts.join("\n"), "utf8")) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return hash.toString(16).padStart(16, "0");
}

const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--version") {
  process.stdout.write("pgstack-step\n");
  process.exit(0);
}
const stack = process.env.PGSTACK_STACK;
if (!stack) fail("a migration step runs inside `pulumi up` of its stack ($PGSTACK_STACK is not set); to apply a migration by hand run `node infra/bin/pgstack.js apply <name>`");
const wd = fs.realpathSync(process.cwd());
const dir = `${process.env.XDG_RUNTIME_DIR || os.tmpdir()}/pgstack-${process.getuid()}`;
const info = fs.lstatSync(dir, { throwIfNoEntry: false });
if (!info || !info.isDirectory() || (info.mode & 0o777) !== 0o700 || info.uid !== process.getuid()) {
  fail(`no deploy session for stack '${stack}': ${dir} is not a 0700 directory of this user`);
}
const name = sessionName(["pgstack-deploy-v3", wd, stack]);
let token;
try {
  token = fs.readFileSync(path.join(dir, `${name}.token`), "utf8").trim();
} catch {
  fail(`no deploy session for stack '${stack}' in ${wd}: the migration steps run only inside \`pulumi up\`, whose program serves them`);
}
const socketPath = path.join(dir, `${name}.sock`);
if (Buffer.byteLength(socketPath) > 103) fail(`the deploy session's socket path is too long (${socketPath}): set XDG_RUNTIME_DIR or TMPDIR to a shorter directory`);
const conn = net.connect(socketPath);
let buffered = Buffer.alloc(0);
let answered = false;
conn.on("error", (err) => fail(`no deploy session for stack '${stack}' in ${wd} (${err.message}): the update's program is gone; run \`pulumi up\` again`));
conn.on("connect", () => conn.write(JSON.stringify({ token, argv: args }) + "\n"));
// Frames: <kind><length>:<bytes>, kind o (stdout), e (stderr) or x (exit code).
conn.on("data", (chunk) => {
  buffered = Buffer.concat([buffered, chunk]);
  for (;;) {
    const colon = buffered.indexOf(":");
    if (colon < 0) return;
    const kind = String.fromCharCode(buffered[0]);
    const header = buffered.subarray(1, colon).toString("latin1");
    if (!"oex".includes(kind) || !/^\d+$/.test(header)) fail("unreadable answer from the deploy session");
    const end = colon + 1 + Number(header);
    if (buffered.length < end) return;
    const body = buffered.subarray(colon + 1, end);
    buffered = buffered.subarray(end);
    if (kind === "o") process.stdout.write(body);
    else if (kind === "e") process.stderr.write(body);
    else {
      answered = true;
      process.exitCode = Number(body.toString("latin1"));
      conn.end();
      return;
    }
  }
});
conn.on("close", () => {
  if (!answered) fail("the deploy session ended before this step finished (the update was interrupted); the database rolled back what the step had not committed");
});
