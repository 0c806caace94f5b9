#!/usr/bin/env node
// The migration step's client for machines without Go: the same as
// infra/bin/step/main.go (read that first), in plain Node.js (no bundle, no
// dependencies), so it costs a Node.js start per step but nothing more.
"use strict";
const crypto = require("node:crypto");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

function fail(message) {
  process.stderr.write(`pgstack-step: ${message}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--version") {
  process.stdout.write("pgstack-step\n");
  process.exit(0);
}
const stack = process.env.PGSTACK_STACK;
if (!stack) fail("a migration step runs inside `pulumi up` of its stack ($PGSTACK_STACK is not set); to apply a migration by hand run `node infra/bin/pgstack.js apply <name>`");
const wd = fs.realpathSync(process.cwd());
const dir = path.join(process.env.XDG_RUNTIME_DIR || os.tmpdir(), `pgstack-${process.getuid()}`);
const info = fs.lstatSync(dir, { throwIfNoEntry: false });
if (!info || !info.isDirectory() || (info.mode & 0o777) !== 0o700 || info.uid !== process.getuid()) {
  fail(`no deploy session for stack '${stack}': ${dir} is not a 0700 directory of this user`);
}
const name = crypto.createHash("sha256").update(["pgstack-deploy-v2", wd, stack].join("\n")).digest("hex").slice(0, 32);
let token;
try {
  token = fs.readFileSync(path.join(dir, `${name}.token`), "utf8").trim();
} catch {
  fail(`no deploy session for stack '${stack}' in ${wd}: the migration steps run only inside \`pulumi up\`, whose program serves them`);
}
const conn = net.connect(path.join(dir, `${name}.sock`));
let buffered = "";
let answered = false;
conn.on("error", (err) => fail(`no deploy session for stack '${stack}' in ${wd} (${err.message}): the update's program is gone; run \`pulumi up\` again`));
conn.on("connect", () => conn.write(JSON.stringify({ token, argv: args }) + "\n"));
conn.on("data", (chunk) => {
  buffered += chunk.toString("utf8");
  for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
    const frame = JSON.parse(buffered.slice(0, i));
    buffered = buffered.slice(i + 1);
    if (frame.o !== undefined) process.stdout.write(frame.o);
    else if (frame.e !== undefined) process.stderr.write(frame.e);
    else if (frame.x !== undefined) {
      answered = true;
      process.exitCode = frame.x;
      conn.end();
    }
  }
});
conn.on("close", () => {
  if (!answered) fail("the deploy session ended before this step finished (the update was interrupted); the database rolled back what the step had not committed");
});
