/**
 * window: what a snapshot of a live database costs a writing application
 * (issue 26): the clone's bounded pause against today's pg_dump snapshot and
 * the template copy, in the same run.
 *
 *   npm run bench -- window [--rounds 5] [--gib 0.5]
 *
 * The cluster's data directory is on the XFS reflink image of the clone tests
 * (test/support/reflink.ts, root only); the database holds one table of wide
 * rows (--gib of it) and `acks`, into which an application in its own process
 * (lib/writer.js) inserts the values 1, 2, 3, ... every 10 ms, retrying a
 * failed write with the same value on a new connection. For each operation,
 * interleaved round by round with the order rotated, pgstack's own
 * createSnapshot:
 *   clone     the snapshot `auto` takes with the application connected where cloning works
 *   pg_dump   the dump engine (what `auto` took before issue 26)
 *   template  the template engine forced to a full copy: the database is closed for the whole copy
 *   idle      nothing (the control: the gaps the application sees anyway)
 * The pause the application saw is the longest time between two consecutive
 * acknowledged writes from 300 ms before the operation to 300 ms after it.
 * At the end every acknowledged value must be in `acks`: read back, not assumed.
 */
import { fork } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { silentLogger } from "../infra/core/logger";
import type { SnapshotInfo } from "../infra/core/snapshot/engine";
import { createSnapshot, deleteSnapshot } from "../infra/core/snapshot/store";
import { serverVersion } from "./lib/cluster";
import { argValue, fmtMs, intArg, log, machineInfo, markdownTable, median, REPO, rotate, timeIt, WORK, writeResult } from "./lib/common";
import { requireDumpFor, startReflinkCluster } from "./lib/reflink";

const DB = "app";
type Op = "clone" | "pg_dump" | "template" | "idle";
const OPS: Op[] = ["clone", "pg_dump", "template", "idle"];
const MARGIN_MS = 300;

interface Sample {
  op: Op;
  round: number;
  /** The operation's duration. */
  ms: number;
  /** Longest time between two consecutive acknowledged writes around it. */
  pauseSeenMs: number;
  /** Failed write attempts (errors the application saw) during it. */
  errors: number;
  from: number;
  to: number;
  /** What pgstack recorded. */
  method?: string;
  pauseMs?: number;
}

interface Writer {
  acked: { v: number; t: number }[];
  errors: { code: string; t: number }[];
  stop(): Promise<void>;
}

