#!/usr/bin/env node
// `prepare` (npm pack, npm install from a git URL, and npm ci in a checkout):
// what an application that installs pgstack runs, built
// once here, since nothing may be built or written inside node_modules later:
// - dist/infra/**: the components as JavaScript and .d.ts (package.json main
//   and types; Pulumi's TypeScript support skips node_modules);
// - dist/cli.js and dist/scripts/*.js: the CLI and the npm scripts, each one
//   bundle (npm packages stay external), found by infra/bin/pgstack.js when the
//   TypeScript sources are not there. Their __dirname is dist/, from which the
//   package is found by walking up (core/project.ts packageDir), never an
//   absolute path of the machine that packed it.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { spawnSync } = require("node:child_process");

const root = path.resolve(__dirname, "..", "..");
const dist = path.join(root, "dist");

fs.rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [require.resolve("typescript/bin/tsc", { paths: [root] }), "-p", "tsconfig.package.json"], { cwd: root, stdio: "inherit" });
if (tsc.status !== 0) {
  process.stderr.write("pgstack: the package build failed: fix the TypeScript errors above.\n");
  process.exit(1);
}

const esbuild = require(require.resolve("esbuild", { paths: [root, path.dirname(require.resolve("tsx/package.json", { paths: [root] }))] }));
const entries = { cli: "infra/cli/main.ts" };
for (const name of ["dev", "preview", "destroy", "pulumi"]) entries[`scripts/${name}`] = `infra/scripts/${name}.ts`;
entries["scripts/rollback"] = "infra/scripts/rollback-main.ts";
esbuild.buildSync({
  absWorkingDir: root,
  entryPoints: entries,
  outdir: dist,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  packages: "external",
  logLevel: "warning",
});
