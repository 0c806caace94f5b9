/**
 * lock: a migration that adds a column with a default and an index to
 * pgbench_accounts while pgbench writes to it, and while a long-running reader
 * holds a lock on it (so the migration's ACCESS EXCLUSIVE request queues, and
 * every pgbench client queues behind it).
 *
 *   npm run bench -- lock [--rounds 3] [--scale 10] [--duration 25]
 *
 * Timeline of one run: t=0 pgbench -c 8 -j 2 starts (tpcb-like: it UPDATEs
 * pgbench_accounts); t=5 s a reader opens a transaction, SELECTs from
 * pgbench_accounts and sleeps 8 s; t=6 s `pgstack apply --all` starts.
 * Modes, interleaved round by round:
 *   baseline      no migration (the reader only): the load's own worst latency
 *   no-timeout    pgstack --lock-timeout 0: plain PostgreSQL behaviour
 *   default       pgstack's defaults: lock_timeout 5000 ms, 3 retries, 1000 ms first back-off (doubling)
 *   short         pgstack --lock-timeout 300 --retries 8 --retry-delay 500
 *   short+concurrently  the same flags, the change split in two migrations with the index
 *                 built by CREATE INDEX CONCURRENTLY (-- pgstack:no-transaction)
 * "Longest time any client was blocked" = the largest per-transaction latency
 * in pgbench's -l log.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { BenchCluster, serverVersion, startBenchCluster } from "./lib/cluster";
import { fmtMs, fmtRatio, intArg, requireTools, log, machineInfo, markdownTable, median, medianRatio, REPO, rotate, runTimed, Timed, WORK, writeResult } from "./lib/common";

const PGSTACK_BIN = path.join(REPO, "infra", "bin", "pgstack.js");
const READER_START_MS = 5_000;
const READER_HOLD_S = 8;
const MIGRATION_START_MS = 6_000;

const MIGRATION_SQL = `-- AlterTable
ALTER TABLE "pgbench_accounts" ADD COLUMN "note" TEXT DEFAULT 'x';

-- CreateIndex
CREATE INDEX "pgbench_accounts_note_idx" ON "pgbench_accounts"("note");
`;

/** The same change as two migrations, the index built without blocking writes (what `pgstack lint` asks for). */
const CONCURRENT_SQL = [
  `-- AlterTable
ALTER TABLE "pgbench_accounts" ADD COLUMN "note" TEXT DEFAULT 'x';
`,
  `-- pgstack:no-transaction
-- CreateIndex
CREATE INDEX CONCURRENTLY "pgbench_accounts_note_idx" ON "pgbench_accounts"("note");
`,
];

interface Mode {
  name: string;
  /** pgstack flags; undefined = no migration. */
  flags?: string[];
  /** Use the two-migration, CREATE INDEX CONCURRENTLY variant. */
  concurrently?: boolean;
}

