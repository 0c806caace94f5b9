/**
 * snapshot-strategies: snapshot and restore of a ~1 GiB database, by copy strategy
 * (issue 6; the sizes and the clone of issue 26 are in snapshot-sizes.ts).
 *
 *   npm run bench -- snapshot-strategies [--rounds 3] [--scale 1]
 *
 * Contenders, interleaved round by round (order rotated each round):
 *   template          pgstack's createTemplateSnapshot (CREATE DATABASE ... TEMPLATE, PostgreSQL 15's
 *                     default WAL_LOG strategy); restore = DROP DATABASE + CREATE DATABASE ... TEMPLATE <snapshot>
 *   template-wal-log  the same code forced to PostgreSQL 15's default WAL_LOG strategy (what pgstack did before)
 *   pg_dump           pg_dump -Fc to a file; restore = DROP + CREATE + pg_restore -j2
 *   file-copy         stop the server, cp -a of the data directory, fsync of the copy, start (the disk's limit);
 *                     restore = stop, replace the data directory with a copy of it, start
 * After every restore the data is checked (row count and a checksum per table).
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { silentLogger } from "../infra/core/logger";
import { createTemplateSnapshot, templateEngine, type SnapshotInfo } from "../infra/core/snapshot/template";
import { BenchCluster, serverVersion, startBenchCluster } from "./lib/cluster";
import {
  requireTools,
  argValue,
  fmtMs,
  fmtRatio,
  intArg,
  log,
  machineInfo,
  markdownTable,
  median,
  medianRatio,
  REPO,
  rotate,
  runTimed,
  timeIt,
  WORK,
  writeResult,
} from "./lib/common";

const DB = "app";

/** The benchmark database's tables (also a migration, for the revert bench). */
export const BENCH_SCHEMA_SQL = `CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, amount numeric(12,2) NOT NULL,
    note text, created_at timestamptz NOT NULL);
CREATE TABLE events (id bigint PRIMARY KEY, order_id bigint NOT NULL, kind text NOT NULL, payload jsonb NOT NULL, at timestamptz NOT NULL);
CREATE TABLE documents (id int PRIMARY KEY, title text NOT NULL, body text NOT NULL, tags text[] NOT NULL);
CREATE INDEX orders_customer_idx ON orders (customer_id, created_at);
CREATE INDEX events_order_idx ON events (order_id);
`;

/** ~1 GiB at scale 1: rows with text, numeric, jsonb and timestamps, with indexes. */
async function generateData(cluster: BenchCluster, scale: number): Promise<void> {
  await cluster.query(`CREATE DATABASE ${DB}`);
  await cluster.query(BENCH_SCHEMA_SQL, [], DB);
  await fillBenchData(cluster, DB, scale);
}

/** Fills BENCH_SCHEMA_SQL's tables of `db` with ~1 GiB at scale 1. */
export async function fillBenchData(cluster: BenchCluster, db: string, scale: number): Promise<void> {
  const q = (sql: string) => cluster.query(sql, [], db);
  const orders = Math.round(2_240_000 * scale);
  const events = Math.round(1_510_000 * scale);
  const documents = Math.round(168_000 * scale);
  const batch = 400_000;
  for (let from = 1; from <= orders; from += batch) {
    const to = Math.min(orders, from + batch - 1);
    await q(`INSERT INTO orders SELECT g, g % 50000, (ARRAY['new','paid','shipped','returned'])[1 + g % 4], (g % 100000) / 100.0,
             'note ' || md5(g::text) || ' ' || md5((g * 7)::text), timestamptz '2024-01-01' + g * interval '1 second'
             FROM generate_series(${from}, ${to}) g`);
  }
  for (let from = 1; from <= events; from += batch) {
    const to = Math.min(events, from + batch - 1);
    await q(`INSERT INTO events SELECT g, 1 + g % ${orders}, (ARRAY['created','updated','paid','emailed'])[1 + g % 4],
             jsonb_build_object('ip', '10.' || (g % 250) || '.' || (g % 199) || '.' || (g % 97), 'agent', md5(g::text),
                                'items', jsonb_build_array(g % 13, g % 17, g % 19), 'total', (g % 9999) / 10.0, 'ref', md5((g * 3)::text)),
             timestamptz '2024-01-01' + g * interval '2 seconds' FROM generate_series(${from}, ${to}) g`);
  }
  await q(`INSERT INTO documents SELECT g, 'doc ' || g,
           (SELECT string_agg(md5((g * 100 + k)::text), ' ') FROM generate_series(1, 28) k),
           ARRAY['t' || g % 10, 't' || g % 7] FROM generate_series(1, ${documents}) g`);
  await q(`VACUUM (FREEZE, ANALYZE)`);
  await cluster.query("CHECKPOINT");
}

