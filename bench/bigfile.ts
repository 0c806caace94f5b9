/**
 * bigfile: what issue 10 measured: one migration of 60,000 statements (about
 * 5 MB, a data migration), and the 300-migration history of `bench apply`,
 * applied by pgstack now and by pgstack before issue 10, in the same run.
 *
 *   npm run bench -- bigfile [--statements 60000] [--rounds 3] [--before <git ref>] [--before-cap <seconds>]
 *   npm run bench -- bigfile --preview [--statements 60000] [--rounds 2] [--before <git ref> | --now-only]
 *
 * - split: splitStatements alone, in this process, on files of 7,500 to
 *   60,000 statements, current code versus the code at --before (quadratic:
 *   the before code is measured only up to the size it finishes within the
 *   cap, and its time at 60,000 statements extrapolated from the largest).
 * - apply: `pgstack apply --all` on a fresh database (plus psql -1 -f as the
 *   floor); the before CLI on the 60,000-statement file is stopped at
 *   --before-cap seconds and reported as "more than" that.
 * - --preview (issue 22): `pgstack lint` and `pgstack plan` on the big file
 *   against `apply --all` of it, interleaved in each round (time and peak
 *   RSS), by the current code and by the code at --before.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { startBenchCluster } from "./lib/cluster";
import { argValue, fmtMs, intArg, log, machineInfo, markdownTable, median, REPO, runTimed, WORK, writeResult } from "./lib/common";
import { ensureBefore } from "./lib/before";
import { generateHistory, writeHistory } from "./lib/generate";

/** The commit before issue 10's work. */
const BEFORE_ISSUE10 = "0d37e39";

function bigMigration(statements: number): string {
  const lines = [`CREATE TABLE "events" ("id" BIGINT PRIMARY KEY, "kind" TEXT NOT NULL, "payload" TEXT NOT NULL);`];
  for (let i = 1; i < statements; i++) {
    lines.push(`INSERT INTO "events" ("id", "kind", "payload") VALUES (${i}, 'kind_${i % 17}', '{"n": ${i}, "note": "row ${i} of a data migration é"}');`);
  }
  return lines.join("\n") + "\n";
}

type Split = (sql: string, name: string) => unknown[];

async function timeSplit(split: Split, sql: string): Promise<number> {
  const started = process.hrtime.bigint();
  split(sql, "big");
  return Number(process.hrtime.bigint() - started) / 1e6;
}

