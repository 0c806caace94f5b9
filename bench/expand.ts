/**
 * expand: what a `pgstack split` of a column rename costs while it is in force.
 *
 *   npm run bench -- expand [--rounds 3] [--rows 1000000] [--backfill-rounds 2]
 *
 * 1. Inserts with the sync trigger active vs without: two tables of the same
 *    shape, `plain` and `synced`, the second with the expand part of a real
 *    split (the rename of "name" to "full_name") applied by pgstack. Each round,
 *    order rotated, both tables emptied, then per table: a bulk insert of
 *    200,000 rows (INSERT ... SELECT: the trigger's cost per row, nothing
 *    else), the same through the new column (the new version's writes), and
 *    5,000 single-row INSERTs from one client (what an application sends;
 *    synchronous_commit off, so each commit's fsync does not hide the cost).
 *    Ratio = synced time / plain time, median of the per-round ratios.
 * 2. The backfill of --rows rows: a fresh database per run with the expand part
 *    applied, then `pgstack apply` of the backfill migration (batches of
 *    10,000 rows) vs the same UPDATE as one statement (what `prisma migrate
 *    deploy` runs), interleaved. Rows per second, and the longest lock: the
 *    longest batch transaction for pgstack (from its output), the whole
 *    statement for the single UPDATE.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { startBenchCluster, serverVersion, type BenchCluster } from "./lib/cluster";
import { fmtMs, fmtRatio, intArg, log, machineInfo, markdownTable, median, medianRatio, REPO, rotate, runTimed, WORK, writeResult } from "./lib/common";

const PGSTACK_BIN = path.join(REPO, "infra", "bin", "pgstack.js");
const INIT = "20250101000000_init";
const SPLIT = "20250102000000_rename_name";

async function pgstackRun(cluster: BenchCluster, database: string, args: string[]) {
  return runTimed(process.execPath, [PGSTACK_BIN, ...args], { env: { ...process.env, DATABASE_URL: cluster.url(database) }, memory: false });
}

async function withSession<T>(cluster: BenchCluster, database: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: cluster.url(database) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const time = async (fn: () => Promise<unknown>) => {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
};

/** A migrations folder (init + the rename), split by pgstack against a scratch database. */
async function splitFolder(cluster: BenchCluster, tables: string[], batch: number): Promise<string> {
  const dir = path.join(WORK, "expand", `migrations-${tables.join("-")}`);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(path.join(dir, INIT), { recursive: true });
  await fs.mkdir(path.join(dir, SPLIT), { recursive: true });
  const create = tables.map((t) => `CREATE TABLE "${t}" ("id" BIGSERIAL PRIMARY KEY, "name" TEXT NOT NULL, "age" INTEGER);`).join("\n");
  await fs.writeFile(path.join(dir, INIT, "migration.sql"), create + "\n");
  await fs.writeFile(path.join(dir, SPLIT, "migration.sql"), `ALTER TABLE "${tables[tables.length - 1]}" RENAME COLUMN "name" TO "full_name";\n`);
  await cluster.query(`CREATE DATABASE scratch_split`);
  await pgstackRun(cluster, "scratch_split", ["apply", INIT, "--dir", dir]);
  await pgstackRun(cluster, "scratch_split", ["split", SPLIT, "--dir", dir, "--batch", String(batch)]);
  await cluster.query(`DROP DATABASE scratch_split`);
  return dir;
}

