import { execFile } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import * as path from "node:path";
import type { Client } from "pg";
import { sameServer } from "../db/clone";
import { messageOf } from "../errors";
import { quoteIdent } from "../db/url";
import { compareDigests, diffTableRows, primaryKey, qualified, tablesOfBoth, type TableDiff } from "./tables";

/**
 * diffTablesOn's exact answer, reading only the heap pages that differ between
 * two databases of one server whose files share blocks (a reflink clone: the
 * snapshot S is a clone of the live database B; a page written on either side
 * since gets a new physical block, copy-on-write).
 *
 * Why it is exact. After CHECKPOINT every write to either database is in its
 * files (buffers written, files fsynced: copy-on-write remapped). A page both
 * main forks map to the same physical bytes therefore holds the same bytes on
 * both sides, and the same bytes mean the same visible rows: one cluster is one
 * commit log, so every xmin/xmax on the page resolves alike; a row deleted or
 * updated on either side got an xmax, i.e. its page was written; no transaction
 * is in progress (the caller closed both databases; prepared transactions make
 * us fall back). TOAST values are immutable and referenced from the heap tuple
 * (a changed value is a new tuple on a written page; a value stays while a live
 * tuple references it), and identical catalog definitions (columns, types,
 * enum labels) render identical bytes as identical text (types whose text
 * reads other catalog rows — reg*, an extension's — and row-level security go
 * row by row). So the rows on shared pages are the same multiset on both
 * sides, and the difference of the whole tables is the difference of the rows
 * on the other pages, read on both sides by TID range (the same page numbers
 * on both sides, as far as each file reaches). With a primary key no look-up of the other side is needed: a
 * key found on a changed page of B cannot also be on a shared page of B (keys
 * are unique), so it is on a shared page of S neither; it is either on a
 * changed page of S or absent from S.
 *
 * Anything not provable (no CHECKPOINT right, the files not readable from
 * here, unlogged tables — CHECKPOINT does not flush them —, odd extent flags,
 * a file rewritten while mapping, different definitions) sends that table, or
 * all, through diffTableRows (every row), and the result says so. There is no
 * "skip the checkpoint" option: without it a dirty buffer would sit on a page
 * the files still share, and the answer would be wrong.
 */
export interface BlockDiffResult {
  /** Exactly what diffTablesOn(now, then) returns (same order, same tables left out). */
  diffs: TableDiff[];
  /** Tables compared by changed blocks. */
  byBlocks: string[];
  /** Tables compared row by row (fallback), with the reason in `reasons`. */
  rowByRow: string[];
  reasons: Record<string, string>;
  /** Changed blocks read, both sides. */
  blocksRead: number;
}

const PAGE = 8192;
const SEGMENT_PAGES = 131072;
/** Unchanged pages between two changed ranges read anyway to save a scan (reading more pages on both sides stays exact). */
const GAP_PAGES = 8;
/** TID ranges per query. */
const RANGES_PER_QUERY = 200;

/** One extent of a file, in bytes. */
export interface Extent {
  logical: number;
  physical: number;
  length: number;
  flags: string[];
}

export interface FileMap {
  file: string;
  size: number;
  extents: Extent[];
}

/** Extent flags that describe an ordinary, written, addressable extent; any other flag makes its pages "changed". */
const NORMAL_FLAGS = new Set(["last", "shared", "eof", "merged"]);

/**
 * `filefrag -v` output (e2fsprogs, FIEMAP, the file system's block size) for
 * the files in `files`, in that order; undefined when it is not understood.
 */
export function parseFilefrag(output: string, files: string[]): FileMap[] | undefined {
  const out: FileMap[] = [];
  let current: (FileMap & { unit: number }) | undefined;
  for (const line of output.split("\n")) {
    if (line.startsWith("Filesystem type is:") || line.trim() === "" || /^ ext:\s+logical_offset:/.test(line)) continue;
    const header = /^File size of (.*) is (\d+) \((\d+) blocks? of (\d+) bytes\)$/.exec(line);
    if (header) {
      const file = files[out.length + (current ? 1 : 0)];
      if (current) out.push(current);
      if (header[1] !== file) return undefined;
      current = { file, size: Number(header[2]), extents: [], unit: Number(header[4]) };
      continue;
    }
    const ext = /^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):\s+(\d+):\s+(?:\d+:)?\s*(\S*)\s*$/.exec(line);
    if (ext && current) {
      const [logical, logicalEnd, physical, physicalEnd, length] = ext.slice(1, 6).map(Number);
      const flags = ext[6] ? ext[6].split(",") : [];
      if (logicalEnd - logical + 1 !== length && length !== 0) return undefined;
      if (physicalEnd - physical + 1 !== length && length !== 0) return undefined;
      current.extents.push({ logical: logical * current.unit, physical: physical * current.unit, length: length * current.unit, flags });
      continue;
    }
    if (current && /: \d+ extents? found$/.test(line) && line.startsWith(`${current.file}: `)) continue;
    return undefined;
  }
  if (current) out.push(current);
  if (out.length !== files.length) return undefined;
  return out.map(({ file, size, extents }) => ({ file, size, extents }));
}

