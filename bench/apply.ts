/**
 * apply: 300 generated Prisma-style migrations applied to an empty database.
 *
 *   npm run bench -- apply [--rounds 7] [--count 300] [--before <git ref>]
 *
 * Contenders, interleaved round by round (order rotated each round), each on a
 * fresh empty database of the same throwaway cluster:
 *   psql            one session, each file wrapped in BEGIN/COMMIT: the limit (no ledger, no lock, no checks)
 *   pgstack         node infra/bin/pgstack.js apply --all, as shipped (loads the CLI bundle it keeps in .pgstack/cache)
 *   pgstack-tsx     the same with PGSTACK_NO_BUNDLE=1: tsx compiles the TypeScript at start, as before issue #6
 *   pgstack-before  the CLI at the commit before issue #6's performance work (bench/lib/before.ts): tsx, and
 *                   BEGIN / ledger INSERT / statements / ledger UPDATE / COMMIT as separate queries
 *   node-pg-migrate 9.0.0, the same files as .sql migrations, one transaction each (--no-single-transaction)
 *   flyway          11.14.1 CLI (java 17), the same files renamed V<n>__<slug>.sql
 * Every run's resulting schema is fingerprinted and must equal psql's.
 * Also measured each round: process start-up (`--help`), a no-op re-run on the
 * up-to-date database, and pgstack's phases inside one process (bench/lib/phases.js).
 */
import * as path from "node:path";
import { BenchCluster, serverVersion, startBenchCluster } from "./lib/cluster";
import {
  argValue,
  requireTools,
  fmtMiB,
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
  Timed,
  WORK,
  writeResult,
} from "./lib/common";
import { BEFORE_REF, ensureBefore } from "./lib/before";
import { generateHistory, HistoryLayouts, writeHistory } from "./lib/generate";
import { ensureFlyway, ensureNodePgMigrate, FLYWAY_VERSION, javaVersion, NODE_PG_MIGRATE_VERSION } from "./lib/peers";

const SEED = 6;
const PGSTACK_BIN = path.join(REPO, "infra", "bin", "pgstack.js");

interface Contender {
  name: string;
  /** Applies the whole history to `db`. */
  apply(db: string): Promise<Timed>;
  /** Runs again on the up-to-date `db` (nothing to do); undefined when the tool has no ledger. */
  noop?(db: string): Promise<Timed>;
  /** Start-up only (`--help`). */
  startup?(): Promise<Timed>;
}

/** A digest of the schema a tool produced (tables, columns, types, constraints, indexes, enums), ledgers excluded. */
async function fingerprint(cluster: BenchCluster, db: string): Promise<{ digest: string; relations: number; rows: number }> {
  const ledger = `('_prisma_migrations','pgmigrations','flyway_schema_history')`;
  const [r] = await cluster.query<{ digest: string; relations: number }>(
    `WITH rel AS (
       SELECT c.oid, c.relname, c.relkind FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE i.indexrelid = c.oid AND t.relname IN ${ledger})
          AND c.relname NOT IN ${ledger} AND c.relname NOT LIKE 'pgmigrations%' AND c.relname NOT LIKE '_prisma_migrations%' AND c.relname NOT LIKE 'flyway_schema_history%'),
     items AS (
       SELECT rel.relname || ':' || rel.relkind::text || ':' || a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull::text AS x
         FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
       UNION ALL
       SELECT co.conname || ':' || pg_get_constraintdef(co.oid) FROM pg_constraint co JOIN rel ON rel.oid = co.conrelid
       UNION ALL
       SELECT t.typname || ':' || e.enumlabel || ':' || e.enumsortorder::text FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid)
     SELECT md5(string_agg(x, ',' ORDER BY x)) AS digest, (SELECT count(*)::int FROM rel) AS relations FROM items`,
    [],
    db,
  );
  const [n] = await cluster.query<{ rows: string }>(
    `SELECT coalesce(sum(n_tup_ins), 0)::bigint AS rows FROM pg_stat_user_tables WHERE relname NOT IN ${ledger}`,
    [],
    db,
  );
  return { digest: r.digest, relations: r.relations, rows: Number(n.rows) };
}