export async function expandBench(argv: string[]): Promise<void> {
  const rounds = intArg(argv, "--rounds", 3);
  const rows = intArg(argv, "--rows", 1_000_000);
  const backfillRounds = intArg(argv, "--backfill-rounds", 2);
  const cluster = await startBenchCluster("expand", { conf: { max_wal_size: "4GB", checkpoint_timeout: "30min" } });
  try {
    const pgVersion = await serverVersion(cluster);

    // 1. Inserts with and without the trigger.
    const insertDir = await splitFolder(cluster, ["plain", "synced"], 10_000);
    await cluster.query(`CREATE DATABASE ins`);
    await pgstackRun(cluster, "ins", ["apply", "--all", "--to", `${SPLIT}_1_expand`, "--dir", insertDir]);
    const kinds = ["bulk old column", "bulk new column", "single-row"] as const;
    const samples: Record<string, Record<string, number[]>> = { plain: {}, synced: {} };
    for (const t of ["plain", "synced"]) for (const k of kinds) samples[t][k] = [];
    await withSession(cluster, "ins", async (c) => {
      // Commits that wait for the disk would hide the trigger's cost in the single-row figures (one fsync each).
      await c.query(`SET synchronous_commit = off`);
      for (let round = 0; round < rounds; round++) {
        for (const table of rotate(["plain", "synced"], round)) {
          await c.query(`TRUNCATE ${table}`);
          await c.query(`VACUUM ANALYZE ${table}`);
          samples[table]["bulk old column"].push(await time(() => c.query(`INSERT INTO ${table} (name, age) SELECT 'user' || g, g FROM generate_series(1, 200000) g`)));
          const newCol = table === "synced" ? "full_name" : "name";
          samples[table]["bulk new column"].push(await time(() => c.query(`INSERT INTO ${table} (${newCol}, age) SELECT 'user' || g, g FROM generate_series(1, 200000) g`)));
          samples[table]["single-row"].push(
            await time(async () => {
              for (let i = 0; i < 5000; i++) await c.query(`INSERT INTO ${table} (name, age) VALUES ($1, $2)`, [`one${i}`, i]);
            }),
          );
          log(`round ${round + 1} ${table}: ${kinds.map((k) => `${k} ${fmtMs(samples[table][k][round])}`).join(", ")}`);
        }
      }
      // The trigger kept both columns equal: the figures are of the real thing.
      const { rows: check } = await c.query(`SELECT count(*)::int AS n FROM synced WHERE name IS DISTINCT FROM full_name`);
      if (check[0].n !== 0) throw new Error(`synced has ${check[0].n} rows out of step`);
    });

    // 2. The backfill of `rows` rows: pgstack's batches vs one UPDATE.
    const backfillDir = await splitFolder(cluster, ["big"], 10_000);
    const backfillSql = await fs.readFile(path.join(backfillDir, `${SPLIT}_2_backfill`, "migration.sql"), "utf8");
    const runs: Record<string, { ms: number; longestLockMs: number; rowsPerSecond: number }[]> = { pgstack: [], "one UPDATE": [] };
    for (let round = 0; round < backfillRounds; round++) {
      for (const contender of rotate(["pgstack", "one UPDATE"], round)) {
        const db = `bf_${round}_${contender === "pgstack" ? "p" : "u"}`;
        await cluster.query(`CREATE DATABASE ${db}`);
        await pgstackRun(cluster, db, ["apply", INIT, "--dir", backfillDir]);
        await withSession(cluster, db, (c) => c.query(`INSERT INTO big (name, age) SELECT 'user' || g, g FROM generate_series(1, ${rows}) g`));
        await pgstackRun(cluster, db, ["apply", "--all", "--to", `${SPLIT}_1_expand`, "--dir", backfillDir]);
        await withSession(cluster, db, (c) => c.query(`VACUUM ANALYZE big`));
        await cluster.query(`CHECKPOINT`);
        let ms: number;
        let longestLockMs: number;
        if (contender === "pgstack") {
          const r = await pgstackRun(cluster, db, ["apply", "--all", "--to", `${SPLIT}_2_backfill`, "--dir", backfillDir]);
          const m = /applied \S+ \((\d+) ms, batches: (\d+) row\(s\) in (\d+), longest batch (\d+) ms\)/.exec(r.stderr);
          if (!m || Number(m[2]) !== rows) throw new Error(`unexpected pgstack output: ${r.stderr}`);
          ms = Number(m[1]);
          longestLockMs = Number(m[4]);
        } else {
          ms = await withSession(cluster, db, (c) => time(() => c.query(backfillSql)));
          longestLockMs = ms;
        }
        const left = await cluster.query<{ n: number }>(`SELECT count(*)::int AS n FROM big WHERE full_name IS DISTINCT FROM name`, [], db);
        if (left[0].n !== 0) throw new Error(`${contender} left ${left[0].n} rows to copy`);
        runs[contender].push({ ms, longestLockMs, rowsPerSecond: rows / (ms / 1000) });
        log(`backfill round ${round + 1} ${contender}: ${fmtMs(ms)}, ${Math.round(rows / (ms / 1000))} rows/s, longest lock ${fmtMs(longestLockMs)}`);
        await cluster.query(`DROP DATABASE ${db}`);
      }
    }

    const insertTable = markdownTable(
      ["insert workload", "without trigger (median)", "with the sync trigger (median)", "ratio (median of per-round ratios)"],
      kinds.map((k) => [k, fmtMs(median(samples.plain[k])), fmtMs(median(samples.synced[k])), fmtRatio(medianRatio(samples.synced[k], samples.plain[k]))]),
    );
    const backfillTable = markdownTable(
      [`backfill of ${rows.toLocaleString("en-US")} rows`, "time (median)", "rows/s (median)", "longest lock (median)"],
      Object.entries(runs).map(([name, r]) => [
        name,
        fmtMs(median(r.map((x) => x.ms))),
        Math.round(median(r.map((x) => x.rowsPerSecond))).toLocaleString("en-US"),
        fmtMs(median(r.map((x) => x.longestLockMs))),
      ]),
    );
    process.stdout.write(`${insertTable}\n\n${backfillTable}\n`);
    const file = await writeResult("expand", { rounds, rows, backfillRounds, machine: machineInfo({ server: pgVersion }), inserts: samples, backfill: runs });
    log(`wrote ${path.relative(REPO, file)}`);
  } finally {
    await cluster.destroy();
  }
}
