import { Client } from "pg";
import { diffTablesByBlocks } from "../../infra/core/snapshot/block-diff";
import { diffTablesOn } from "../../infra/core/snapshot/tables";
import { startMajorCluster, withDb, type MajorCluster } from "../support/cluster";
import { reflinkFolder } from "../support/reflink";

/**
 * diffTablesByBlocks on a real reflink file system (the XFS image, PostgreSQL
 * 18): the snapshot is a clone of the live database, the live one is written
 * afterwards, and the count read from the changed pages alone must equal the
 * row-by-row count (diffTablesOn) on the same pair, while reading a small
 * fraction of the tables' blocks.
 */
jest.setTimeout(300_000);

let folder: { dir: string; remove: () => void };
let cluster: MajorCluster;

function urlOf(db: string, user?: string): string {
  const u = new URL(cluster.adminUrl);
  u.pathname = `/${db}`;
  if (user) {
    u.username = user;
    u.password = "reader-pw";
  }
  return u.toString();
}

async function sessions<T>(nowDb: string, thenDb: string, fn: (now: Client, then: Client) => Promise<T>, user?: string): Promise<T> {
  return withDb(urlOf(nowDb, user), (now) => withDb(urlOf(thenDb, user), (then) => fn(now, then)));
}

/** Main-fork blocks of the named tables on a database. */
async function blocksOf(db: string, tables: string[]): Promise<number> {
  return withDb(urlOf(db), async (c) => {
    const { rows } = await c.query<{ n: string }>("SELECT coalesce(sum(pg_relation_size(t::regclass)), 0)::text AS n FROM unnest($1::text[]) t", [tables]);
    return Number(rows[0].n) / 8192;
  });
}

/** Sequential scans of `table` so far, seen from a fresh session (stats flushed by the sessions that scanned). */
async function seqScans(db: string, table: string): Promise<number> {
  return withDb(urlOf(db), async (c) => {
    const { rows } = await c.query<{ n: string }>("SELECT coalesce(seq_scan, 0)::text AS n FROM pg_stat_user_tables WHERE relname = $1", [table]);
    return Number(rows[0].n);
  });
}

async function cloneAs(source: string, target: string): Promise<void> {
  await withDb(cluster.adminUrl, async (c) => {
    await c.query("SET file_copy_method = clone");
    await c.query(`CREATE DATABASE ${target} TEMPLATE ${source} STRATEGY FILE_COPY`);
  });
}

/** Each statement of `script` on its own (VACUUM, ALTER SYSTEM and CREATE DATABASE refuse a multi-statement string's transaction). */
async function run(db: string, script: string): Promise<void> {
  await withDb(urlOf(db), async (c) => {
    for (const sql of script.replace(/--[^\n]*/g, "").split(/;\s*\n/).map((x) => x.trim()).filter(Boolean)) await c.query(sql);
  });
}