/** A relation's main fork as one byte space: segment i's extents shifted by i GiB; undefined when the segments are not a relation's. */
export function relationMap(segments: FileMap[], segmentBytes = SEGMENT_PAGES * PAGE): { size: number; extents: Extent[] } | undefined {
  let size = 0;
  const extents: Extent[] = [];
  for (const [i, seg] of segments.entries()) {
    if (seg.size % PAGE !== 0 || seg.size > segmentBytes) return undefined;
    // Every segment before a non-empty one is full (trailing empty segments are left by a truncation).
    if (seg.size > 0 && size !== i * segmentBytes) return undefined;
    if (seg.size > 0) size = i * segmentBytes + seg.size;
    for (const e of seg.extents) extents.push({ ...e, logical: e.logical + i * segmentBytes });
  }
  return { size, extents };
}

/** Page ranges [start, end) of pages not provably the same physical bytes on both sides, over max of both lengths. */
export function changedPageRanges(a: { size: number; extents: Extent[] }, b: { size: number; extents: Extent[] }): [number, number][] {
  const normal = (m: { extents: Extent[] }) =>
    m.extents
      .filter((e) => e.length > 0 && e.flags.every((f) => NORMAL_FLAGS.has(f)))
      .map((e) => ({ start: e.logical, end: e.logical + e.length, delta: e.physical - e.logical }))
      .sort((x, y) => x.start - y.start);
  const xs = normal(a);
  const ys = normal(b);
  // Byte intervals both sides map to the same physical bytes.
  const same: [number, number][] = [];
  let i = 0;
  let j = 0;
  while (i < xs.length && j < ys.length) {
    const lo = Math.max(xs[i].start, ys[j].start);
    const hi = Math.min(xs[i].end, ys[j].end);
    if (lo < hi && xs[i].delta === ys[j].delta) {
      const last = same[same.length - 1];
      if (last && last[1] === lo) last[1] = hi;
      else same.push([lo, hi]);
    }
    if (xs[i].end < ys[j].end) i++;
    else j++;
  }
  const shared = Math.min(a.size, b.size);
  const pages = Math.ceil(Math.max(a.size, b.size) / PAGE);
  const changed: [number, number][] = [];
  let next = 0; // first page not yet classified
  for (const [lo, hi] of same) {
    const first = Math.ceil(lo / PAGE);
    const end = Math.floor(Math.min(hi, shared) / PAGE); // pages fully inside, within both lengths
    if (first >= end) continue;
    if (first > next) changed.push([next, first]);
    next = end;
  }
  if (pages > next) changed.push([next, pages]);
  return changed;
}

/**
 * `ranges` merged across gaps of at most `gap` pages, then clipped to a side's
 * `pages`. Merging before clipping reads the same pages on both sides (a
 * shared page read on one side only would count its rows as a difference).
 */
export function readRanges(ranges: [number, number][], pages: number, gap = GAP_PAGES): [number, number][] {
  const merged: [number, number][] = [];
  for (const [lo, hi] of ranges) {
    const last = merged[merged.length - 1];
    if (last && lo - last[1] <= gap) last[1] = Math.max(last[1], hi);
    else merged.push([lo, hi]);
  }
  return merged.map(([lo, hi]): [number, number] => [lo, Math.min(hi, pages)]).filter(([lo, hi]) => lo < hi);
}

const pagesIn = (ranges: [number, number][]) => ranges.reduce((n, [lo, hi]) => n + hi - lo, 0);