const MODES: Mode[] = [
  { name: "baseline" },
  { name: "no-timeout", flags: ["--lock-timeout", "0"] },
  { name: "default", flags: [] },
  { name: "short", flags: ["--lock-timeout", "300", "--retries", "8", "--retry-delay", "500"] },
  { name: "short+concurrently", flags: ["--lock-timeout", "300", "--retries", "8", "--retry-delay", "500"], concurrently: true },
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface RunResult {
  maxLatencyMs: number;
  p99Ms: number;
  over1s: number;
  transactions: number;
  tps: number;
  migrationMs: number | null;
  attempts: number | null;
  /** When the slowest transaction started, ms after pgbench's first transaction. */
  worstStartsAtMs: number;
}

async function pgbenchLatencies(prefix: string): Promise<{ latUs: number[]; endsUs: number[] }> {
  const dir = path.dirname(prefix);
  const base = path.basename(prefix);
  const latUs: number[] = [];
  const endsUs: number[] = [];
  for (const f of await fs.readdir(dir)) {
    if (!f.startsWith(base + ".")) continue;
    const text = await fs.readFile(path.join(dir, f), "utf8");
    for (const line of text.split("\n")) {
      // client_id transaction_no time script_no time_epoch time_us
      const p = line.trim().split(/\s+/);
      if (p.length < 6) continue;
      latUs.push(Number(p[2]));
      endsUs.push(Number(p[4]) * 1e6 + Number(p[5]));
    }
  }
  return { latUs, endsUs };
}

async function resetSchema(cluster: BenchCluster): Promise<void> {
  await cluster.query(`DROP INDEX IF EXISTS pgbench_accounts_note_idx`, [], "bench");
  await cluster.query(`ALTER TABLE pgbench_accounts DROP COLUMN IF EXISTS note`, [], "bench");
  await cluster.query(`DROP TABLE IF EXISTS "_prisma_migrations"`, [], "bench");
  await cluster.query(`VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history`, [], "bench");
  await cluster.query(`CHECKPOINT`);
}

async function runOnce(cluster: BenchCluster, mode: Mode, dirs: { plain: string; concurrently: string }, logDir: string, tag: string, duration: number): Promise<RunResult> {
  await resetSchema(cluster);
  const prefix = path.join(logDir, tag);
  const env = cluster.pgEnv("bench");
  const bench = runTimed("pgbench", ["-n", "-c", "8", "-j", "2", "-T", String(duration), "-l", `--log-prefix=${prefix}`], {
    env,
    memory: false,
  });
  const t0 = Date.now();
  const reader = (async () => {
    await sleep(READER_START_MS);
    const client = new Client({ connectionString: cluster.url("bench"), application_name: "bench-reader" });
    await client.connect();
    try {
      await client.query("BEGIN");
      await client.query("SELECT count(*) FROM pgbench_accounts WHERE abalance > 0");
      await client.query(`SELECT pg_sleep(${READER_HOLD_S})`);
      await client.query("COMMIT");
    } finally {
      await client.end();
    }
  })();
  let migration: Timed | undefined;
  if (mode.flags) {
    await sleep(Math.max(0, MIGRATION_START_MS - (Date.now() - t0)));
    const dir = mode.concurrently ? dirs.concurrently : dirs.plain;
    migration = await runTimed("node", [PGSTACK_BIN, "apply", "--all", "--json", "--dir", dir, ...mode.flags], {
      env: { ...process.env, DATABASE_URL: cluster.url("bench") },
    });
  }
  await reader;
  const pgbench = await bench;
  const { latUs, endsUs } = await pgbenchLatencies(prefix);
  if (latUs.length === 0) throw new Error(`pgbench wrote no per-transaction log:\n${pgbench.stderr}`);
  const sorted = [...latUs].sort((a, b) => a - b);
  const worst = latUs.indexOf(sorted[sorted.length - 1]);
  const firstStart = Math.min(...endsUs.map((e, i) => e - latUs[i]));
  let attempts: number | null = null;
  if (migration) {
    const out = JSON.parse(migration.stdout.trim().split("\n").pop() ?? "{}") as { applied?: { attempts: number }[] };
    attempts = out.applied ? out.applied.reduce((sum, a) => sum + a.attempts, 0) : null;
  }
  return {
    maxLatencyMs: sorted[sorted.length - 1] / 1000,
    p99Ms: sorted[Math.floor(sorted.length * 0.99)] / 1000,
    over1s: latUs.filter((l) => l > 1e6).length,
    transactions: latUs.length,
    tps: latUs.length / duration,
    migrationMs: migration ? migration.ms : null,
    attempts,
    worstStartsAtMs: (endsUs[worst] - latUs[worst] - firstStart) / 1000,
  };
}

export async function lockBench(argv: string[]): Promise<void> {
  requireTools(["pgbench"]);
  const rounds = intArg(argv, "--rounds", 3);
  const scale = intArg(argv, "--scale", 10);
  const duration = intArg(argv, "--duration", 25);
  const work = path.join(WORK, "lock");
  await fs.rm(work, { recursive: true, force: true });
  const dirs = { plain: path.join(work, "migrations"), concurrently: path.join(work, "migrations-concurrently") };
  await fs.mkdir(path.join(dirs.plain, "20250101000000_add_account_note"), { recursive: true });
  await fs.writeFile(path.join(dirs.plain, "20250101000000_add_account_note", "migration.sql"), MIGRATION_SQL);
  for (const [i, sql] of CONCURRENT_SQL.entries()) {
    const folder = path.join(dirs.concurrently, `2025010100000${i}_${i === 0 ? "add_account_note" : "index_account_note"}`);
    await fs.mkdir(folder, { recursive: true });
    await fs.writeFile(path.join(folder, "migration.sql"), sql);
  }
  const logDir = path.join(work, "logs");
  await fs.mkdir(logDir, { recursive: true });

  const cluster = await startBenchCluster("lock");
  try {
    const pgVersion = await serverVersion(cluster);
    await cluster.query("CREATE DATABASE bench");
    log(`pgbench -i -s ${scale}`);
    await runTimed("pgbench", ["-i", "-q", "-s", String(scale)], { env: cluster.pgEnv("bench"), memory: false });

    const results: Record<string, RunResult[]> = {};
    for (let round = 0; round < rounds; round++) {
      const order = rotate(MODES, round);
      log(`round ${round + 1}/${rounds}: ${order.map((m) => m.name).join(", ")}`);
      for (const mode of order) {
        const r = await runOnce(cluster, mode, dirs, logDir, `r${round}-${mode.name}`, duration);
        (results[mode.name] ??= []).push(r);
        log(
          `  ${mode.name}: max latency ${fmtMs(r.maxLatencyMs)} (at t=${(r.worstStartsAtMs / 1000).toFixed(1)} s), p99 ${fmtMs(r.p99Ms)}, ` +
            `${r.over1s} tx > 1 s, ${r.tps.toFixed(0)} tps${r.migrationMs !== null ? `, migration ${fmtMs(r.migrationMs)} in ${r.attempts} attempt(s)` : ""}`,
        );
      }
    }

    const col = (name: string, k: keyof RunResult) => results[name].map((r) => Number(r[k] ?? NaN));
    const table = markdownTable(
      ["mode", "longest client block (max tx latency)", "vs no-timeout", "p99 latency", "tx > 1 s", "tps vs baseline", "migration total time", "vs no-timeout", "attempts"],
      MODES.map((m) => [
        m.name,
        fmtMs(median(col(m.name, "maxLatencyMs"))),
        fmtRatio(medianRatio(col(m.name, "maxLatencyMs"), col("no-timeout", "maxLatencyMs"))),
        fmtMs(median(col(m.name, "p99Ms"))),
        String(median(col(m.name, "over1s"))),
        fmtRatio(medianRatio(col(m.name, "tps"), col("baseline", "tps"))),
        m.flags ? fmtMs(median(col(m.name, "migrationMs"))) : "-",
        m.flags ? fmtRatio(medianRatio(col(m.name, "migrationMs"), col("no-timeout", "migrationMs"))) : "-",
        m.flags ? String(median(col(m.name, "attempts"))) : "-",
      ]),
    );
    const summary =
      `longest client block: default ${fmtRatio(medianRatio(col("default", "maxLatencyMs"), col("no-timeout", "maxLatencyMs")))}, ` +
      `short ${fmtRatio(medianRatio(col("short", "maxLatencyMs"), col("no-timeout", "maxLatencyMs")))}, ` +
      `short+concurrently ${fmtRatio(medianRatio(col("short+concurrently", "maxLatencyMs"), col("no-timeout", "maxLatencyMs")))} of no-timeout; ` +
      `migration time: default ${fmtRatio(medianRatio(col("default", "migrationMs"), col("no-timeout", "migrationMs")))}, ` +
      `short ${fmtRatio(medianRatio(col("short", "migrationMs"), col("no-timeout", "migrationMs")))}, ` +
      `short+concurrently ${fmtRatio(medianRatio(col("short+concurrently", "migrationMs"), col("no-timeout", "migrationMs")))} of no-timeout`;
    const result = {
      benchmark: "lock",
      generatedAt: new Date().toISOString(),
      machine: machineInfo({ server: pgVersion, pgbench: (await runTimed("pgbench", ["--version"], { memory: false })).stdout.trim() }),
      setup: {
        scale,
        durationS: duration,
        clients: 8,
        threads: 2,
        readerStartS: READER_START_MS / 1000,
        readerHoldS: READER_HOLD_S,
        migrationStartS: MIGRATION_START_MS / 1000,
        migration: MIGRATION_SQL,
        migrationConcurrently: CONCURRENT_SQL,
        modes: MODES,
      },
      rounds,
      summary,
      raw: results,
      table,
    };
    const file = await writeResult("lock", result);
    process.stdout.write(`\n## lock (pgbench -s ${scale}, -c 8, ${rounds} rounds, medians)\n\n${table}\n\n${summary}\n\nwrote ${path.relative(REPO, file)}\n`);
  } finally {
    await cluster.destroy();
  }
}
