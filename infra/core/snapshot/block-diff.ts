// TEMPORARY stand-in until branch blockdiff lands (same signature): row by row.
import type { Client } from "pg";
import { diffTablesOn, type TableDiff } from "./tables";
export interface BlockDiffResult {
  diffs: TableDiff[];
  byBlocks: string[];
  rowByRow: string[];
  reasons: Record<string, string>;
  blocksRead: number;
}
export async function diffTablesByBlocks(now: Client, then: Client): Promise<BlockDiffResult> {
  return { diffs: await diffTablesOn(now, then), byBlocks: [], rowByRow: [], reasons: {}, blocksRead: 0 };
}
