import { readFileSync } from "node:fs";
import * as path from "node:path";
import { changedPageRanges, parseFilefrag, readRanges, relationMap, type Extent } from "../../infra/core/snapshot/block-diff";

/**
 * Real `filefrag -v` output on the XFS reflink image (4 KiB blocks): `b` is a
 * reflink copy of `a` with 8 KiB pages 10..12 rewritten; `c` a small file, `e`
 * fallocated (unwritten), `z` empty, `f` written and not yet flushed (delalloc).
 */
const captured = readFileSync(path.join(__dirname, "../fixtures/filefrag-xfs-reflink.txt"), "utf8");
const K = 4096;

describe("parseFilefrag", () => {
  const maps = parseFilefrag(captured, ["a", "b", "c", "e", "z", "f"])!;

  it("reads every file's size and extents in bytes, with their flags", () => {
    expect(maps.map((m) => [m.file, m.size])).toEqual([["a", 2000000], ["b", 2000000], ["c", 100], ["e", 65536], ["z", 0], ["f", 20000]]);
    expect(maps[0].extents).toEqual([
      { logical: 0, physical: 3348546 * K, length: 20 * K, flags: ["shared"] },
      { logical: 20 * K, physical: 3348566 * K, length: 6 * K, flags: [] },
      { logical: 26 * K, physical: 3348572 * K, length: 463 * K, flags: ["last", "shared", "eof"] },
    ]);
    // The "expected" column does not shift the flags.
    expect(maps[1].extents[1]).toEqual({ logical: 20 * K, physical: 3349055 * K, length: 6 * K, flags: [] });
    expect(maps[3].extents[0].flags).toEqual(["last", "unwritten", "eof"]);
    expect(maps[4].extents).toEqual([]);
    expect(maps[5].extents).toEqual([{ logical: 0, physical: 0, length: 0, flags: ["last", "unknown_loc", "delalloc", "eof"] }]);
  });

  it("refuses output it does not understand: other files, a missing file, a line of another format", () => {
    expect(parseFilefrag(captured, ["a", "x", "c", "e", "z", "f"])).toBeUndefined();
    expect(parseFilefrag(captured, ["a", "b", "c", "e", "z"])).toBeUndefined();
    expect(parseFilefrag(captured, ["a", "b", "c", "e", "z", "f", "g"])).toBeUndefined();
    expect(parseFilefrag(captured.replace("   1:       20..      25:", "   1:  20 25"), ["a", "b", "c", "e", "z", "f"])).toBeUndefined();
    // FIBMAP fallback output (no FIEMAP) is another format.
    expect(parseFilefrag("Filesystem type is: ef53\nFile size of a is 8192 (2 blocks of 4096 bytes)\nFilesystem cylinder groups approximately 1\n", ["a"])).toBeUndefined();
  });
});

describe("changedPageRanges", () => {
  const [a, b, , e, , f] = parseFilefrag(captured, ["a", "b", "c", "e", "z", "f"])!;

  it("the captured clone: exactly the rewritten pages 10..12, and the partial last page", () => {
    expect(changedPageRanges(a, b)).toEqual([[10, 13], [244, 245]]);
    expect(changedPageRanges(a, a)).toEqual([[244, 245]]);
  });

  it("unwritten, delalloc and unmapped pages are changed even where addresses agree", () => {
    expect(changedPageRanges(e, e)).toEqual([[0, 8]]);
    expect(changedPageRanges(f, f)).toEqual([[0, 3]]);
    expect(changedPageRanges({ size: 4 * 8192, extents: [] }, { size: 4 * 8192, extents: [] })).toEqual([[0, 4]]);
  });

  const ext = (logical: number, physical: number, length: number, flags: string[] = []): Extent => ({ logical, physical, length, flags });

  it("a page is unchanged only if all its bytes are the same physical bytes on both sides", () => {
    // Shared from 4 KiB in: page 0 is half shared, so changed; pages 1..3 shared.
    const x = { size: 4 * 8192, extents: [ext(0, 1000 * K, 1 * K), ext(1 * K, 5000 * K, 7 * K)] };
    const y = { size: 4 * 8192, extents: [ext(0, 2000 * K, 1 * K), ext(1 * K, 5000 * K, 7 * K)] };
    expect(changedPageRanges(x, y)).toEqual([[0, 1]]);
    // Two adjacent extents, different addresses, both agreeing on both sides: the page across them is shared.
    const p = { size: 2 * 8192, extents: [ext(0, 100 * K, 3 * K), ext(3 * K, 900 * K, 1 * K)] };
    expect(changedPageRanges(p, p)).toEqual([]);
    // Same logical range, physical shifted by one 4 KiB block: every page changed.
    expect(changedPageRanges({ size: 8192, extents: [ext(0, 10 * K, 2 * K)] }, { size: 8192, extents: [ext(0, 11 * K, 2 * K)] })).toEqual([[0, 1]]);
    // An odd flag on one side makes its pages changed.
    expect(changedPageRanges({ size: 8192, extents: [ext(0, 10 * K, 2 * K, ["encoded"])] }, { size: 8192, extents: [ext(0, 10 * K, 2 * K)] })).toEqual([[0, 1]]);
  });

  it("pages beyond either file's length are changed", () => {
    const long = { size: 6 * 8192, extents: [ext(0, 100 * K, 12 * K)] };
    const short = { size: 4 * 8192, extents: [ext(0, 100 * K, 12 * K)] }; // mapped beyond its size (preallocated)
    expect(changedPageRanges(long, short)).toEqual([[4, 6]]);
    expect(changedPageRanges(short, long)).toEqual([[4, 6]]);
  });
});

describe("relationMap", () => {
  const seg = (file: string, pages: number, extents: Extent[] = []) => ({ file, size: pages * 8192, extents });

  it("puts segment i at i segments in", () => {
    const m = relationMap([seg("r", 4, [{ logical: 0, physical: 0, length: 4 * 8192, flags: [] }]), seg("r.1", 2, [{ logical: 0, physical: 99 * 8192, length: 2 * 8192, flags: [] }])], 4 * 8192)!;
    expect(m.size).toBe(6 * 8192);
    expect(m.extents[1]).toEqual({ logical: 4 * 8192, physical: 99 * 8192, length: 2 * 8192, flags: [] });
  });

  it("refuses segments that are not a relation's: a short segment before another, a partial page", () => {
    expect(relationMap([seg("r", 3), seg("r.1", 2)], 4 * 8192)).toBeUndefined();
    expect(relationMap([{ file: "r", size: 100, extents: [] }], 4 * 8192)).toBeUndefined();
    // Trailing empty segments (left by a truncation) are fine.
    expect(relationMap([seg("r", 3), seg("r.1", 0)], 4 * 8192)!.size).toBe(3 * 8192);
  });
});

describe("readRanges", () => {
  it("merges small gaps, then clips to each side's length (the same pages on both sides)", () => {
    const changed: [number, number][] = [[2, 3], [5, 6], [40, 41], [100, 120]];
    expect(readRanges(changed, 120, 4)).toEqual([[2, 6], [40, 41], [100, 120]]);
    // The gap 41..100 is not merged on the longer side, so the shorter side (no pages from 100) reads 40..41 alike.
    expect(readRanges(changed, 100, 4)).toEqual([[2, 6], [40, 41]]);
    // A gap merged on one side is merged on the other too, whatever the lengths.
    expect(readRanges([[2, 3], [5, 9]], 6, 4)).toEqual([[2, 6]]);
    expect(readRanges([[2, 3], [5, 9]], 4, 4)).toEqual([[2, 4]]);
  });
});
