/**
 * verify: `pgstack verify` on a database migrated with the 200-migration
 * generated history, the first run (the applied history replayed on a
 * throwaway local embedded PostgreSQL, then compared with migra) and a cached
 * one (the expected schema read from .pgstack/cache/verify), against
 * `pgstack apply --all` of the same history on an empty database (issue 25).
 *
 *   npm run bench -- verify [--rounds 3] [--count 200]
 *
 * All three through the CLI as shipped (node infra/bin/pgstack.js), in the
 * order a deploy meets them, each round on a fresh database and an empty
 * cache; verify without its snapshot check (no snapshot here).
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { startBenchCluster } from "./lib/cluster";
import { fmtMs, fmtRatio, intArg, log, machineInfo, markdownTable, median, medianRatio, REPO, runTimed, WORK, writeResult } from "./lib/common";
import { generateHistory, writeHistory } from "./lib/generate";

const PGSTACK_BIN = path.join(REPO, "infra", "bin", "pgstack.js");
const SEED = 20250101;

export async function verifyBench(argv: string[]): Promise<void> {
  const rounds = intArg(argv, "--rounds", 3);
  const count = intArg(argv, "--count", 200);
  const work = path.join(WORK, "verify");
  await fs.rm(work, { recursive: true, force: true });
  const layouts = await writeHistory(path.join(work, "history"), generateHistory({ count, seed: SEED }));
  const cluster = await startBenchCluster("verify");
  // Load the CLI bundle once, outside the timings.
  await runTimed("node", [PGSTACK_BIN, "--help"], { memory: false });
  const times: Record<string, number[]> = { apply: [], first: [], cached: [] };
  try {
    for (let round = 1; round <= rounds; round++) {
      const db = `app_${round}`;
      const cache = path.join(work, `cache_${round}`);
      await cluster.query(`CREATE DATABASE ${db}`);
      const env = { ...process.env, DATABASE_URL: cluster.url(db) };
      const verify = () => runTimed("node", [PGSTACK_BIN, "verify", "--dir", layouts.prismaDir, "--no-snapshot", "--json", "--cache-dir", cache], { env, memory: false });
      // In the order a deploy meets them: apply --all on the empty database, verify (replaying), verify again (cached).
      const applied = await runTimed("node", [PGSTACK_BIN, "apply", "--all", "--dir", layouts.prismaDir], { env, memory: false });
      times.apply.push(applied.ms);
      log(`round ${round}/${rounds}: apply --all ${fmtMs(applied.ms)}`);
      const t = await verify();
      const drift = t.stdout.trim().split("\n").map((l) => JSON.parse(l) as { name: string; status: string; details: { cached: boolean; objects: unknown[] } }).find((x) => x.name === "drift")!;
      if (drift.status !== "pass" || drift.details.cached || drift.details.objects.length !== 0) throw new Error(`the first verify did not replay and pass: ${t.stdout}`);
      times.first.push(t.ms);
      log(`round ${round}/${rounds}: verify (replay) ${fmtMs(t.ms)}`);
      const c = await verify();
      if (!c.stdout.includes('"cached":true')) throw new Error(`the second verify did not use the cache: ${c.stdout}`);
      times.cached.push(c.ms);
      log(`round ${round}/${rounds}: verify (cached) ${fmtMs(c.ms)}`);
      await cluster.query(`DROP DATABASE ${db}`);
    }
  } finally {
    await cluster.destroy();
  }
  const rows = [
    ["pgstack apply --all (empty database)", fmtMs(median(times.apply)), "1.00x"],
    ["pgstack verify, first run (replay on a throwaway local server)", fmtMs(median(times.first)), fmtRatio(medianRatio(times.first, times.apply))],
    ["pgstack verify, cached expected schema", fmtMs(median(times.cached)), fmtRatio(medianRatio(times.cached, times.apply))],
  ];
  const table = markdownTable(["what", `median of ${rounds}`, "vs apply --all"], rows);
  process.stdout.write(`\n${count} migrations (${layouts.statements} statements)\n\n${table}\n`);
  const file = await writeResult("verify", { machine: machineInfo(), count, statements: layouts.statements, rounds, times, table });
  log(`wrote ${file}`);
}