export async function bigfileBench(argv: string[]): Promise<void> {
  if (argv.includes("--preview")) return previewBench(argv);
  const statements = intArg(argv, "--statements", 60_000);
  const rounds = intArg(argv, "--rounds", 3);
  const capMs = intArg(argv, "--before-cap", 240) * 1000;
  const before = await ensureBefore(argValue(argv, "--before") ?? BEFORE_ISSUE10);
  const root = path.join(WORK, "bigfile");
  await fs.rm(root, { recursive: true, force: true });

  // 1. The splitter alone.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const now = require(path.join(REPO, "infra/core/migrations/sql.ts")) as { splitStatements: Split; loadSqlParser(): Promise<void> };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const old = require(path.join(WORK, "before", "infra/core/migrations/sql.ts")) as { splitStatements: Split; loadSqlParser(): Promise<void> };
  await now.loadSqlParser();
  await old.loadSqlParser();
  const sizes = [7_500, 15_000, 30_000, 60_000].filter((n) => n <= statements);
  const splitRows: (string | number)[][] = [];
  const split: Record<number, { nowMs: number; beforeMs: number | null }> = {};
  let lastBefore: { n: number; ms: number } | undefined;
  for (const n of sizes) {
    const sql = bigMigration(n);
    const nowMs = median(await Promise.all([0, 1, 2].map(() => timeSplit(now.splitStatements, sql))));
    // The before code is quadratic: stop at the first size whose predicted time exceeds the cap.
    const predicted = lastBefore ? lastBefore.ms * (n / lastBefore.n) ** 2 : 0;
    const beforeMs = predicted <= capMs ? await timeSplit(old.splitStatements, sql) : null;
    if (beforeMs !== null) lastBefore = { n, ms: beforeMs };
    split[n] = { nowMs, beforeMs };
    const extrapolated = beforeMs === null && lastBefore ? lastBefore.ms * (n / lastBefore.n) ** 2 : null;
    splitRows.push([
      n.toLocaleString("en"),
      `${(Buffer.byteLength(sql) / 1e6).toFixed(1)} MB`,
      fmtMs(nowMs),
      beforeMs !== null ? fmtMs(beforeMs) : `~${fmtMs(extrapolated!)} (extrapolated, n²)`,
    ]);
    log(`split ${n}: now ${fmtMs(nowMs)}, before ${beforeMs !== null ? fmtMs(beforeMs) : "skipped"}`);
  }

  // 2. apply --all end to end.
  const bigDir = path.join(root, "big");
  await fs.mkdir(path.join(bigDir, "20250101000000_events"), { recursive: true });
  const bigSql = bigMigration(statements);
  await fs.writeFile(path.join(bigDir, "20250101000000_events", "migration.sql"), bigSql);
  const history = await writeHistory(path.join(root, "history"), generateHistory({ count: 300, seed: 6 }));
  const cluster = await startBenchCluster("bigfile");
  const applyRows: (string | number)[][] = [];
  const results: Record<string, Record<string, number[] | string>> = {};
  try {
    let dbCounter = 0;
    const freshDb = async () => {
      const name = `b${dbCounter++}`;
      await cluster.query(`CREATE DATABASE ${name}`);
      return name;
    };
    const pgstack = (bin: string, dir: string) => async () => {
      const db = await freshDb();
      return runTimed(process.execPath, [bin, "apply", "--all", "--dir", dir], { env: { ...process.env, DATABASE_URL: cluster.url(db) }, memory: false });
    };
    const psql = (file: string) => async () => {
      const db = await freshDb();
      return runTimed("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", file], { env: cluster.pgEnv(db), memory: false });
    };
    const nowBin = path.join(REPO, "infra", "bin", "pgstack.js");
    const cases: [string, string, () => Promise<{ ms: number }>][] = [
      [`${statements.toLocaleString("en")}-statement file`, "psql -1 -f", psql(path.join(bigDir, "20250101000000_events", "migration.sql"))],
      [`${statements.toLocaleString("en")}-statement file`, "pgstack", pgstack(nowBin, bigDir)],
      ["300 migrations", "psql", async () => {
        const db = await freshDb();
        return runTimed("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", history.psqlScript], { env: cluster.pgEnv(db), memory: false });
      }],
      ["300 migrations", "pgstack", pgstack(nowBin, history.prismaDir)],
      ["300 migrations", "pgstack-before", pgstack(before.bin, history.prismaDir)],
    ];
    for (let round = 0; round < rounds; round++) {
      for (const [workload, name, run] of cases) {
        const { ms } = await run();
        ((results[workload] ??= {})[name] as number[] | undefined) ?? ((results[workload][name] = []) as number[]);
        (results[workload][name] as number[]).push(ms);
        log(`round ${round + 1}: ${workload} ${name} ${fmtMs(ms)}`);
      }
    }
    // The before CLI on the big file, once, stopped at the cap.
    const db = await freshDb();
    const capped = await new Promise<number | null>((resolve, reject) => {
      const started = process.hrtime.bigint();
      const child = spawn(process.execPath, [before.bin, "apply", "--all", "--dir", bigDir], {
        env: { ...process.env, DATABASE_URL: cluster.url(db) },
        stdio: "ignore",
      });
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve(null);
      }, capMs);
      child.on("error", reject);
      child.on("exit", () => {
        clearTimeout(timer);
        resolve(Number(process.hrtime.bigint() - started) / 1e6);
      });
    });
    results[`${statements.toLocaleString("en")}-statement file`]["pgstack-before"] = capped === null ? `> ${capMs / 1000} s (stopped)` : [capped];
    log(`before on the big file: ${capped === null ? "stopped at the cap" : fmtMs(capped)}`);
    for (const [workload, byName] of Object.entries(results)) {
      for (const [name, v] of Object.entries(byName)) applyRows.push([workload, name, typeof v === "string" ? v : fmtMs(median(v))]);
    }
  } finally {
    await cluster.destroy().catch(() => undefined);
  }

  const table1 = markdownTable(["statements", "file size", "split now", `split before (${before.commit.slice(0, 7)})`], splitRows);
  const table2 = markdownTable(["workload", "contender", `median of ${rounds}`], applyRows);
  process.stdout.write(`\n${table1}\n\n${table2}\n`);
  const file = await writeResult("bigfile", { machine: machineInfo(), before: before.commit, statements, rounds, split, apply: results });
  log(`wrote ${path.relative(REPO, file)}`);
}