function startWriter(url: string): Writer {
  const child = fork(path.join(__dirname, "lib", "writer.js"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"], env: { PATH: process.env.PATH ?? "" } });
  const acked: Writer["acked"] = [];
  const errors: Writer["errors"] = [];
  let stopped: () => void;
  const done = new Promise<void>((r) => (stopped = r));
  child.on("message", (m: { ack?: number; error?: string; t: number; stopped?: number }) => {
    if (m.ack !== undefined) acked.push({ v: m.ack, t: m.t });
    else if (m.error !== undefined) errors.push({ code: m.error, t: m.t });
    else if (m.stopped !== undefined) stopped();
  });
  child.on("exit", () => stopped());
  child.send({ cmd: "start", url });
  return {
    acked,
    errors,
    async stop() {
      child.send({ cmd: "stop" });
      await done;
    },
  };
}

export async function windowBench(argv: string[]): Promise<void> {
  const rounds = intArg(argv, "--rounds", 5);
  const size = Number(argValue(argv, "--gib") ?? 0.5);
  const dumps = path.join(WORK, "window", "snapshots");
  await fs.rm(path.dirname(dumps), { recursive: true, force: true });
  const cluster = await startReflinkCluster("window");
  try {
    const pgDump = await requireDumpFor(cluster);
    const server = await serverVersion(cluster);
    await cluster.query(`CREATE DATABASE ${DB}`);
    await cluster.query("CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL)", [], DB);
    const rows = Math.round(1_180_000 * size);
    for (let from = 1; from <= rows; from += 500_000) {
      await cluster.query(`INSERT INTO big SELECT g, repeat(md5(g::text), 25) FROM generate_series(${from}, ${Math.min(rows, from + 499_999)}) g`, [], DB);
    }
    await cluster.query("VACUUM (FREEZE, ANALYZE) big", [], DB);
    await cluster.query("CREATE TABLE acks (v bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())", [], DB);
    await cluster.query("CHECKPOINT");
    const [sz] = await cluster.query<{ b: string }>("SELECT pg_database_size($1)::bigint AS b", [DB]);
    const dbBytes = Number(sz.b);
    log(`database ${DB}: ${(dbBytes / 2 ** 20).toFixed(0)} MiB`);

    const url = cluster.url(DB);
    const writer = startWriter(url);
    while (writer.acked.length < 50) await new Promise((r) => setTimeout(r, 50));
    const samples: Sample[] = [];
    const snapshot = async (op: Exclude<Op, "idle">): Promise<SnapshotInfo> => {
      const options = { url, stack: "bench", snapshotsDir: dumps, log: silentLogger };
      if (op === "pg_dump") return createSnapshot({ ...options, engine: "dump" });
      if (op === "template") return createSnapshot({ ...options, engine: "template", copyMethod: "copy" });
      // What a deploy's snapshot takes with the application connected: auto, detected.
      const taken = await createSnapshot({ ...options, engine: "auto" });
      if (taken.method !== "clone") throw new Error(`auto took a ${taken.method} snapshot with the application connected (${taken.methodReason})`);
      return taken;
    };
    const measure = async (op: Op, round: number) => {
      await new Promise((r) => setTimeout(r, MARGIN_MS));
      const from = Date.now();
      const errorsBefore = writer.errors.length;
      const t = await timeIt(async () => (op === "idle" ? (await new Promise((r) => setTimeout(r, 2000)), undefined) : snapshot(op)));
      const to = Date.now();
      await new Promise((r) => setTimeout(r, MARGIN_MS));
      const times = writer.acked.filter((a) => a.t >= from - MARGIN_MS && a.t <= to + MARGIN_MS).map((a) => a.t);
      let gap = 0;
      for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i] - times[i - 1]);
      const info = t.value as SnapshotInfo | undefined;
      samples.push({ op, round, from, to, ms: t.ms, pauseSeenMs: gap, errors: writer.errors.length - errorsBefore, method: info?.method, pauseMs: info?.pauseMs });
      log(`  ${op}: ${fmtMs(t.ms)}, the application saw a pause of ${fmtMs(gap)} and ${writer.errors.length - errorsBefore} error(s)${info?.pauseMs !== undefined ? `; pgstack reported ${info.method} paused ${info.pauseMs} ms` : ""}`);
      if (info) await deleteSnapshot(url, info.snapshotId, silentLogger, { snapshotsDir: dumps });
    };
    for (let round = 0; round < rounds; round++) {
      const order = rotate(OPS, round);
      log(`round ${round + 1}/${rounds}: ${order.join(", ")}`);
      for (const op of order) await measure(op, round);
    }
    await writer.stop();

    // Every acknowledged write must be in the database: read back.
    const present = new Set((await cluster.query<{ v: string }>("SELECT v::text AS v FROM acks", [], DB)).map((r) => Number(r.v)));
    const lost = writer.acked.filter((a) => !present.has(a.v));
    /** Lost writes acknowledged around an operation of this kind. */
    const lostIn = (op: Op) => lost.filter((l) => samples.some((s) => s.op === op && l.t >= s.from - MARGIN_MS && l.t <= s.to + MARGIN_MS)).length;
    const load = (await fs.readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" ");
    const names: Record<Op, string> = {
      clone: "clone snapshot (bounded pause)",
      pg_dump: "pg_dump snapshot (dump engine)",
      template: "template-copy snapshot (full copy)",
      idle: "nothing (control)",
    };
    const of = (op: Op) => samples.filter((s) => s.op === op);
    const table = markdownTable(
      ["operation", "duration (median)", "pause the application saw: median", "max", "pgstack's reported pauseMs (median)", "application errors (median per operation / total)", "acknowledged writes lost"],
      OPS.map((op) => [
        names[op],
        op === "idle" ? "2 s (by definition)" : fmtMs(median(of(op).map((s) => s.ms))),
        `**${fmtMs(median(of(op).map((s) => s.pauseSeenMs)))}**`,
        fmtMs(Math.max(...of(op).map((s) => s.pauseSeenMs))),
        of(op).some((s) => s.pauseMs !== undefined) ? `${median(of(op).map((s) => s.pauseMs ?? 0)).toFixed(0)} ms` : "n/a",
        `${median(of(op).map((s) => s.errors))} / ${of(op).reduce((n, s) => n + s.errors, 0)}`,
        String(lostIn(op)),
      ]),
    );
    const summary =
      `${writer.acked.length} writes acknowledged, ${lost.length} of them missing from the database afterwards; ` +
      `clone pause median ${fmtMs(median(of("clone").map((s) => s.pauseSeenMs)))} (${median(of("clone").map((s) => s.pauseSeenMs)) < 500 ? "under" : "NOT under"} 500 ms)`;
    const result = {
      benchmark: "window",
      generatedAt: new Date().toISOString(),
      machine: machineInfo({ server, pgDump, loadAverageAtEnd: load }),
      fileSystem: "XFS reflink=1, loop-mounted sparse image (test/support/reflink.ts)",
      database: { bytes: dbBytes, rows },
      writerPeriodMs: 10,
      rounds,
      acknowledged: writer.acked.length,
      lost: lost.map((l) => l.v),
      errorCodes: [...new Set(writer.errors.map((e) => e.code))],
      summary,
      samples,
      table,
    };
    const file = await writeResult("window", result);
    process.stdout.write(`\n## window (${(dbBytes / 2 ** 20).toFixed(0)} MiB database, ${rounds} rounds; load ${load})\n\n${table}\n\n${summary}\n\nwrote ${path.relative(REPO, file)}\n`);
    if (lost.length > 0) process.exitCode = 1;
  } finally {
    await cluster.destroy();
    await fs.rm(path.dirname(dumps), { recursive: true, force: true });
  }
}