function filefragOnce(files: string[]): Promise<FileMap[] | string> {
  return new Promise((resolve) => {
    execFile("filefrag", ["-v", ...files], { maxBuffer: 256 * 1024 * 1024, env: { ...process.env, LC_ALL: "C" } }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        resolve(code === "ENOENT" ? "filefrag (e2fsprogs) is not installed" : `filefrag failed: ${(stderr || messageOf(err)).split("\n")[0]}`);
        return;
      }
      resolve(parseFilefrag(stdout, files) ?? "filefrag's output was not understood");
    });
  });
}

/** Files per filefrag run: one run per side for any usual schema, and far below the argument list's limit. */
const FILES_PER_SPAWN = 2000;

/** Extent maps of `files` (`filefrag -v`, in the file system's blocks: exact even where extents are not 8 KiB-aligned), or why not. */
async function filefrag(files: string[]): Promise<FileMap[] | string> {
  const out: FileMap[] = [];
  for (let i = 0; i < files.length; i += FILES_PER_SPAWN) {
    const maps = await filefragOnce(files.slice(i, i + FILES_PER_SPAWN));
    if (typeof maps === "string") return maps;
    out.push(...maps);
  }
  return out;
}

interface ServerFacts {
  dir: string;
  port: string;
  started: string;
  db: string;
  bs: string;
  seg: string;
  money: string;
}

async function serverFacts(client: Client): Promise<ServerFacts> {
  const { rows } = await client.query<ServerFacts>(
    `SELECT current_setting('data_directory') AS dir, current_setting('port') AS port,
            extract(epoch FROM pg_postmaster_start_time())::bigint::text AS started, current_database() AS db,
            current_setting('block_size') AS bs, current_setting('lc_monetary') AS money, (SELECT setting || ' ' || unit FROM pg_settings WHERE name = 'segment_size') AS seg`,
  );
  return rows[0];
}

/** Why no table can be compared by blocks, or the data directory when all can be tried. */
async function serverObstacle(now: Client, then: Client): Promise<{ reason: string } | { dir: string }> {
  let a: ServerFacts;
  let b: ServerFacts;
  try {
    a = await serverFacts(now);
    b = await serverFacts(then);
  } catch (err) {
    return { reason: `the server's data directory could not be read (${messageOf(err).split("\n")[0]}); it takes a superuser or pg_read_all_settings` };
  }
  // Per-database settings are not cloned: money prints by lc_monetary, which could then differ between the two sides.
  if (a.money !== b.money) return { reason: "lc_monetary differs between the two databases (money values print differently)" };
  if (Number(a.bs) !== PAGE || a.seg !== `${SEGMENT_PAGES} 8kB`) return { reason: `the server has pages of ${a.bs} bytes and segments of ${a.seg}, not PostgreSQL's default layout` };
  if (a.dir !== b.dir || a.port !== b.port || a.started !== b.started) return { reason: "the two databases are not on the same server" };
  if (!existsSync(a.dir) || !sameServer(a.dir, Number(a.port), Number(a.started))) return { reason: `the server's data directory ${a.dir} is not on this machine` };
  const prepared = await now.query<{ n: string }>("SELECT count(*)::text AS n FROM pg_prepared_xacts WHERE database IN ($1, $2)", [a.db, b.db]);
  if (Number(prepared.rows[0].n) > 0) return { reason: "a prepared transaction is pending on one of the databases" };
  try {
    await now.query("CHECKPOINT");
  } catch (err) {
    return { reason: `CHECKPOINT was refused (${messageOf(err).split("\n")[0]}); it takes a superuser or pg_checkpoint` };
  }
  return { dir: a.dir };
}

interface TableFacts {
  name: string;
  kind: string;
  persistence: string;
  children: boolean;
  /** Columns and their types, rendered: equal on both sides or no block comparison. */
  definition: string;
  /** Row-level security: the two sides' policies could hide different rows of a shared page. */
  rls: boolean;
  /** Column types whose text is not the built-in rendering of the stored bytes (neither built-in, enum nor a domain over a built-in). */
  oddTypes: string[];
  file: string | null;
}

/**
 * Per table: what decides whether its pages may be compared. The definition
 * covers what turns stored bytes into text: columns (dropped ones, defaults
 * stored as attmissingval) and, for enums, their labels by oid.
 */
