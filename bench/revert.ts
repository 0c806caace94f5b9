/**
 * revert: undoing a deploy on the ~1 GiB benchmark database by its reverse
 * (`pgstack revert`, keeps every write) vs by restoring the pre-update
 * snapshot (template copy, discards every write since), issue 14.
 *
 *   npm run bench -- revert [--rounds 2] [--scale 1]
 *
 * The deploy adds a column to the 2.2M-row table, a new table, an index on
 * the big table, and changes a default; the application then writes. Each
 * round undoes it once each way (order rotated), timing only the undo: for
 * the revert its plan (a throwaway database replayed to the target, migra's
 * diff, counts of what it drops), the rehearsal on a copy, and the run; for
 * the restore its plan and the restore (copy, digest verification, swap).
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { silentLogger } from "../infra/core/logger";
import { applyMigrations } from "../infra/core/migrations/runner";
import { executeRevert, planRevert } from "../infra/core/revert/revert";
import { resolveSettings } from "../infra/core/settings";
import { planRestore, restoreSnapshot } from "../infra/core/snapshot/restore";
import { createTemplateSnapshot } from "../infra/core/snapshot/template";
import { startBenchCluster } from "./lib/cluster";
import { argValue, fmtMs, fmtRatio, intArg, log, machineInfo, markdownTable, median, medianRatio, REPO, requireTools, rotate, timeIt, WORK, writeResult } from "./lib/common";
import { BENCH_SCHEMA_SQL, fillBenchData } from "./snapshot";

const DB = "app";
const BASE = "20250101000000_base";
const DEPLOY = "20250102000000_coupons_refunds";
const DEPLOY_SQL = `ALTER TABLE orders ADD COLUMN coupon text;
CREATE TABLE refunds (id serial PRIMARY KEY, order_id bigint NOT NULL, amount numeric(12,2) NOT NULL);
CREATE INDEX orders_amount_idx ON orders (amount);
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'pending';
`;

export async function revertBench(argv: string[]): Promise<void> {
  requireTools(["pg_dump", "pg_restore"]);
  const rounds = intArg(argv, "--rounds", 2);
  const scale = Number(argValue(argv, "--scale") ?? process.env.BENCH_SCALE ?? 1) || 1;
  const work = path.join(WORK, "revert");
  await fs.rm(work, { recursive: true, force: true });
  const dir = path.join(work, "migrations");
  for (const [name, sql] of [[BASE, BENCH_SCHEMA_SQL], [DEPLOY, DEPLOY_SQL]]) {
    await fs.mkdir(path.join(dir, name), { recursive: true });
    await fs.writeFile(path.join(dir, name, "migration.sql"), sql);
  }
  const cluster = await startBenchCluster("revert");
  try {
    await cluster.query(`CREATE DATABASE ${DB}`);
    const settings = resolveSettings({ url: cluster.url(DB), dir });
    await applyMigrations(settings, { kind: "all", to: BASE }, silentLogger);
    log(`filling the database (scale ${scale})`);
    await fillBenchData(cluster, DB, scale);
    const [{ size }] = await cluster.query<{ size: string }>("SELECT pg_database_size($1)::bigint AS size", [DB]);
    log(`database ${DB}: ${(Number(size) / 2 ** 30).toFixed(2)} GiB`);

    const deployAndWrite = async () => {
      await applyMigrations(settings, { kind: "all" }, silentLogger);
      await cluster.query("UPDATE orders SET coupon = 'C' || id WHERE id % 1000 = 0", [], DB);
      await cluster.query("INSERT INTO refunds (order_id, amount) SELECT g, 1 FROM generate_series(1, 5000) g", [], DB);
      await cluster.query("INSERT INTO orders (id, customer_id, status, amount, created_at) SELECT 10000000 + g, 1, 'new', 1, now() FROM generate_series(1, 1000) g", [], DB);
    };
    const times: Record<string, number[]> = { revert: [], restore: [] };
    for (let round = 1; round <= rounds; round++) {
      for (const how of rotate(["revert", "restore"], round)) {
        log(`round ${round}/${rounds}: ${how}`);
        const snapshot = how === "restore" ? await createTemplateSnapshot({ url: settings.databaseUrl, stack: "bench", key: "0000000000000000", log: silentLogger }) : undefined;
        await deployAndWrite();
        const t = await timeIt(async () => {
          if (how === "revert") await executeRevert(settings, await planRevert(settings, { to: BASE, log: silentLogger }), { acceptLoss: false, log: silentLogger });
          else {
            const plan = await planRestore(settings.databaseUrl, snapshot!.snapshotId);
            await restoreSnapshot(settings.databaseUrl, plan, { log: silentLogger });
            await cluster.query(`DROP DATABASE ${snapshot!.snapshotId} WITH (FORCE)`);
          }
        });
        times[how].push(t.ms);
        log(`  ${how}: ${fmtMs(t.ms)}`);
        // The inserted orders stay after a revert; remove them so every round starts alike.
        await cluster.query("DELETE FROM orders WHERE id > 10000000", [], DB);
      }
    }
    const table = markdownTable(
      ["undo of the deploy", "median", "ratio to revert"],
      [
        ["revert (keeps every write)", fmtMs(median(times.revert)), "1.00x"],
        ["restore of the pre-update snapshot (discards every write since)", fmtMs(median(times.restore)), fmtRatio(medianRatio(times.restore, times.revert))],
      ],
    );
    process.stdout.write(`\n## revert (${(Number(size) / 2 ** 30).toFixed(2)} GiB database, ${rounds} rounds)\n\n${table}\n`);
    const file = await writeResult("revert", { machine: machineInfo(), rounds, scale, databaseBytes: Number(size), times });
    log(`wrote ${file}`);
  } finally {
    await cluster.destroy();
  }
}

/**
 * revert-dev: the issue 22 case, a dev-sized database (the project's own
 * migrations, a few hundred rows, a hand-made table an application inserts
 * into every 20 ms throughout), whose last update applied one migration,
 * `CREATE TABLE good_t (id int);`. Each round undoes that update once each
 * way, order rotated, timing only the undo: the revert (plan + rehearsal +
 * run, each phase timed) and the restore of the snapshot taken right before
 * the update (plan + restore). Both leave the database at the same migration.
 *
 *   npm run bench -- revert-dev [--rounds 5]
 */
