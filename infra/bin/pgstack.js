#!/usr/bin/env node
"use strict";
// The CLI is TypeScript and `npx pgstack` works straight after `npm ci`, with
// no build step. Compiling every module with tsx at every start costs more
// than the rest of a short command (each migration resource of a `pulumi up`
// is one), so the first run bundles infra/cli/main.ts with esbuild (the
// compiler tsx itself uses) into .pgstack/cache/cli.js (git-ignored), and later
// runs load that bundle as long as every file it was built from (and
// tsconfig.json) has the same content; when one changed, the bundle is built
// again. If it cannot be built or written (no esbuild, read-only checkout),
// tsx compiles the TypeScript on the fly as before. PGSTACK_NO_BUNDLE=1 always
// uses tsx.
//
// The SQL parser is PostgreSQL's own, compiled to WebAssembly (1.7 MB). V8
// compiles it with its baseline compiler (Liftoff), then recompiles the hot
// functions with TurboFan on background threads: for a command that parses a
// few hundred files and exits, that second compilation costs more CPU (about
// 0.3 s on 300 migrations) and memory (about 45 MiB) than it ever saves.
// (Every function of libpg-query 18 compiles with Liftoff: checked with
// `node --liftoff-only --no-wasm-lazy-compilation`.)
require("node:v8").setFlagsFromString("--liftoff-only");

const fs = require("node:fs");
const path = require("node:path");
const crypto = require("node:crypto");

const ROOT = path.resolve(__dirname, "..", "..");
const ENTRY = path.join(ROOT, "infra", "cli", "main.ts");
const BUNDLE = path.join(ROOT, ".pgstack", "cache", "cli.js");
/** Bump when the way the bundle is built changes. */
const FORMAT = 1;
const HEADER = "/*pgstack-bundle ";

const digest = (file) => crypto.createHash("sha1").update(fs.readFileSync(path.join(ROOT, file))).digest("hex");

/** The bundle when it was built from the files as they are now, else undefined. */
function freshBundle() {
  try {
    const text = fs.readFileSync(BUNDLE, "utf8");
    if (!text.startsWith(HEADER)) return undefined;
    const manifest = JSON.parse(text.slice(HEADER.length, text.indexOf("*/\n")));
    if (manifest.format !== FORMAT || manifest.root !== ROOT) return undefined;
    for (const [file, hash] of Object.entries(manifest.inputs)) {
      if (digest(file) !== hash) return undefined;
    }
    return BUNDLE;
  } catch {
    // missing, unreadable, or an input is gone
    return undefined;
  }
}

/** esbuild from the project's node_modules, else the one tsx depends on. */
function esbuild() {
  const places = [() => ROOT, () => path.dirname(require.resolve("tsx/package.json", { paths: [ROOT] }))];
  for (const place of places) {
    try {
      return require(require.resolve("esbuild", { paths: [place()] }));
    } catch {
      // try the next place
    }
  }
  throw new Error("esbuild not found");
}

/** Bundles the CLI (npm packages stay external, loaded from node_modules) and writes it atomically. */
async function buildBundle() {
  const loaders = { ".ts": "ts", ".mts": "ts", ".cts": "ts", ".tsx": "tsx", ".js": "js", ".cjs": "js", ".mjs": "js" };
  const result = await esbuild().build({
    absWorkingDir: ROOT,
    entryPoints: [ENTRY],
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    packages: "external",
    write: false,
    metafile: true,
    logLevel: "silent",
    plugins: [
      {
        // Modules that locate files from their own folder (__dirname) keep
        // doing so from their source folder, not from the bundle's.
        name: "pgstack-dirname",
        setup(build) {
          build.onLoad({ filter: /\.[cm]?[jt]sx?$/ }, (args) => {
            if (args.path.split(path.sep).includes("node_modules")) return undefined;
            const contents = fs
              .readFileSync(args.path, "utf8")
              .replace(/\b__dirname\b/g, JSON.stringify(path.dirname(args.path)))
              .replace(/\b__filename\b/g, JSON.stringify(args.path));
            return { contents, loader: loaders[path.extname(args.path)] ?? "ts", resolveDir: path.dirname(args.path) };
          });
        },
      },
    ],
  });
  const inputs = {};
  for (const file of [...Object.keys(result.metafile.inputs), "tsconfig.json"]) {
    if (fs.existsSync(path.join(ROOT, file))) inputs[file] = digest(file);
  }
  const header = `${HEADER}${JSON.stringify({ format: FORMAT, root: ROOT, inputs })}*/\n`;
  fs.mkdirSync(path.dirname(BUNDLE), { recursive: true });
  const temp = `${BUNDLE}.${process.pid}.tmp`;
  fs.writeFileSync(temp, header + result.outputFiles[0].text);
  fs.renameSync(temp, BUNDLE);
  return BUNDLE;
}

/**
 * Installed from its package (npm pack), pgstack has no TypeScript sources but
 * the bundles built when it was packed (dist/, infra/scripts/build-package.js):
 * their __dirname lookups find the package from dist/, and nothing is ever
 * written into the package (node_modules may be read-only).
 */
const PACKED = !fs.existsSync(ENTRY);

/** The npm scripts of this repository, as `pgstack <script>` for an application that installed pgstack. */
const SCRIPTS = new Set(["dev", "preview", "rollback", "destroy", "pulumi"]);

function runScript(name) {
  process.argv.splice(2, 1);
  if (PACKED) return require(path.join(ROOT, "dist", "scripts", `${name}.js`));
  require("tsx/cjs");
  return require(`../scripts/${name === "rollback" ? "rollback-main" : name}.ts`);
}

async function loadCli() {
  if (PACKED) return require(path.join(ROOT, "dist", "cli.js"));
  if (process.env.PGSTACK_NO_BUNDLE !== "1") {
    try {
      return require(freshBundle() ?? (await buildBundle()));
    } catch {
      // fall back to compiling on the fly
    }
  }
  require("tsx/cjs");
  return require("../cli/main.ts");
}

if (SCRIPTS.has(process.argv[2])) runScript(process.argv[2]);
else loadCli()
  .then((cli) => cli.run(process.argv.slice(2)))
  .then((code) => {
    process.exitCode = code;
  });