async function tableFacts(client: Client): Promise<Map<string, TableFacts>> {
  const { rows } = await client.query<TableFacts>(
    `SELECT n.nspname || '.' || c.relname AS name, c.relkind AS kind, c.relpersistence AS persistence,
            EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid) AS children,
            coalesce((SELECT string_agg(concat_ws(':', a.attnum, a.attname, a.atttypid, a.atttypmod, a.attisdropped, a.attcollation, a.attgenerated,
                                              a.atthasmissing, a.attmissingval::text,
                                              (SELECT string_agg(e.oid || '=' || e.enumlabel, ',' ORDER BY e.oid) FROM pg_enum e WHERE e.enumtypid = a.atttypid)), '|' ORDER BY a.attnum)
                        FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0), '') AS definition,
            coalesce((SELECT array_agg(DISTINCT format_type(t.oid, NULL))
                        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                        LEFT JOIN pg_type base ON base.oid = t.typbasetype
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                         AND ((t.oid >= 16384 AND t.typtype <> 'e' AND NOT (t.typtype = 'd' AND base.oid < 16384))
                              -- reg* types print catalog names (a rename, a search_path changes them)
                              OR (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname ~ '^_?reg') OR (base.typnamespace = 'pg_catalog'::regnamespace AND base.typname ~ '^reg'))), '{}') AS "oddTypes",
            c.relrowsecurity AS rls,
            pg_relation_filepath(c.oid) AS file
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
        AND n.nspname NOT LIKE 'pg\\_temp%'`,
  );
  return new Map(rows.map((r) => [r.name, r]));
}

/** A table's reason to go row by row, seen from both sides' facts and keys. */
function tableObstacle(a: TableFacts, b: TableFacts, keyA: string[], keyB: string[]): string | undefined {
  if (a.kind !== "r" || b.kind !== "r") return "a partitioned table (its rows are its partitions')";
  if (a.persistence !== "p" || b.persistence !== "p") return "an unlogged table (CHECKPOINT does not write its pages)";
  if (a.children || b.children) return "it has inheritance children (its rows include theirs)";
  if (keyA.join(",") !== keyB.join(",")) return "its primary key differs between the two databases";
  if (a.definition !== b.definition) return "its columns differ between the two databases";
  if (a.rls || b.rls) return "row-level security is on (the two databases' policies may differ)";
  if (a.oddTypes.length > 0) return `a column of type ${a.oddTypes.join(", ")}, whose text may not follow its bytes`;
  if (!a.file || !b.file) return "it has no file";
  return undefined;
}

function deviceOf(file: string): number | undefined {
  try {
    return statSync(file).dev;
  } catch {
    return undefined;
  }
}

/** The main fork's segment files of a relation (`base`, `base.1`, …) that exist. */
function segmentsOf(dir: string, file: string): string[] {
  const base = path.join(dir, file);
  const out: string[] = [];
  for (let i = 0; existsSync(i === 0 ? base : `${base}.${i}`); i++) out.push(i === 0 ? base : `${base}.${i}`);
  return out;
}

/** Rows on `ranges` of a table: key -> digest, or `#digest` -> multiplicity without a key (as rowDigests). */
async function rowsOnPages(client: Client, t: { schema: string; table: string }, key: string[], ranges: [number, number][]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const k = key.length > 0 ? `ROW(${key.map((c) => `x.${quoteIdent(c)}`).join(", ")})::text` : "NULL::text";
  for (let i = 0; i < ranges.length; i += RANGES_PER_QUERY) {
    const batch = ranges.slice(i, i + RANGES_PER_QUERY);
    const params: string[] = [];
    const parts = batch.map(([lo, hi]) => {
      params.push(`(${lo},0)`, `(${hi},0)`);
      return `SELECT ${k} AS k, md5(x::text) AS h FROM ${qualified(t)} x WHERE x.ctid >= $${params.length - 1}::tid AND x.ctid < $${params.length}::tid`;
    });
    const { rows } = await client.query<{ k: string | null; h: string }>(parts.join("\nUNION ALL\n"), params);
    for (const r of rows) {
      if (key.length > 0) out.set(r.k as string, r.h);
      else out.set(`#${r.h}`, String(Number(out.get(`#${r.h}`) ?? 0) + 1));
    }
  }
  return out;
}

/**
 * Per table, the rows inserted, updated and deleted in `now` since `then`:
 * diffTablesOn(now, then)'s answer, reading on both sides only the pages whose
 * blocks the two databases' files no longer share (see the module comment).
 * The caller guarantees that nobody writes either database meanwhile.
 */
