/**
 * snapshot: snapshot + restore of a 1 GiB and a 4 GiB database in the same
 * run, on a copy-on-write file system (issue 26).
 *
 *   npm run bench -- snapshot [--rounds 2] [--sizes 1,4]
 *
 * The cluster's data directory is on the XFS reflink image of the clone tests
 * (test/support/reflink.ts, root only). Each database is one table of wide
 * rows (~850 bytes, under the TOAST threshold, so stored as written), frozen
 * and checkpointed. Contenders, interleaved round by round (sizes too, the
 * methods' order rotated each round), all pgstack's own createSnapshot +
 * planRestore/restoreSnapshot:
 *   clone     the template engine with the copy made by reflink (file_copy_method = clone, STRATEGY FILE_COPY)
 *   template  the same code forced to a full copy (file_copy_method = copy)
 *   pg_dump   the dump engine (pg_dump -Fc; the restore pg_restores into a new database)
 * Between snapshot and restore a hundred rows are changed; after the restore
 * they must read as before (pgstack's restore itself verifies every table's
 * content digest against the sealed record). Beside each: the bare copy
 * (`CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY`, no pgstack) per copy
 * method, and the bytes each snapshot added to the file system (statfs).
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { silentLogger } from "../infra/core/logger";
import { planRestore, restoreSnapshot } from "../infra/core/snapshot/restore";
import { createSnapshot, deleteSnapshot } from "../infra/core/snapshot/store";
import { tableStates } from "../infra/core/snapshot/tables";
import type { SnapshotInfo } from "../infra/core/snapshot/engine";
import { serverVersion } from "./lib/cluster";
import { argValue, fmtMs, fmtRatio, runTimed, intArg, log, machineInfo, markdownTable, median, REPO, rotate, timeIt, WORK, writeResult } from "./lib/common";
import { requireDumpFor, startReflinkCluster, usedBytes, type ReflinkCluster } from "./lib/reflink";

type Method = "clone" | "template" | "pg_dump";
const ALL_METHODS: Method[] = ["clone", "template", "pg_dump"];
/** Rows of ~850 bytes per GiB of database (9 a page). */
const ROWS_PER_GIB = 1_180_000;
/** The rows changed after each snapshot, which the restore must bring back. */
const PROBE = Array.from({ length: 100 }, (_, i) => 1 + i * 9973);

const dbName = (gib: number) => `app_${String(gib).replace(".", "_")}g`;
const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

async function generate(cluster: ReflinkCluster, size: number): Promise<void> {
  const db = dbName(size);
  await cluster.query(`CREATE DATABASE ${db}`);
  await cluster.query("CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL) WITH (autovacuum_enabled = false)", [], db);
  const rows = Math.round(ROWS_PER_GIB * size);
  for (let from = 1; from <= rows; from += 500_000) {
    const to = Math.min(rows, from + 499_999);
    await cluster.query(`INSERT INTO big SELECT g, repeat(md5(g::text), 25) FROM generate_series(${from}, ${to}) g`, [], db);
  }
  // Frozen and hinted now, so no later read dirties (and un-shares) a page.
  await cluster.query("VACUUM (FREEZE, ANALYZE) big", [], db);
  await cluster.query("CHECKPOINT");
}

async function probe(cluster: ReflinkCluster, db: string): Promise<string> {
  const [r] = await cluster.query<{ d: string }>("SELECT md5(string_agg(x::text, ',' ORDER BY id)) AS d FROM big x WHERE id = ANY($1)", [PROBE], db);
  return r.d;
}

interface Sample {
  size: number;
  method: Method;
  round: number;
  snapshotMs: number;
  restoreMs: number;
  /** Bytes the snapshot added to the reflink file system. */
  snapshotBytes: number;
  /** What pgstack recorded (absent before issue 26's clone work). */
  recordedMethod?: string;
  pauseMs?: number;
  dumpBytes?: number;
  /** The restore's swap: how long the database was closed, how long counting the discarded rows took, blocks read by the count (a clone). */
  swapPauseMs?: number;
  countMs?: number;
  blocksRead?: number;
}

