/**
 * window-restore: what a snapshot and a restore cost an application that writes
 * continuously (issue 11, item 8; the clone's bounded pause of issue 26 is window.ts).
 *
 *   npm run bench -- window-restore [--rounds 5] [--rows 200000]
 *
 * An application inserts one row every 20 ms through one connection,
 * reconnecting after an error, for the whole run. Each round takes a
 * template-copy snapshot, a pg_dump snapshot and a restore (template) of the
 * database, each with pgstack's own code, and counts for each operation the
 * application's failed writes and the longest time between two acknowledged
 * writes (the window in which the database refused it), next to the
 * operation's duration.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { silentLogger } from "../infra/core/logger";
import { planRestore, restoreSnapshot } from "../infra/core/snapshot/restore";
import { createSnapshot } from "../infra/core/snapshot/store";
import { startBenchCluster } from "./lib/cluster";
import { fmtMs, intArg, log, machineInfo, markdownTable, median, requireTools, WORK, writeResult } from "./lib/common";

const DB = "app";

interface Sample {
  op: string;
  ms: number;
  errors: number;
  longestGapMs: number;
}

/** The application: one insert every 20 ms; acknowledged times and errors, in order. */
function startWriter(url: string) {
  const acked: number[] = [];
  const failed: number[] = [];
  let stop = false;
  const done = (async () => {
    let client: Client | undefined;
    while (!stop) {
      try {
        if (!client) {
          client = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
          client.on("error", () => undefined);
          await client.connect();
        }
        await client.query("INSERT INTO ticks (at) VALUES (now())");
        acked.push(Date.now());
      } catch {
        failed.push(Date.now());
        await client?.end().catch(() => undefined);
        client = undefined;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await client?.end().catch(() => undefined);
  })();
  return {
    acked,
    failed,
    async stop() {
      stop = true;
      await done;
    },
  };
}

export async function windowRestoreBench(argv: string[]): Promise<void> {
  requireTools(["pg_dump", "pg_restore"]);
  const rounds = intArg(argv, "--rounds", 5);
  const rows = intArg(argv, "--rows", 200_000);
  const cluster = await startBenchCluster("window");
  const snapshotsDir = path.join(WORK, "window-dumps");
  await fs.rm(snapshotsDir, { recursive: true, force: true });
  try {
    await cluster.query(`CREATE DATABASE ${DB}`);
    await cluster.query("CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz NOT NULL)", [], DB);
    await cluster.query("CREATE TABLE orders (id int PRIMARY KEY, note text NOT NULL)", [], DB);
    await cluster.query(`INSERT INTO orders SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, ${rows}) g`, [], DB);
    const url = cluster.url(DB);
    const writer = startWriter(url);
    const samples: Sample[] = [];
    const measure = async (op: string, fn: () => Promise<unknown>) => {
      await new Promise((r) => setTimeout(r, 300));
      const from = Date.now();
      const errorsBefore = writer.failed.length;
      await fn();
      const to = Date.now();
      await new Promise((r) => setTimeout(r, 300));
      const times = writer.acked.filter((t) => t >= from - 300 && t <= to + 300);
      let gap = 0;
      for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i] - times[i - 1]);
      samples.push({ op, ms: to - from, errors: writer.failed.length - errorsBefore, longestGapMs: gap });
    };
    for (let round = 1; round <= rounds; round++) {
      log(`round ${round}/${rounds}`);
      let template = "";
      await measure("template snapshot", async () => {
        template = (await createSnapshot({ url, stack: "bench", engine: "template", snapshotsDir, log: silentLogger })).snapshotId;
      });
      await measure("pg_dump snapshot", () => createSnapshot({ url, stack: "bench", engine: "dump", snapshotsDir, log: silentLogger }));
      // What a deploy takes by default: with the application connected, auto picks pg_dump.
      await measure("auto snapshot (a deploy's default)", async () => {
        const taken = await createSnapshot({ url, stack: "bench", engine: "auto", snapshotsDir, log: silentLogger });
        if (taken.engine !== "dump") throw new Error(`auto took a ${taken.engine} snapshot with the application connected`);
      });
      await measure("restore (template)", async () => restoreSnapshot(url, await planRestore(url, template, { snapshotsDir }), { log: silentLogger }));
    }
    await writer.stop();
    const ops = [...new Set(samples.map((s) => s.op))];
    const table = markdownTable(
      ["operation", "duration", "application errors per operation", "longest time without an acknowledged write (20 ms cadence)"],
      ops.map((op) => {
        const of = samples.filter((s) => s.op === op);
        return [op, fmtMs(median(of.map((s) => s.ms))), String(median(of.map((s) => s.errors))), fmtMs(median(of.map((s) => s.longestGapMs)))];
      }),
    );
    process.stdout.write(table + "\n");
    const file = await writeResult("window-restore", { machine: machineInfo(), rounds, rows, samples });
    log(`wrote ${file}`);
  } finally {
    await cluster.destroy();
    await fs.rm(snapshotsDir, { recursive: true, force: true });
  }
}