export async function diffTablesByBlocks(now: Client, then: Client): Promise<BlockDiffResult> {
  const { sorted, nowTables, thenTables, has } = await tablesOfBoth(now, then);
  const reasons: Record<string, string> = {};

  // Which tables may go by blocks, and their files.
  const server = await serverObstacle(now, then);
  const dir = "dir" in server ? server.dir : "";
  const candidates: { name: string; t: { schema: string; table: string }; key: string[]; nowFiles: string[]; thenFiles: string[]; nowFile: string; thenFile: string }[] = [];
  if ("reason" in server) {
    for (const [name] of sorted) reasons[name] = server.reason;
  } else {
    const nowFacts = await tableFacts(now);
    const thenFacts = await tableFacts(then);
    for (const [name, t] of sorted) {
      const a = nowFacts.get(name);
      const b = thenFacts.get(name);
      if (!a || !b || !has(nowTables, name) || !has(thenTables, name)) {
        reasons[name] = `it exists in only one of the two databases`;
        continue;
      }
      const key = await primaryKey(now, t);
      const obstacle = tableObstacle(a, b, key, await primaryKey(then, t));
      if (obstacle) {
        reasons[name] = obstacle;
        continue;
      }
      const nowFiles = segmentsOf(dir, a.file as string);
      const thenFiles = segmentsOf(dir, b.file as string);
      const devices = new Set([...nowFiles, ...thenFiles].map((f) => deviceOf(f)));
      if (nowFiles.length === 0 || thenFiles.length === 0 || devices.has(undefined)) reasons[name] = "its files are not readable here";
      else if (devices.size !== 1) reasons[name] = "its files on the two sides are on different file systems";
      else candidates.push({ name, t, key, nowFiles, thenFiles, nowFile: a.file as string, thenFile: b.file as string });
    }
  }

  // One filefrag per side for every candidate's segments.
  const byTable = new Map<string, { changed: [number, number][]; nowPages: number; thenPages: number }>();
  if (candidates.length > 0) {
    const nowMaps = await filefrag(candidates.flatMap((c) => c.nowFiles));
    const thenMaps = await filefrag(candidates.flatMap((c) => c.thenFiles));
    // A table rewritten while we mapped (it should not be: nobody writes) would have mapped other files.
    const nowAfter = await tableFacts(now);
    const thenAfter = await tableFacts(then);
    let ni = 0;
    let ti = 0;
    for (const c of candidates) {
      const nowSegs = typeof nowMaps === "string" ? undefined : nowMaps.slice(ni, (ni += c.nowFiles.length));
      const thenSegs = typeof thenMaps === "string" ? undefined : thenMaps.slice(ti, (ti += c.thenFiles.length));
      if (!nowSegs || !thenSegs) {
        reasons[c.name] = typeof nowMaps === "string" ? nowMaps : (thenMaps as string);
        continue;
      }
      if (nowAfter.get(c.name)?.file !== c.nowFile || thenAfter.get(c.name)?.file !== c.thenFile || segmentsOf(dir, c.nowFile).length !== c.nowFiles.length || segmentsOf(dir, c.thenFile).length !== c.thenFiles.length) {
        reasons[c.name] = "its files changed while they were mapped";
        continue;
      }
      const a = relationMap(nowSegs);
      const b = relationMap(thenSegs);
      if (!a || !b) {
        reasons[c.name] = "its segment files do not add up to a relation";
        continue;
      }
      byTable.set(c.name, { changed: changedPageRanges(a, b), nowPages: a.size / PAGE, thenPages: b.size / PAGE });
    }
  }

  const diffs: TableDiff[] = [];
  const byBlocks: string[] = [];
  const rowByRow: string[] = [];
  let blocksRead = 0;
  for (const [name, t] of sorted) {
    const pages = byTable.get(name);
    const c = candidates.find((x) => x.name === name);
    let diff: TableDiff;
    if (pages && c) {
      const nowRanges = readRanges(pages.changed, pages.nowPages);
      const thenRanges = readRanges(pages.changed, pages.thenPages);
      blocksRead += pagesIn(nowRanges) + pagesIn(thenRanges);
      const a = await rowsOnPages(now, t, c.key, nowRanges);
      const b = await rowsOnPages(then, t, c.key, thenRanges);
      diff = compareDigests(name, c.key.length > 0, a, b);
      byBlocks.push(name);
    } else {
      diff = await diffTableRows(now, then, t, has(nowTables, name), has(thenTables, name));
      rowByRow.push(name);
    }
    if (diff.inserted || diff.updated || diff.deleted) diffs.push(diff);
  }
  for (const name of byBlocks) delete reasons[name];
  return { diffs, byBlocks, rowByRow, reasons, blocksRead };
}