/** A small seeded PRNG (mulberry32): the randomized round is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BIG_TABLES = ["public.big", "public.docs", "public.events", "public.pairs"];

beforeAll(async () => {
  folder = reflinkFolder("block-diff");
  cluster = await startMajorCluster("18", folder.dir);
  // No autovacuum: a page it hints or vacuums between two steps would make the block counts below vary.
  await run("postgres", "ALTER SYSTEM SET autovacuum = off;\nSELECT pg_reload_conf();\nCREATE DATABASE live;\n");
  await run(
    "live",
    `
      CREATE TYPE mood AS ENUM ('calm', 'busy');
      -- fillfactor leaves room on each page for HOT updates; the index on n makes an update of n non-HOT.
      CREATE TABLE big (id int PRIMARY KEY, n int, v text) WITH (fillfactor = 90);
      CREATE INDEX big_n ON big (n);
      INSERT INTO big SELECT g, g, repeat(md5(g::text), 12) FROM generate_series(1, 20000) g;
      -- TOASTed: ~12 KB of random hex per row (compresses to well over 2 KB, stored out of line).
      CREATE TABLE docs (id int PRIMARY KEY, body text);
      INSERT INTO docs SELECT d.g, (SELECT string_agg(md5(random()::text || d.g || x.i), '') FROM generate_series(1, 400) x(i)) FROM generate_series(1, 300) d(g);
      CREATE TABLE events (kind text, at int);
      INSERT INTO events SELECT 'k' || (g % 50), g % 700 FROM generate_series(1, 8000) g;
      CREATE TABLE pairs (a int, b int, status mood, v text, PRIMARY KEY (a, b));
      INSERT INTO pairs SELECT g / 100, g % 100, 'calm', md5(g::text) FROM generate_series(1, 6000) g;
      CREATE TABLE refill (id int PRIMARY KEY, v text);
      INSERT INTO refill SELECT g, md5(g::text) FROM generate_series(1, 1000) g;
      CREATE TABLE dropme (id int PRIMARY KEY);
      INSERT INTO dropme SELECT generate_series(1, 10);
      CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, v text);
      INSERT INTO scratch SELECT g, 'x' FROM generate_series(1, 100) g;
      CREATE ROLE reader LOGIN PASSWORD 'reader-pw' IN ROLE pg_read_all_settings, pg_read_all_data;
    `,
  );
  // Hint bits and all-visible flags set now, before the snapshot, as on a database in use (else the first reader after it rewrites every page).
  await run("live", "VACUUM ANALYZE;\n");
  await cloneAs("live", "snap");
  await run(
    "live",
    `
      INSERT INTO big SELECT g, g, 'new' FROM generate_series(20001, 20010) g;
      UPDATE big SET v = v || '!' WHERE id IN (5, 900, 4000, 12000, 19999);   -- HOT (n not touched)
      UPDATE big SET n = -n WHERE id IN (17, 8000, 15001);                     -- non-HOT (indexed column)
      UPDATE big SET v = v WHERE id IN (3000, 3001);                           -- same value: a new tuple, same contents
      DELETE FROM big WHERE id IN (100, 101, 102, 7777, 13000);
      DELETE FROM big WHERE id BETWEEN 16000 AND 16020;
      VACUUM big;
      UPDATE docs SET body = body || 'x' WHERE id = 7;                          -- only a TOASTed value changes
      UPDATE docs SET body = body WHERE id = 8;
      DELETE FROM docs WHERE id = 250;
      INSERT INTO events VALUES ('k1', 1), ('k1', 1), ('k1', 1), ('new', 0), ('new', 0);
      DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE kind = 'k2' AND at = 2 LIMIT 1);
      UPDATE pairs SET status = 'busy' WHERE a = 10 AND b < 5;
      DELETE FROM pairs WHERE a = 30 AND b = 30;
      INSERT INTO pairs VALUES (99, 1, 'busy', 'n');
      TRUNCATE refill;
      INSERT INTO refill SELECT g, md5(g::text) FROM generate_series(1, 995) g;
      UPDATE refill SET v = 'changed' WHERE id = 1;
      DROP TABLE dropme;
      CREATE TABLE later (id int PRIMARY KEY);
      INSERT INTO later VALUES (1), (2);
      UPDATE scratch SET v = 'y' WHERE id < 10;
    `,
  );
});

afterAll(async () => {
  if (cluster) await cluster.stop().catch(() => undefined);
  folder?.remove();
});

describe("diffTablesByBlocks on an XFS reflink clone (PostgreSQL 18)", () => {
  it("equals the row-by-row count, compares the big tables by blocks and reads a small fraction of their blocks", async () => {
    const scansBefore = await seqScans("live", "big");
    // The last writes above were not checkpointed: diffTablesByBlocks' own CHECKPOINT puts them on disk.
    const result = await sessions("live", "snap", (now, then) => diffTablesByBlocks(now, then));
    const expected = await sessions("live", "snap", (now, then) => diffTablesOn(now, then));
    expect(result.diffs).toEqual(expected);
    expect(expected).toEqual([
      { table: "public.big", inserted: 10, updated: 8, deleted: 26 },
      { table: "public.docs", inserted: 0, updated: 1, deleted: 1 },
      { table: "public.dropme", inserted: 0, updated: 0, deleted: 10 },
      { table: "public.events", inserted: 5, updated: 0, deleted: 1 },
      { table: "public.later", inserted: 2, updated: 0, deleted: 0 },
      { table: "public.pairs", inserted: 1, updated: 5, deleted: 1 },
      { table: "public.refill", inserted: 0, updated: 1, deleted: 5 },
      { table: "public.scratch", inserted: 0, updated: 9, deleted: 0 },
    ]);
    expect(result.byBlocks).toEqual([...BIG_TABLES, "public.refill"].sort());
    expect(result.rowByRow).toEqual(["public.dropme", "public.later", "public.scratch"]);
    expect(result.reasons).toEqual({
      "public.dropme": "it exists in only one of the two databases",
      "public.later": "it exists in only one of the two databases",
      "public.scratch": "an unlogged table (CHECKPOINT does not write its pages)",
    });
    const total = (await blocksOf("live", [...BIG_TABLES, "public.refill"])) + (await blocksOf("snap", [...BIG_TABLES, "public.refill"]));
    process.stderr.write(`block diff: read ${result.blocksRead} of ${total} blocks (both sides)\n`);
    expect(result.blocksRead).toBeGreaterThan(0);
    expect(result.blocksRead).toBeLessThan(total * 0.1);
    // big was read by TID ranges, not scanned (the row-by-row count above scanned it once).
    expect(await seqScans("live", "big")).toBe(scansBefore + 1);
  });

  it("a seeded round of mixed writes on both sides: still equal", async () => {
    const rand = prng(26);
    const pick = (n: number) => 1 + Math.floor(rand() * n);
    const live: string[] = [];
    const snap: string[] = [];
    for (let i = 0; i < 120; i++) {
      const to = rand() < 0.75 ? live : snap;
      const id = pick(20500);
      switch (Math.floor(rand() * 8)) {
        case 0: to.push(`INSERT INTO big VALUES (${30000 + i}, ${i}, 'r${i}') ON CONFLICT DO NOTHING`); break;
        case 1: to.push(`UPDATE big SET v = v || '${i}' WHERE id = ${id}`); break;
        case 2: to.push(`UPDATE big SET n = n + 1 WHERE id = ${id}`); break;
        case 3: to.push(`DELETE FROM big WHERE id = ${id}`); break;
        case 4: to.push(`INSERT INTO events VALUES ('k${pick(3)}', ${pick(3)})`); break;
        case 5: to.push(`DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE kind = 'k${pick(50)}' LIMIT 1)`); break;
        case 6: to.push(`UPDATE pairs SET v = 'r${i}', status = 'busy' WHERE a = ${pick(59)} AND b = ${pick(99)}`); break;
        default: to.push(`UPDATE docs SET body = left(body, ${1000 + pick(10000)}) WHERE id = ${pick(299)}`); break;
      }
    }
    await withDb(urlOf("live"), (c) => c.query(live.join(";\n")));
    await withDb(urlOf("snap"), (c) => c.query(snap.join(";\n")));
    const result = await sessions("live", "snap", (now, then) => diffTablesByBlocks(now, then));
    const expected = await sessions("live", "snap", (now, then) => diffTablesOn(now, then));
    expect(result.diffs).toEqual(expected);
    expect(expected.find((d) => d.table === "public.big")).toBeDefined();
    expect(result.byBlocks).toEqual([...BIG_TABLES, "public.refill"].sort());
    const total = (await blocksOf("live", BIG_TABLES)) + (await blocksOf("snap", BIG_TABLES));
    process.stderr.write(`block diff, seeded round: read ${result.blocksRead} blocks, the big tables have ${total} (both sides)\n`);
    expect(result.blocksRead).toBeLessThan(total * 0.5);
  });

  it("without the right to CHECKPOINT: every table row by row, the same answer, and the reason said", async () => {
    // A dirty buffer on a page the files still share: only a CHECKPOINT would put it on disk.
    await withDb(urlOf("live"), (c) => c.query("UPDATE big SET v = 'dirty' WHERE id = 42"));
    const result = await sessions("live", "snap", (now, then) => diffTablesByBlocks(now, then), "reader");
    const expected = await sessions("live", "snap", (now, then) => diffTablesOn(now, then));
    expect(result.diffs).toEqual(expected);
    expect(result.byBlocks).toEqual([]);
    expect(result.blocksRead).toBe(0);
    expect(result.rowByRow).toEqual(["public.big", "public.docs", "public.dropme", "public.events", "public.later", "public.pairs", "public.refill", "public.scratch"]);
    expect(Object.values(result.reasons)[0]).toMatch(/^CHECKPOINT was refused/);
    expect(new Set(Object.values(result.reasons)).size).toBe(1);
  });

  it("a table rewritten since the snapshot (new relfilenode) and unchanged tables: compared by blocks, nothing left over", async () => {
    await cloneAs("live", "snap2");
    await withDb(urlOf("live"), (c) => c.query("VACUUM FULL pairs"));
    const result = await sessions("live", "snap2", (now, then) => diffTablesByBlocks(now, then));
    expect(result.diffs).toEqual([]);
    expect(result.byBlocks).toEqual([...BIG_TABLES, "public.later", "public.refill"].sort());
    // Only the rewritten table is read (all of it, both sides), plus the unlogged table's fallback.
    const pairs = (await blocksOf("live", ["public.pairs"])) + (await blocksOf("snap2", ["public.pairs"]));
    expect(result.blocksRead).toBe(pairs);
  });

  it("falls back where equal blocks would not mean equal text: a renamed enum label, a column added with a default, a regclass", async () => {
    await run("live", "CREATE TABLE target_t (id int);\nCREATE TABLE refs (id int PRIMARY KEY, r regclass);\nINSERT INTO refs VALUES (1, 'target_t');\n");
    await cloneAs("live", "snap3");
    await run("live", "ALTER TYPE mood RENAME VALUE 'calm' TO 'relaxed';\nALTER TABLE events ADD COLUMN extra int DEFAULT 7;\nALTER TABLE target_t RENAME TO target_u;\n");
    const result = await sessions("live", "snap3", (now, then) => diffTablesByBlocks(now, then));
    const expected = await sessions("live", "snap3", (now, then) => diffTablesOn(now, then));
    expect(result.diffs).toEqual(expected);
    // Every row renders differently, on pages both files still share: only a row-by-row read sees it.
    expect(expected.find((d) => d.table === "public.pairs")?.updated).toBeGreaterThan(5000);
    expect(expected.find((d) => d.table === "public.events")?.inserted).toBeGreaterThan(7000);
    expect(expected.find((d) => d.table === "public.refs")).toEqual({ table: "public.refs", inserted: 0, updated: 1, deleted: 0 });
    expect(result.reasons).toMatchObject({
      "public.pairs": "its columns differ between the two databases",
      "public.events": "its columns differ between the two databases",
      "public.refs": "a column of type regclass, whose text may not follow its bytes",
    });
    expect(result.byBlocks).toEqual(["public.big", "public.docs", "public.later", "public.refill"]);
  });

  it("without filefrag: every table row by row, the same answer", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      const result = await sessions("live", "snap", (now, then) => diffTablesByBlocks(now, then));
      process.env.PATH = path;
      const expected = await sessions("live", "snap", (now, then) => diffTablesOn(now, then));
      expect(result.diffs).toEqual(expected);
      expect(result.byBlocks).toEqual([]);
      expect(result.reasons["public.big"]).toBe("filefrag (e2fsprogs) is not installed");
    } finally {
      process.env.PATH = path;
    }
  });
});
