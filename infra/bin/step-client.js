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
const base = process.env.XDG_RUNTIME_DIR || os.tmpdir();
const dir = `${base}/pgstack-${process.getuid()}`;
const refuse = (why) => fail(`the deploy session's folder ${dir} ${why}: remove it, or set XDG_RUNTIME_DIR to a folder only you can change, and run again`);
// The same rules as the serving program (infra/core/session/folder.ts): no folder on the way another user can swap entries in.
function safeBase() {
  const visit = (folder) => {
    const info = fs.lstatSync(folder);
    if (info.uid !== 0 && info.uid !== process.getuid()) refuse(`is inside ${folder}, which belongs to another user (uid ${info.uid})`);
    if ((info.mode & 0o022) !== 0 && (info.mode & 0o1000) === 0) refuse(`is inside ${folder}, which other users can write to and which lacks the sticky bit`);
  };
  let hops = 0;
  const walk = (from, rel) => {
    let at = from;
    for (const part of rel.split("/")) {
      if (part === "" || part === ".") continue;
      if (part === "..") {
        at = path.dirname(at);
        continue;
      }
      visit(at);
      const next = path.join(at, part);
      if (fs.lstatSync(next).isSymbolicLink()) {
        if (++hops > 40) refuse("is behind too many symlinks");
        const target = fs.readlinkSync(next);
        at = walk(path.isAbsolute(target) ? "/" : at, target);
      } else at = next;
    }
    return at;
  };
  // Unnormalised: ".." after a symlink goes where the kernel goes.
  visit(walk("/", path.isAbsolute(base) ? base : `${process.cwd()}/${base}`));
}
const info = fs.lstatSync(dir, { throwIfNoEntry: false });
if (!info) fail(`no deploy session for stack '${stack}': ${dir} does not exist; the migration steps run only inside \`pulumi up\`, whose program serves them`);
try {
  safeBase();
} catch {
  fail(`no deploy session for stack '${stack}': ${base} cannot be read`);
}
if (info.isSymbolicLink()) refuse("is a symlink");
if (!info.isDirectory()) refuse("is not a folder");
if (info.uid !== process.getuid()) refuse(`belongs to another user (uid ${info.uid})`);
if ((info.mode & 0o7777) !== 0o700) refuse(`has mode ${(info.mode & 0o7777).toString(8)}, not 700`);
const name = sessionName(["pgstack-deploy-v3", wd, stack]);
const noSession = () => fail(`no deploy session for stack '${stack}' in ${wd}: the migration steps run only inside \`pulumi up\`, whose program serves them`);
let fd;
try {
  // Never through a link, and only a file of this user's that no one else can read.
  fd = fs.openSync(path.join(dir, `${name}.token`), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
} catch {
  noSession();
}
const tokenInfo = fs.fstatSync(fd);
if (!tokenInfo.isFile() || tokenInfo.uid !== process.getuid() || (tokenInfo.mode & 0o077) !== 0) {
  fail(`the deploy session's token ${path.join(dir, `${name}.token`)} is not a private file of this user: remove it and run \`pulumi up\` again`);
}
const token = fs.readFileSync(fd, "utf8").trim();
fs.closeSync(fd);
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