interface BareSample {
  size: number;
  method: "clone" | "copy";
  ms: number;
  bytes: number;
}

export async function snapshotSizesBench(argv: string[]): Promise<void> {
  const rounds = intArg(argv, "--rounds", 2);
  const sizes = (argValue(argv, "--sizes") ?? "1,4").split(",").map(Number);
  const level = argValue(argv, "--level") ?? "pgstack";
  // A subset for quick reruns (e.g. --methods clone,template --rounds 5: pg_dump at 4 GiB takes minutes).
  const METHODS = (argValue(argv, "--methods") ?? ALL_METHODS.join(",")).split(",") as Method[];
  if (METHODS.some((m) => !ALL_METHODS.includes(m))) throw new Error(`--methods takes a list of ${ALL_METHODS.join(", ")}`);
  if (level !== "pgstack" && level !== "copy") throw new Error("--level is pgstack (pgstack's snapshot and restore) or copy (the copies alone, no pgstack)");
  if (sizes.some((s) => !(s > 0))) throw new Error("--sizes takes GiB numbers, e.g. 1,4");
  const dumps = path.join(WORK, "snapshot-sizes", "snapshots");
  await fs.rm(path.dirname(dumps), { recursive: true, force: true });
  const cluster = await startReflinkCluster("snapshot");
  try {
    const pgDump = await requireDumpFor(cluster);
    const server = await serverVersion(cluster);
    const dbBytes: Record<number, number> = {};
    for (const size of sizes) {
      log(`generating ${dbName(size)}`);
      const t = await timeIt(() => generate(cluster, size));
      const [r] = await cluster.query<{ b: string }>("SELECT pg_database_size($1)::bigint AS b", [dbName(size)]);
      dbBytes[size] = Number(r.b);
      log(`${dbName(size)}: ${gib(dbBytes[size])} in ${fmtMs(t.ms)}`);
    }
    const expected: Record<number, string> = {};
    for (const size of sizes) expected[size] = await probe(cluster, dbName(size));

    const copyOf = (m: Method): "clone" | "copy" => (m === "clone" ? "clone" : "copy");
    const samples: Sample[] = [];
    const bare: BareSample[] = [];
    const digests: { size: number; ms: number }[] = [];
    const options = { stack: "bench", snapshotsDir: dumps, log: silentLogger };

    const one = async (size: number, method: Method, round: number) => {
      const db = dbName(size);
      const url = cluster.url(db);
      await cluster.query("CHECKPOINT");
      const before = await usedBytes(cluster.folder);
      const copyMethod = method === "pg_dump" ? undefined : copyOf(method);
      const snap = await timeIt(() => createSnapshot({ ...options, url, engine: method === "pg_dump" ? "dump" : "template", copyMethod }));
      const info: SnapshotInfo = snap.value;
      if (info.method !== (method === "pg_dump" ? "dump" : method)) throw new Error(`${method}: pgstack recorded method ${info.method} (${info.methodReason})`);
      const snapshotBytes = (await usedBytes(cluster.folder)) - before;
      const dumpBytes = method === "pg_dump" ? (await fs.stat(path.join(dumps, `${info.snapshotId}.dump`))).size : undefined;
      // Writes after the snapshot, which the restore must discard.
      await cluster.query("UPDATE big SET payload = 'changed after the snapshot' WHERE id = ANY($1)", [PROBE], db);
      await cluster.query("CHECKPOINT");
      const restore = await timeIt(async () => restoreSnapshot(url, await planRestore(url, info.snapshotId, { snapshotsDir: dumps }), { log: silentLogger, copyMethod }));
      const got = await probe(cluster, db);
      if (got !== expected[size]) throw new Error(`${method} at ${size} GiB: the restored rows differ from the snapshot's`);
      // What it reports discarding must be exactly the 100 rows changed.
      const discarded = JSON.stringify(restore.value.discarded);
      if (discarded !== JSON.stringify([{ table: "public.big", inserted: 0, updated: PROBE.length, deleted: 0 }])) throw new Error(`${method} at ${size} GiB: the restore reported discarding ${discarded}`);
      await deleteSnapshot(url, info.snapshotId, silentLogger, { snapshotsDir: dumps });
      samples.push({ size, method, round, snapshotMs: snap.ms, restoreMs: restore.ms, snapshotBytes, recordedMethod: info.method, pauseMs: info.pauseMs, dumpBytes, swapPauseMs: restore.value.pauseMs, countMs: restore.value.countMs, blocksRead: restore.value.countedByBlocks?.blocksRead });
      log(`  ${size} GiB ${method}: snapshot ${fmtMs(snap.ms)} (+${gib(snapshotBytes)} on disk, paused ${info.pauseMs} ms), restore ${fmtMs(restore.ms)} (swap paused ${restore.value.pauseMs} ms, counting ${restore.value.countMs} ms${restore.value.countedByBlocks ? `, ${restore.value.countedByBlocks.blocksRead} blocks read` : ""})`);
    };

    /**
     * --level copy: the same three without pgstack (no content digests, no
     * closing, no seal): the server's copy both ways, or pg_dump -Fc and
     * DROP + CREATE + pg_restore -j2.
     */
    const oneRaw = async (size: number, method: Method, round: number) => {
      const db = dbName(size);
      await cluster.query("CHECKPOINT");
      const before = await usedBytes(cluster.folder);
      const file = path.join(dumps, `${db}.dump`);
      const copy = async (from: string, to: string) => {
        const client = new Client({ connectionString: cluster.url() });
        await client.connect();
        try {
          await client.query(`SET file_copy_method = ${copyOf(method)}`);
          await client.query(`CREATE DATABASE ${to} TEMPLATE ${from} STRATEGY FILE_COPY`);
        } finally {
          await client.end();
        }
      };
      let snap: { ms: number };
      let dumpBytes: number | undefined;
      if (method === "pg_dump") {
        await fs.mkdir(dumps, { recursive: true });
        snap = await runTimed(pgDump, ["-Fc", "-f", file], { env: cluster.pgEnv(db), memory: false });
        dumpBytes = (await fs.stat(file)).size;
      } else {
        snap = await timeIt(() => copy(db, "raw_snapshot"));
      }
      const snapshotBytes = (await usedBytes(cluster.folder)) - before;
      await cluster.query("UPDATE big SET payload = 'changed after the snapshot' WHERE id = ANY($1)", [PROBE], db);
      await cluster.query("CHECKPOINT");
      const restore = await timeIt(async () => {
        await cluster.query(`DROP DATABASE ${db}`);
        if (method === "pg_dump") {
          await cluster.query(`CREATE DATABASE ${db}`);
          await runTimed(path.join(path.dirname(pgDump), "pg_restore"), ["-j2", "-d", db, file], { env: cluster.pgEnv(), memory: false });
        } else {
          await copy("raw_snapshot", db);
        }
      });
      if ((await probe(cluster, db)) !== expected[size]) throw new Error(`${method} at ${size} GiB: the restored rows differ from the snapshot's`);
      if (method === "pg_dump") await fs.rm(file, { force: true });
      else await cluster.query("DROP DATABASE raw_snapshot");
      samples.push({ size, method, round, snapshotMs: snap.ms, restoreMs: restore.ms, snapshotBytes, dumpBytes });
      log(`  ${size} GiB ${method} (no pgstack): snapshot ${fmtMs(snap.ms)} (+${gib(snapshotBytes)} on disk), restore ${fmtMs(restore.ms)}`);
    };

    const bareCopy = async (size: number, method: "clone" | "copy") => {
      await cluster.query("CHECKPOINT");
      const before = await usedBytes(cluster.folder);
      const client = new Client({ connectionString: cluster.url() });
      await client.connect();
      let t: { ms: number };
      try {
        await client.query(`SET file_copy_method = ${method}`);
        t = await timeIt(() => client.query(`CREATE DATABASE bare_copy TEMPLATE ${dbName(size)} STRATEGY FILE_COPY`));
      } finally {
        await client.end();
      }
      const bytes = (await usedBytes(cluster.folder)) - before;
      await cluster.query("DROP DATABASE bare_copy");
      bare.push({ size, method, ms: t.ms, bytes });
      log(`  ${size} GiB bare ${method}: ${fmtMs(t.ms)} (+${gib(bytes)})`);
    };

    for (let round = 0; round < rounds; round++) {
      for (const size of rotate(sizes, round)) {
        const order = rotate(METHODS, round);
        log(`round ${round + 1}/${rounds}, ${size} GiB: ${order.join(", ")}`);
        if (level === "copy") {
          for (const method of order) await oneRaw(size, method, round);
          continue;
        }
        for (const method of rotate(["clone", "copy"] as const, round)) await bareCopy(size, method);
        // One content digest of every table (tables.ts), which a full copy's snapshot records and its restore recomputes (a clone's does not): the first round only.
        if (round === 0) {
          const d = await timeIt(() => tableStates(cluster.url(dbName(size))));
          digests.push({ size, ms: d.ms });
          log(`  ${size} GiB content digest: ${fmtMs(d.ms)}`);
        }
        for (const method of order) await one(size, method, round);
      }
    }

    const small = Math.min(...sizes);
    const large = Math.max(...sizes);
    const of = (size: number, m: Method) => samples.filter((s) => s.size === size && s.method === m);
    const med = (size: number, m: Method, f: (s: Sample) => number) => median(of(size, m).map(f));
    const total = (s: Sample) => s.snapshotMs + s.restoreMs;
    /** large/small, the median of the per-round ratios (both sizes run in every round). */
    const scaling = (m: Method, f: (s: Sample) => number) =>
      median(Array.from({ length: rounds }, (_, r) => f(of(large, m).find((s) => s.round === r)!) / f(of(small, m).find((s) => s.round === r)!)));
    const names: Record<Method, string> =
      level === "pgstack"
        ? { clone: "clone (pgstack, reflink)", template: "template copy (pgstack, full copy)", pg_dump: "pg_dump (pgstack dump engine)" }
        : { clone: "clone: CREATE DATABASE … FILE_COPY, file_copy_method = clone", template: "template copy: the same, file_copy_method = copy", pg_dump: "pg_dump -Fc / DROP + CREATE + pg_restore -j2" };
    const table = markdownTable(
      ["method", ...sizes.flatMap((s) => [`${s} GiB snapshot`, `${s} GiB restore`, `${s} GiB snapshot + restore`]), `snapshot + restore ${large} GiB / ${small} GiB`, "added to disk per snapshot"],
      METHODS.map((m) => [
        names[m],
        ...sizes.flatMap((s) => [fmtMs(med(s, m, (x) => x.snapshotMs)), fmtMs(med(s, m, (x) => x.restoreMs)), fmtMs(med(s, m, total))]),
        `**${fmtRatio(scaling(m, total))}**`,
        sizes.map((s) => (m === "pg_dump" ? `${gib(med(s, m, (x) => x.dumpBytes ?? 0))} dump file` : gib(med(s, m, (x) => x.snapshotBytes)))).join(" / "),
      ]),
    );
    const bareOf = (size: number, m: "clone" | "copy") => bare.filter((b) => b.size === size && b.method === m);
    const bareTable = markdownTable(
      ["bare `CREATE DATABASE … STRATEGY FILE_COPY`", ...sizes.map((s) => `${s} GiB`), `${large} GiB / ${small} GiB`, "added to disk"],
      (["clone", "copy"] as const).map((m) => [
        `file_copy_method = ${m}`,
        ...sizes.map((s) => fmtMs(median(bareOf(s, m).map((b) => b.ms)))),
        fmtRatio(median(bareOf(large, m).map((b) => b.ms)) / median(bareOf(small, m).map((b) => b.ms))),
        sizes.map((s) => gib(median(bareOf(s, m).map((b) => b.bytes)))).join(" / "),
      ]),
    );
    const digestOf = (size: number) => median(digests.filter((d) => d.size === size).map((d) => d.ms));
    const swapLine = `the restore's swap (database closed), medians: ${METHODS.map((m) => `${m} ${sizes.map((sz) => `${fmtMs(med(sz, m, (x) => x.swapPauseMs ?? 0))} at ${sz} GiB (counting ${fmtMs(med(sz, m, (x) => x.countMs ?? 0))}${of(sz, m).some((x) => x.blocksRead !== undefined) ? `, ${med(sz, m, (x) => x.blocksRead ?? 0)} blocks read` : ""})`).join(", ")}`).join("; ")}`;
    const digestLine = `one content digest of every table (infra/core/snapshot/tables.ts, read by a full copy's snapshot and again by its restore, not by a clone's): ${sizes.map((s) => `${fmtMs(digestOf(s))} at ${s} GiB`).join(", ")} (${fmtRatio(digestOf(large) / digestOf(small))})`;
    const cloneScale = METHODS.includes("clone") ? scaling("clone", total) : NaN;
    const verdict =
      `clone snapshot + restore ${large} GiB / ${small} GiB: ${fmtRatio(cloneScale)} (${cloneScale <= 1.5 ? "within" : "NOT within"} 1.5x); ` +
      METHODS.filter((m) => m !== "clone").map((m) => `${m} ${fmtRatio(scaling(m, total))}`).join(", ");
    const load = (await fs.readFile("/proc/loadavg", "utf8")).split(" ").slice(0, 3).join(" ");
    const result = {
      benchmark: "snapshot",
      level,
      generatedAt: new Date().toISOString(),
      machine: machineInfo({ server, pgDump: pgDump, loadAverageAtEnd: load }),
      fileSystem: "XFS reflink=1, loop-mounted sparse image (test/support/reflink.ts)",
      databases: Object.fromEntries(sizes.map((s) => [dbName(s), { bytes: dbBytes[s], rows: Math.round(ROWS_PER_GIB * s) }])),
      rounds,
      verdict,
      scaling: Object.fromEntries(METHODS.map((m) => [m, { total: Number(scaling(m, total).toFixed(3)), snapshot: Number(scaling(m, (s) => s.snapshotMs).toFixed(3)), restore: Number(scaling(m, (s) => s.restoreMs).toFixed(3)) }])),
      medianMs: Object.fromEntries(
        METHODS.map((m) => [m, Object.fromEntries(sizes.map((s) => [`${s}GiB`, { snapshot: Math.round(med(s, m, (x) => x.snapshotMs)), restore: Math.round(med(s, m, (x) => x.restoreMs)) }]))]),
      ),
      samples,
      bare,
      digests,
      digestLine,
      table,
      bareTable,
    };
    const file = await writeResult(argValue(argv, "--out") ?? (level === "copy" ? "snapshot-copy" : "snapshot"), result);
    const extra = level === "copy" ? "" : `${bareTable}\n\n${swapLine}\n\n${digestLine}\n\n`;
    process.stdout.write(`\n## snapshot, level ${level} (${sizes.map((s) => gib(dbBytes[s])).join(" and ")}, ${rounds} rounds, medians; load ${load})\n\n${table}\n\n${extra}${verdict}\n\nwrote ${path.relative(REPO, file)}\n`);
  } finally {
    await cluster.destroy();
    await fs.rm(path.dirname(dumps), { recursive: true, force: true });
  }
}
