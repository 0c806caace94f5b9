#!/usr/bin/env node
"use strict";
/**
 * Where `pgstack apply --all` spends its time, measured inside one fresh
 * process: node boot; checking and loading the CLI bundle the shipped launcher
 * (infra/bin/pgstack.js) keeps in .pgstack/cache; for comparison, tsx and the
 * compilation of pgstack's own modules (the launcher's fallback, and the only
 * path before issue #6); discovering and checksumming the migrations; loading
 * the WebAssembly SQL parser; splitting every file into statements; then the
 * whole apply (database work included) through applyMigrations.
 *
 *   DATABASE_URL=... node bench/lib/phases.js <migrations dir>
 *
 * Prints one JSON object (milliseconds). Plain JavaScript so that it can time
 * the loading of tsx itself. Run `node infra/bin/pgstack.js --help` once
 * before, so the bundle is fresh.
 */
const { performance } = require("node:perf_hooks");
// As infra/bin/pgstack.js does: the WebAssembly parser stays on V8's baseline compiler.
require("node:v8").setFlagsFromString("--liftoff-only");
const path = require("node:path");

const bootMs = performance.now();
const lap = (() => {
  let last = performance.now();
  return () => {
    const now = performance.now();
    const d = now - last;
    last = now;
    return d;
  };
})();

async function main() {
  const dir = process.argv[2];
  const url = process.env.DATABASE_URL;
  const out = { bootMs };
  const root = path.resolve(__dirname, "..", "..");
  lap();
  // What the shipped launcher does: check the cached bundle is fresh (hash
  // every input) and load it, npm packages included. Then, for the phases
  // below, the same code through tsx: only the compilation of pgstack's own
  // modules is left to time there (the packages are loaded already).
  const fs = require("node:fs");
  const crypto = require("node:crypto");
  const bundle = path.join(root, ".pgstack", "cache", "cli.js");
  const text = fs.readFileSync(bundle, "utf8");
  const manifest = JSON.parse(text.slice("/*pgstack-bundle ".length, text.indexOf("*/\n")));
  for (const [file, hash] of Object.entries(manifest.inputs)) {
    if (crypto.createHash("sha1").update(fs.readFileSync(path.join(root, file))).digest("hex") !== hash) throw new Error(`stale bundle: ${file}`);
  }
  require(bundle);
  out.bundleMs = lap();
  require("tsx/cjs");
  out.tsxMs = lap();
  require(path.join(root, "infra/cli/main.ts"));
  out.cliModulesMs = lap();
  const { discoverMigrations } = require(path.join(root, "infra/core/migrations/discover.ts"));
  const { loadSqlParser, splitStatements } = require(path.join(root, "infra/core/migrations/sql.ts"));
  const { applyMigrations } = require(path.join(root, "infra/core/migrations/runner.ts"));
  const { resolveSettings } = require(path.join(root, "infra/core/settings.ts"));
  const { silentLogger } = require(path.join(root, "infra/core/logger.ts"));
  lap();
  const migrations = await discoverMigrations(dir);
  out.discoverMs = lap();
  await loadSqlParser();
  out.parserLoadMs = lap();
  let statements = 0;
  for (const m of migrations) statements += splitStatements(m.sql, m.name).length;
  out.splitMs = lap();
  out.statements = statements;
  out.migrations = migrations.length;
  if (url) {
    const settings = resolveSettings({ url, dir });
    const result = await applyMigrations(settings, { kind: "all" }, silentLogger);
    out.applyMs = lap();
    out.applied = result.applied.length;
    // The database's share: the in-process apply minus what it repeats of the above.
    out.dbMs = out.applyMs - out.discoverMs - out.splitMs;
  }
  out.totalMs = performance.now();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exitCode = 1;
});
