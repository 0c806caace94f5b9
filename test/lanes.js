#!/usr/bin/env node
// `npm test`: the suite as two jest processes at once, each --runInBand with
// its own throwaway cluster (globalSetup):
//   e2e   test/e2e/* and unit/package-files.test.ts (about 1550 s one after the other)
//   rest  test/unit (but package-files), test/integration (about 1450 s)
// Most of a test's time is spent waiting (on the pulumi CLI, a server, a
// child process), so the two lanes overlap on two cores.
// Within a lane files still run one at a time: the timing-sensitive tests
// (zero-downtime's request rate, kill tests) never share a process with
// another test of their lane. e2e/package.test.ts and unit/package-files.test.ts
// both rebuild dist/ in the checkout (npm pack runs `prepare`), so they are in
// the same lane: they must never run at the same time.
// PGSTACK_TEST_SERIAL=1, test paths or -t on the command line: one plain
// `jest --runInBand` instead.
// --outputFile=<f> (with --json): each lane writes its own, merged into <f>.
"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { spawn } = require("node:child_process");

const root = path.resolve(__dirname, "..");
const jest = require.resolve("jest/bin/jest", { paths: [root] });
const args = process.argv.slice(2);
/** The e2e lane's files (the rest lane ignores them). */
const E2E = "/test/(e2e/|unit/package-files\\.test\\.ts$)";

const FLAGS_WITH_VALUE = new Set(["-t", "--testNamePattern", "--outputFile", "--testPathPatterns", "--selectProjects", "--shard", "--config", "-c"]);
const selects = args.some((a, i) => (!a.startsWith("-") && !FLAGS_WITH_VALUE.has(args[i - 1])) || /^(-t|--testNamePattern|--testPathPatterns|--shard|--onlyChanged|-o|--findRelatedTests|--listTests)(=|$)/.test(a));
// --json without --outputFile prints the report on stdout: one process, so it stays one JSON document.
const jsonToStdout = args.includes("--json") && !args.some((a) => a.startsWith("--outputFile"));
if (require.main !== module) module.exports = { merge };
else if (selects || jsonToStdout || process.env.PGSTACK_TEST_SERIAL === "1") run([jest, "--runInBand", ...args], "").then((code) => process.exit(code));
else lanes().then((code) => process.exit(code));

async function lanes() {
  let outputFile;
  const common = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--outputFile") outputFile = args[++i];
    else if (a.startsWith("--outputFile=")) outputFile = a.slice("--outputFile=".length);
    else common.push(a);
  }
  const tmp = outputFile ? fs.mkdtempSync(path.join(os.tmpdir(), "pgstack-lanes-")) : undefined;
  const out = (lane) => (tmp ? [`--outputFile=${path.join(tmp, `${lane}.json`)}`] : []);
  const codes = await Promise.all([
    run([jest, "--runInBand", ...common, ...out("e2e"), `--testPathPatterns=${E2E}`], "[e2e] "),
    run([jest, "--runInBand", ...common, ...out("rest"), `--testPathIgnorePatterns=${E2E}`], "[rest] "),
  ]);
  if (outputFile) {
    const results = ["e2e", "rest"].map((lane) => {
      try {
        return JSON.parse(fs.readFileSync(path.join(tmp, `${lane}.json`), "utf8"));
      } catch {
        return undefined; // that lane died before writing: its exit code says so
      }
    });
    const reports = results.filter(Boolean);
    if (reports.length > 0) fs.writeFileSync(outputFile, JSON.stringify(merge(reports)));
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return codes.find((c) => c !== 0) ?? 0;
}

/** One jest --json report of both lanes: counts added, test results concatenated. */
function merge(reports) {
  const merged = { ...reports[0], testResults: [], success: reports.length === 2 };
  for (const key of Object.keys(merged)) if (typeof merged[key] === "number" && key !== "startTime") merged[key] = 0;
  for (const r of reports) {
    for (const [key, value] of Object.entries(r)) if (typeof value === "number" && key !== "startTime") merged[key] += value;
    merged.startTime = Math.min(merged.startTime, r.startTime);
    merged.success = merged.success && r.success;
    merged.wasInterrupted = Boolean(merged.wasInterrupted || r.wasInterrupted);
    merged.testResults.push(...r.testResults);
  }
  return merged;
}

/** Runs node with `argv`, each output line prefixed with `prefix`; resolves with its exit code. */
function run(argv, prefix) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, { cwd: root, stdio: prefix ? ["ignore", "pipe", "pipe"] : "inherit" });
    const forward = (signal) => child.kill(signal);
    process.on("SIGINT", forward).on("SIGTERM", forward);
    if (prefix) {
      for (const [from, to] of [
        [child.stdout, process.stdout],
        [child.stderr, process.stderr],
      ]) {
        let rest = "";
        from.setEncoding("utf8");
        from.on("data", (d) => {
          const lines = (rest + d).split("\n");
          rest = lines.pop();
          if (lines.length) to.write(lines.map((l) => prefix + l + "\n").join(""));
        });
        from.on("end", () => rest && to.write(prefix + rest + "\n"));
      }
    }
    child.on("close", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