async function dbSize(cluster: BenchCluster, db = DB): Promise<number> {
  const [r] = await cluster.query<{ size: string }>("SELECT pg_database_size($1)::bigint AS size", [db]);
  return Number(r.size);
}

/** Row count and an order-independent checksum per table. */
async function contentDigest(cluster: BenchCluster): Promise<string> {
  const parts: string[] = [];
  for (const t of ["orders", "events", "documents"]) {
    const [r] = await cluster.query<{ n: string; s: string }>(
      `SELECT count(*)::bigint AS n, sum(hashtext(x::text)::bigint)::text AS s FROM ${t} x`,
      [],
      DB,
    );
    parts.push(`${t}:${r.n}:${r.s}`);
  }
  return parts.join(" ");
}

async function dropDatabase(cluster: BenchCluster, name: string): Promise<void> {
  await cluster.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

interface Engine {
  name: string;
  snapshot(round: number): Promise<{ ms: number; bytes?: number }>;
  restore(round: number): Promise<{ ms: number }>;
  cleanup(round: number): Promise<void>;
}

async function dirSize(dir: string): Promise<number> {
  const r = await runTimed("du", ["-sb", dir], { memory: false });
  return Number(r.stdout.split(/\s+/)[0]);
}

export async function snapshotBench(argv: string[]): Promise<void> {
  requireTools(["pg_dump", "pg_restore"]);
  const rounds = intArg(argv, "--rounds", 3);
  const scale = Number(argValue(argv, "--scale") ?? process.env.BENCH_SCALE ?? 1) || 1;
  const work = path.join(WORK, "snapshot");
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(work, { recursive: true });
  const cluster = await startBenchCluster("snapshot");
  try {
    const pgVersion = await serverVersion(cluster);
    log(`generating the database (scale ${scale})`);
    const gen = await timeIt(() => generateData(cluster, scale));
    const size = await dbSize(cluster);
    const clusterBytes = await dirSize(cluster.dataDir);
    log(`database ${DB}: ${(size / 2 ** 30).toFixed(2)} GiB (cluster ${(clusterBytes / 2 ** 30).toFixed(2)} GiB), generated in ${fmtMs(gen.ms)}`);
    const expected = await contentDigest(cluster);
    const pgEnv = cluster.pgEnv(DB);

    // pgstack's own code paths (createTemplateSnapshot, templateEngine.materialize);
    // "wal-log" forces the WAL_LOG strategy they used before, through their setting.
    const templateCopy = (walLog = false): Engine => {
      const snapName = (round: number) => `snap_${walLog ? "wal" : "shipped"}_${round}`;
      const withStrategy = async <T>(fn: () => Promise<T>): Promise<T> => {
        const saved = process.env.PGSTACK_FILE_COPY_MIN_MB;
        if (walLog) process.env.PGSTACK_FILE_COPY_MIN_MB = String(2 ** 40);
        try {
          return await fn();
        } finally {
          if (saved === undefined) delete process.env.PGSTACK_FILE_COPY_MIN_MB;
          else process.env.PGSTACK_FILE_COPY_MIN_MB = saved;
        }
      };
      return {
        name: walLog ? "template-wal-log" : "template",
        async snapshot(round) {
          const t = await withStrategy(() => timeIt(() => createTemplateSnapshot({ url: cluster.url(DB), stack: `bench${round}`, log: silentLogger })));
          await cluster.query(`ALTER DATABASE ${t.value.snapshotId} RENAME TO ${snapName(round)}`);
          return { ms: t.ms };
        },
        async restore(round) {
          return withStrategy(() =>
            timeIt(async () => {
              await dropDatabase(cluster, DB);
              await templateEngine.materialize(cluster.url(DB), { snapshotId: snapName(round) } as SnapshotInfo, DB, silentLogger);
            }),
          );
        },
        cleanup: (round) => dropDatabase(cluster, snapName(round)),
      };
    };

    const dumpFile = (round: number) => path.join(work, `dump-${round}.pgdump`);
    const pgDump: Engine = {
      name: "pg_dump",
      async snapshot(round) {
        const t = await runTimed("pg_dump", ["-Fc", "-f", dumpFile(round)], { env: pgEnv });
        return { ms: t.ms, bytes: (await fs.stat(dumpFile(round))).size };
      },
      async restore(round) {
        return timeIt(async () => {
          await dropDatabase(cluster, DB);
          await cluster.query(`CREATE DATABASE ${DB}`);
          await runTimed("pg_restore", ["-j2", "-d", DB, dumpFile(round)], { env: pgEnv });
        });
      },
      cleanup: (round) => fs.rm(dumpFile(round), { force: true }),
    };

    const copyDir = (round: number) => path.join(work, `datadir-${round}`);
    const copyAndSync = async (from: string, to: string) => {
      await runTimed("cp", ["-a", from, to], { memory: false });
      // A snapshot that is not on disk is not a snapshot: fsync every copied file.
      await runTimed("sh", ["-c", 'find "$1" -type f -print0 | xargs -0 sync --data', "sh", to], { memory: false });
    };
    /** cp + fsync alone (no server stop/start): the disk's throughput on this data. */
    const rawCopy: { ms: number; bytes: number }[] = [];
    const fileCopy: Engine = {
      name: "file-copy",
      async snapshot(round) {
        return timeIt(async () => {
          await cluster.stop();
          const copy = await timeIt(() => copyAndSync(cluster.dataDir, copyDir(round)));
          rawCopy.push({ ms: copy.ms, bytes: await dirSize(copyDir(round)) });
          await cluster.start();
        });
      },
      async restore(round) {
        return timeIt(async () => {
          await cluster.stop();
          await fs.rm(cluster.dataDir, { recursive: true, force: true });
          await copyAndSync(copyDir(round), cluster.dataDir);
          await cluster.start();
        });
      },
      cleanup: (round) => fs.rm(copyDir(round), { recursive: true, force: true }),
    };

    const engines = [templateCopy(), templateCopy(true), pgDump, fileCopy];
    const snap: Record<string, number[]> = {};
    const rest: Record<string, number[]> = {};
    const artifact: Record<string, number> = {};
    for (let round = 0; round < rounds; round++) {
      const order = rotate(engines, round);
      log(`round ${round + 1}/${rounds}: ${order.map((e) => e.name).join(", ")}`);
      for (const e of order) {
        await cluster.query("CHECKPOINT");
        const s = await e.snapshot(round);
        // Writes after the snapshot, which the restore must discard.
        await cluster.query("UPDATE orders SET status = 'lost' WHERE id % 1000 = 0", [], DB);
        await cluster.query("CHECKPOINT");
        const r = await e.restore(round);
        const got = await contentDigest(cluster);
        if (got !== expected) throw new Error(`${e.name}: restored data differs (${got} vs ${expected})`);
        if (s.bytes) artifact[e.name] = s.bytes;
        await e.cleanup(round);
        (snap[e.name] ??= []).push(s.ms);
        (rest[e.name] ??= []).push(r.ms);
        log(`  ${e.name}: snapshot ${fmtMs(s.ms)}, restore ${fmtMs(r.ms)}`);
      }
    }

    const names = engines.map((e) => e.name);
    const mibps = (bytes: number, ms: number) => bytes / 2 ** 20 / (ms / 1000);
    const diskMiBps = median(rawCopy.map((c) => mibps(c.bytes, c.ms)));
    const throughput = markdownTable(
      ["what", "bytes", "median time", "MiB/s"],
      [
        ["cp -a + fsync of the stopped data directory (the disk's limit)", `${(median(rawCopy.map((c) => c.bytes)) / 2 ** 30).toFixed(2)} GiB`, fmtMs(median(rawCopy.map((c) => c.ms))), diskMiBps.toFixed(0)],
        ...names.map((n) => [`${n} snapshot (database bytes)`, `${(size / 2 ** 30).toFixed(2)} GiB`, fmtMs(median(snap[n])), mibps(size, median(snap[n])).toFixed(0)]),
      ],
    );
    const both = (n: string) => snap[n].map((x, i) => x + rest[n][i]);
    const table = markdownTable(
      ["method", "snapshot", "restore", "snapshot vs file copy", "restore vs file copy", "snapshot vs template", "restore vs template"],
      names.map((n) => [
        n,
        fmtMs(median(snap[n])),
        fmtMs(median(rest[n])),
        fmtRatio(medianRatio(snap[n], snap["file-copy"])),
        fmtRatio(medianRatio(rest[n], rest["file-copy"])),
        fmtRatio(medianRatio(snap[n], snap.template)),
        fmtRatio(medianRatio(rest[n], rest.template)),
      ]),
    );
    const summary =
      `template copy: snapshot ${fmtRatio(medianRatio(snap.template, snap["file-copy"]))} and restore ${fmtRatio(medianRatio(rest.template, rest["file-copy"]))} of the file copy; ` +
      `pg_dump/pg_restore takes ${fmtRatio(medianRatio(both("pg_dump"), both("template")))} the template copy's snapshot+restore time; ` +
      `shipped (FILE_COPY above 64 MiB): ${fmtRatio(medianRatio(both("template"), both("template-wal-log")))} of the WAL_LOG copy used before`;
    const result = {
      benchmark: "snapshot",
      generatedAt: new Date().toISOString(),
      machine: machineInfo({ server: pgVersion, pgDump: (await runTimed("pg_dump", ["--version"], { memory: false })).stdout.trim() }),
      database: { bytes: size, clusterBytes, generateMs: Math.round(gen.ms), dumpBytes: artifact.pg_dump ?? null },
      diskMiBps: Math.round(diskMiBps),
      rawCopy,
      rounds,
      summary,
      medianMs: Object.fromEntries(names.map((n) => [n, { snapshot: Math.round(median(snap[n])), restore: Math.round(median(rest[n])) }])),
      ratios: Object.fromEntries(
        names.map((n) => [
          n,
          {
            snapshotVsFileCopy: Number(medianRatio(snap[n], snap["file-copy"]).toFixed(3)),
            restoreVsFileCopy: Number(medianRatio(rest[n], rest["file-copy"]).toFixed(3)),
            totalVsTemplate: Number(medianRatio(both(n), both("template")).toFixed(3)),
          },
        ]),
      ),
      raw: { snapshot: snap, restore: rest },
      table,
      throughput,
    };
    const file = await writeResult("snapshot-strategies", result);
    process.stdout.write(
      `\n## snapshot (${(size / 2 ** 30).toFixed(2)} GiB database, ${rounds} rounds, medians)\n\n${table}\n\n${throughput}\n\n${summary}\n\nwrote ${path.relative(REPO, file)}\n`,
    );
  } finally {
    await cluster.destroy();
    await fs.rm(work, { recursive: true, force: true });
  }
}