export async function applyBench(argv: string[]): Promise<void> {
  requireTools(["psql", "java", "mvn"]);
  const rounds = intArg(argv, "--rounds", 7);
  const count = intArg(argv, "--count", 300);
  const root = path.join(WORK, "apply");
  log(`generating ${count} migrations (seed ${SEED})`);
  const history = generateHistory({ count, seed: SEED });
  const layouts: HistoryLayouts = await writeHistory(path.join(root, "history"), history);
  const kinds: Record<string, number> = {};
  for (const m of history) kinds[m.kind] = (kinds[m.kind] ?? 0) + 1;

  const npmBin = await ensureNodePgMigrate();
  const flyway = await ensureFlyway();
  const before = await ensureBefore(argValue(argv, "--before") ?? BEFORE_REF);
  // The shipped launcher builds its bundle on the first run after a source change: do that before timing.
  await runTimed("node", [PGSTACK_BIN, "--help"], { memory: false });

  const cluster = await startBenchCluster("apply");
  try {
    const pgVersion = await serverVersion(cluster);
    const urlEnv = (db: string) => ({ ...process.env, DATABASE_URL: cluster.url(db) });
    const flywayEnv = (db: string) => ({
      ...process.env,
      FLYWAY_URL: `jdbc:postgresql://127.0.0.1:${cluster.port}/${db}`,
      FLYWAY_USER: "postgres",
      FLYWAY_PASSWORD: cluster.password,
      FLYWAY_LOCATIONS: `filesystem:${layouts.flywayDir}`,
      REDGATE_DISABLE_TELEMETRY: "true",
    });
    const flywayArgs = ["-cp", flyway.classpath, "org.flywaydb.commandline.Main", "-skipCheckForUpdate", "migrate"];
    const npmArgs = ["up", "-m", layouts.flatDir, "--no-single-transaction", "--no-verbose"];

    const contenders: Contender[] = [
      {
        name: "psql",
        apply: (db) => runTimed("psql", ["-v", "ON_ERROR_STOP=1", "-X", "-q", "-f", layouts.psqlScript], { env: cluster.pgEnv(db) }),
        startup: () => runTimed("psql", ["--help"], {}),
      },
      {
        name: "pgstack",
        apply: (db) => runTimed("node", [PGSTACK_BIN, "apply", "--all", "--dir", layouts.prismaDir], { env: urlEnv(db) }),
        noop: (db) => runTimed("node", [PGSTACK_BIN, "apply", "--all", "--dir", layouts.prismaDir], { env: urlEnv(db) }),
        startup: () => runTimed("node", [PGSTACK_BIN, "--help"]),
      },
      {
        name: "pgstack-tsx",
        apply: (db) => runTimed("node", [PGSTACK_BIN, "apply", "--all", "--dir", layouts.prismaDir], { env: { ...urlEnv(db), PGSTACK_NO_BUNDLE: "1" } }),
        noop: (db) => runTimed("node", [PGSTACK_BIN, "apply", "--all", "--dir", layouts.prismaDir], { env: { ...urlEnv(db), PGSTACK_NO_BUNDLE: "1" } }),
        startup: () => runTimed("node", [PGSTACK_BIN, "--help"], { env: { ...process.env, PGSTACK_NO_BUNDLE: "1" } }),
      },
      {
        name: "pgstack-before",
        apply: (db) => runTimed("node", [before.bin, "apply", "--all", "--dir", layouts.prismaDir], { env: urlEnv(db) }),
        noop: (db) => runTimed("node", [before.bin, "apply", "--all", "--dir", layouts.prismaDir], { env: urlEnv(db) }),
        startup: () => runTimed("node", [before.bin, "--help"]),
      },
      {
        name: "node-pg-migrate",
        apply: (db) => runTimed("node", [npmBin, ...npmArgs], { env: urlEnv(db) }),
        noop: (db) => runTimed("node", [npmBin, ...npmArgs], { env: urlEnv(db) }),
        startup: () => runTimed("node", [npmBin, "--help"]),
      },
      {
        name: "flyway",
        apply: (db) => runTimed("java", flywayArgs, { env: flywayEnv(db) }),
        noop: (db) => runTimed("java", flywayArgs, { env: flywayEnv(db) }),
        startup: () => runTimed("java", ["-cp", flyway.classpath, "org.flywaydb.commandline.Main", "-skipCheckForUpdate", "--help"], {}),
      },
    ];

    const apply: Record<string, number[]> = {};
    const rss: Record<string, number[]> = {};
    const cpu: Record<string, number[]> = {};
    const noop: Record<string, number[]> = {};
    const startup: Record<string, number[]> = {};
    const nodeBare: number[] = [];
    const phases: Record<string, number>[] = [];
    let reference: Awaited<ReturnType<typeof fingerprint>> | undefined;

    for (let round = 0; round < rounds; round++) {
      const order = rotate(contenders, round);
      log(`round ${round + 1}/${rounds}: ${order.map((c) => c.name).join(", ")}`);
      for (const c of order) {
        const db = `apply_${round}_${c.name.replace(/-/g, "_")}`;
        await cluster.query(`CREATE DATABASE ${db}`);
        const t = await c.apply(db);
        (apply[c.name] ??= []).push(t.ms);
        if (t.maxRssKb !== null) (rss[c.name] ??= []).push(t.maxRssKb);
        if (t.cpuMs !== null) (cpu[c.name] ??= []).push(t.cpuMs);
        const fp = await fingerprint(cluster, db);
        if (c.name === "psql" && !reference) reference = fp;
        if (reference && fp.digest !== reference.digest) {
          throw new Error(`${c.name} produced a different schema than psql (${fp.relations} vs ${reference.relations} relations)`);
        }
        if (c.noop) (noop[c.name] ??= []).push((await c.noop(db)).ms);
        await cluster.query(`DROP DATABASE ${db}`);
        log(`  ${c.name}: ${fmtMs(t.ms)}, cpu ${t.cpuMs === null ? "n/a" : fmtMs(t.cpuMs)}, peak ${fmtMiB(t.maxRssKb)}`);
      }
      // Start-up alone, and the in-process phases of pgstack, interleaved too.
      nodeBare.push((await runTimed("node", ["-e", "0"])).ms);
      for (const c of order) if (c.startup) (startup[c.name] ??= []).push((await c.startup()).ms);
      const db = `apply_${round}_phases`;
      await cluster.query(`CREATE DATABASE ${db}`);
      const p = await runTimed("node", [path.join(__dirname, "lib", "phases.js"), layouts.prismaDir], { env: urlEnv(db) });
      phases.push({ ...JSON.parse(p.stdout.trim()), wallMs: p.ms });
      await cluster.query(`DROP DATABASE ${db}`);
    }

    // Ratios against psql, per round, then the median.
    const vsPsql = (name: string) => medianRatio(apply[name], apply.psql);
    const vsPgstack = (name: string) => medianRatio(apply[name], apply.pgstack);
    const med = (xs: number[] | undefined) => (xs && xs.length ? median(xs) : NaN);
    const names = contenders.map((c) => c.name);
    const applyTable = markdownTable(
      ["tool", "median wall", "vs psql", "vs pgstack", "client CPU (user+sys)", "peak RSS", "no-op re-run", "start-up (--help)"],
      names.map((n) => [
        n,
        fmtMs(med(apply[n])),
        fmtRatio(vsPsql(n)),
        fmtRatio(vsPgstack(n)),
        cpu[n] ? fmtMs(med(cpu[n])) : "n/a",
        fmtMiB(rss[n] ? med(rss[n]) : null),
        noop[n] ? fmtMs(med(noop[n])) : "(no ledger)",
        startup[n] ? fmtMs(med(startup[n])) : "",
      ]),
    );
    const ph = (k: string) => median(phases.map((p) => p[k]));
    const phaseRows: [string, number][] = [
      ["node boot (to first line of script)", ph("bootMs")],
      ["check + load the shipped CLI bundle (.pgstack/cache/cli.js, with its npm packages)", ph("bundleMs")],
      ["(tsx path only) load tsx", ph("tsxMs")],
      ["(tsx path only) compile + load the CLI's own modules", ph("cliModulesMs")],
      ["discover + read + SHA-256 of 300 files", ph("discoverMs")],
      ["init the SQL parser (libpg-query WebAssembly; compiled while loading the modules)", ph("parserLoadMs")],
      [`split ${ph("statements")} statements (parse every file)`, ph("splitMs")],
      ["database work (connect, lock, ledger, 300 transactions)", ph("dbMs")],
    ];
    const phaseTotal = ph("wallMs");
    const phaseTable = markdownTable(
      ["phase (inside one process, median)", "time", "share of wall"],
      [
        ...phaseRows.map(([k, v]) => [k, fmtMs(v), `${((100 * v) / phaseTotal).toFixed(1)}%`]),
        ["wall (spawn to exit)", fmtMs(phaseTotal), "100%"],
        ["psql, same files (for scale)", fmtMs(med(apply.psql)), `${((100 * med(apply.psql)) / phaseTotal).toFixed(1)}%`],
      ],
    );
    const ratio = vsPsql("pgstack");
    const summary =
      `pgstack apply --all: ${fmtRatio(ratio)} of psql (target 1.30x: ${ratio <= 1.3 ? "met" : "missed"}); ` +
      names
        .filter((n) => !n.startsWith("pgstack") && n !== "psql")
        .map((n) => `${n} ${fmtRatio(vsPgstack(n))} of pgstack (${vsPgstack(n) > 1 ? "pgstack ahead" : "pgstack behind"})`)
        .join("; ");

    const result = {
      benchmark: "apply",
      generatedAt: new Date().toISOString(),
      machine: machineInfo({
        server: pgVersion,
        java: await javaVersion(),
        flyway: FLYWAY_VERSION,
        flywayClasspathJars: String(flyway.jars),
        nodePgMigrate: NODE_PG_MIGRATE_VERSION,
        before: before.commit,
      }),
      history: { count: layouts.count, statements: layouts.statements, bytes: layouts.bytes, seed: SEED, kinds, schema: reference },
      rounds,
      summary,
      ratioVsPsql: Object.fromEntries(names.map((n) => [n, Number(vsPsql(n).toFixed(3))])),
      ratioVsPgstack: Object.fromEntries(names.map((n) => [n, Number(vsPgstack(n).toFixed(3))])),
      medianMs: Object.fromEntries(names.map((n) => [n, Math.round(med(apply[n]))])),
      clientCpuMedianMs: Object.fromEntries(names.filter((n) => cpu[n]).map((n) => [n, Math.round(med(cpu[n]))])),
      peakRssKb: Object.fromEntries(names.filter((n) => rss[n]).map((n) => [n, med(rss[n])])),
      noopMedianMs: Object.fromEntries(Object.entries(noop).map(([n, xs]) => [n, Math.round(median(xs))])),
      startupMedianMs: { "node -e 0": Math.round(median(nodeBare)), ...Object.fromEntries(Object.entries(startup).map(([n, xs]) => [n, Math.round(median(xs))])) },
      pgstackPhasesMedianMs: Object.fromEntries(
        ["bootMs", "bundleMs", "tsxMs", "cliModulesMs", "discoverMs", "parserLoadMs", "splitMs", "dbMs", "applyMs", "wallMs"].map((k) => [k, Math.round(ph(k))]),
      ),
      raw: { apply, rss, cpu, noop, startup, nodeBare, phases },
      tables: { apply: applyTable, phases: phaseTable },
    };
    const file = await writeResult("apply", result);
    process.stdout.write(`\n## apply (${count} migrations, ${rounds} rounds, medians)\n\n${applyTable}\n\n${phaseTable}\n\n${summary}\n\nwrote ${path.relative(REPO, file)}\n`);
  } finally {
    await cluster.destroy();
  }
}