/** Issue 22: lint and plan of the big file against apply of it, same rounds, now and at --before. */
async function previewBench(argv: string[]): Promise<void> {
  const statements = intArg(argv, "--statements", 60_000);
  const rounds = intArg(argv, "--rounds", 2);
  const before = await ensureBefore(argValue(argv, "--before") ?? "HEAD~1");
  const root = path.join(WORK, "bigfile-preview");
  await fs.rm(root, { recursive: true, force: true });
  const dir = path.join(root, "big");
  await fs.mkdir(path.join(dir, "20250101000000_events"), { recursive: true });
  await fs.writeFile(path.join(dir, "20250101000000_events", "migration.sql"), bigMigration(statements));
  const cluster = await startBenchCluster("bigfile-preview");
  const samples: Record<string, { ms: number[]; rssMb: number[] }> = {};
  try {
    let n = 0;
    const freshDb = async () => {
      const name = `p${n++}`;
      await cluster.query(`CREATE DATABASE ${name}`);
      return name;
    };
    const bins: Record<string, string> = { now: path.join(REPO, "infra", "bin", "pgstack.js"), ...(argv.includes("--now-only") ? {} : { before: before.bin }) };
    for (let round = 0; round < rounds; round++) {
      for (const [who, bin] of Object.entries(bins)) {
        for (const command of ["lint", "plan", "apply"] as const) {
          const db = await freshDb();
          const args = command === "apply" ? ["apply", "--all", "--dir", dir] : command === "plan" ? ["plan", "--dir", dir] : ["lint", "--dir", dir];
          const r = await runTimed(process.execPath, [bin, ...args], { env: { ...process.env, DATABASE_URL: cluster.url(db) }, check: command !== "lint" });
          const key = `${command} ${who}`;
          (samples[key] ??= { ms: [], rssMb: [] }).ms.push(r.ms);
          if (r.maxRssKb !== null) samples[key].rssMb.push(Math.round(r.maxRssKb / 1024));
          log(`round ${round + 1}: ${key} ${fmtMs(r.ms)}${r.maxRssKb !== null ? `, ${Math.round(r.maxRssKb / 1024)} MB` : ""}`);
        }
      }
    }
  } finally {
    await cluster.destroy().catch(() => undefined);
  }
  const rows: (string | number)[][] = [];
  for (const who of Object.keys(samples).some((k) => k.endsWith(" before")) ? ["now", "before"] : ["now"]) {
    const apply = median(samples[`apply ${who}`].ms);
    for (const command of ["lint", "plan", "apply"]) {
      const s = samples[`${command} ${who}`];
      rows.push([command, who === "now" ? "now" : `before (${before.commit.slice(0, 7)})`, fmtMs(median(s.ms)), `${(median(s.ms) / apply).toFixed(2)}x`, s.rssMb.length ? `${median(s.rssMb)} MB` : "-"]);
    }
  }
  const table = markdownTable(["command", "code", `median of ${rounds}`, "ratio to apply (same code)", "peak RSS"], rows);
  process.stdout.write(`\n${table}\n`);
  const file = await writeResult(`bigfile-preview-${statements}`, { machine: machineInfo(), before: before.commit, statements, rounds, samples });
  log(`wrote ${path.relative(REPO, file)}`);
}