export async function revertDevBench(argv: string[]): Promise<void> {
  requireTools(["pg_dump", "psql"]);
  const rounds = intArg(argv, "--rounds", 5);
  const work = path.join(WORK, "revert-dev");
  await fs.rm(work, { recursive: true, force: true });
  const dir = path.join(work, "migrations");
  await fs.cp(path.join(REPO, "migrations"), dir, { recursive: true });
  const target = (await fs.readdir(dir)).filter((d) => /^\d/.test(d)).sort().pop()!;
  await fs.mkdir(path.join(dir, "29990101000000_good_t"));
  await fs.writeFile(path.join(dir, "29990101000000_good_t", "migration.sql"), "CREATE TABLE good_t (id int);\n");
  const cluster = await startBenchCluster("revert-dev");
  let writing = true;
  let writer: Promise<void> | undefined;
  try {
    await cluster.query(`CREATE DATABASE ${DB}`);
    const settings = resolveSettings({ url: cluster.url(DB), dir });
    await applyMigrations(settings, { kind: "all", to: target }, silentLogger);
    await cluster.query("CREATE TABLE lw (id serial PRIMARY KEY, tag text NOT NULL)", [], DB);
    // The application: one session, reconnecting after a restore ends it.
    writer = (async () => {
      let client: Client | undefined;
      for (let n = 0; writing; n++) {
        try {
          if (!client) {
            client = new Client({ connectionString: cluster.url(DB), connectionTimeoutMillis: 2000 });
            client.on("error", () => undefined);
            await client.connect();
          }
          await client.query("INSERT INTO lw (tag) VALUES ($1)", [`w${n}`]);
        } catch {
          await client?.end().catch(() => undefined);
          client = undefined;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      await client?.end().catch(() => undefined);
    })();
    const times: Record<string, number[]> = { revert: [], restore: [] };
    const phases: Record<string, number>[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const how of rotate(["revert", "restore"], round)) {
        const snapshot = how === "restore" ? await createTemplateSnapshot({ url: settings.databaseUrl, stack: "bench", key: "0000000000000000", log: silentLogger }) : undefined;
        await applyMigrations(settings, { kind: "all" }, silentLogger);
        const phase: Record<string, number> = {};
        const onPhase = (name: string, ms: number) => (phase[name] = (phase[name] ?? 0) + ms);
        const t = await timeIt(async () => {
          if (how === "revert") await executeRevert(settings, await planRevert(settings, { to: target, log: silentLogger, onPhase }), { acceptLoss: false, log: silentLogger, onPhase });
          else await restoreSnapshot(settings.databaseUrl, await planRestore(settings.databaseUrl, snapshot!.snapshotId), { log: silentLogger });
        });
        if (snapshot) await cluster.query(`DROP DATABASE ${snapshot.snapshotId} WITH (FORCE)`);
        times[how].push(t.ms);
        if (how === "revert") phases.push(phase);
        log(`round ${round}/${rounds}: ${how} ${fmtMs(t.ms)}`);
      }
    }
    const ratio = medianRatio(times.revert, times.restore);
    const table = markdownTable(
      ["undo of the one-table update", "median", "ratio to restore"],
      [
        ["revert (keeps every write)", fmtMs(median(times.revert)), fmtRatio(ratio)],
        ["restore of the pre-update snapshot", fmtMs(median(times.restore)), "1.00x"],
      ],
    );
    const names = Object.keys(phases[0] ?? {});
    const phaseTable = markdownTable(
      ["revert phase", "median"],
      names.map((n) => [n, fmtMs(median(phases.map((p) => p[n] ?? 0)))]),
    );
    process.stdout.write(`\n## revert-dev (${rounds} rounds)\n\n${table}\n\n${phaseTable}\n`);
    const file = await writeResult("revert-dev", { machine: machineInfo(), rounds, times, ratio, phases });
    log(`wrote ${file}`);
  } finally {
    writing = false;
    await writer;
    await cluster.destroy();
  }
}
