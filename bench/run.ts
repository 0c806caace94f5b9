/**
 * One command per benchmark:
 *
 *   npm run bench -- apply      300 Prisma-style migrations: pgstack vs psql vs node-pg-migrate vs Flyway
 *   npm run bench -- snapshot   1 GiB and 4 GiB databases on a reflink file system: clone vs template copy vs pg_dump (issue 26)
 *   npm run bench -- snapshot-strategies  1 GiB database: template copy (FILE_COPY vs WAL_LOG) vs pg_dump/pg_restore vs file copy
 *   npm run bench -- lock       a migration under pgbench load, with and without lock_timeout + retries
 *   npm run bench -- chain      pulumi up with N migration command resources vs pgstack apply --all
 *   npm run bench -- window     a reconnecting application writing during clone / pg_dump / template-copy snapshots: its pauses, errors, lost writes (issue 26)
 *   npm run bench -- window-restore  application errors and the closed window of a snapshot/restore under continuous writes (issue 11)
 *   npm run bench -- bigfile    a 60,000-statement migration and the 300-migration history, now vs before issue 10
 *   npm run bench -- revert     undoing a deploy on the 1 GiB database: its reverse (keeps writes) vs a snapshot restore
 *   npm run bench -- expand     a split rename in force: inserts with the sync trigger vs without; backfill of 1 M rows
 *   npm run bench -- compat     expand/contract classification of Prisma histories on disk (counts, misses)
 *   npm run bench -- verify     pgstack verify on the 200-migration history, first run and cached, vs apply --all
 *   npm run bench -- revert-dev undoing a one-table update on a dev-sized database with an application writing: revert vs restore
 *
 * Each prints a markdown table and writes bench/results/<name>.json. Every
 * figure is a ratio of contenders interleaved in the same run (other jobs
 * share this machine). Not part of `npm test`.
 */
import { applyBench } from "./apply";
import { bigfileBench } from "./bigfile";
import { BenchSetupError } from "./lib/common";
import { chainBench } from "./chain";
import { expandBench } from "./expand";
import { compatBench } from "./compat-histories";
import { lockBench } from "./lock";
import { revertBench, revertDevBench } from "./revert";
import { snapshotBench } from "./snapshot";
import { snapshotSizesBench } from "./snapshot-sizes";
import { verifyBench } from "./verify";
import { windowBench } from "./window";
import { windowRestoreBench } from "./window-restore";

const benches: Record<string, (argv: string[]) => Promise<void>> = {
  apply: applyBench,
  bigfile: bigfileBench,
  snapshot: snapshotSizesBench,
  "snapshot-strategies": snapshotBench,
  lock: lockBench,
  chain: chainBench,
  window: windowBench,
  "window-restore": windowRestoreBench,
  revert: revertBench,
  "revert-dev": revertDevBench,
  expand: expandBench,
  compat: compatBench,
  verify: verifyBench,
};

async function main(): Promise<number> {
  const [name, ...rest] = process.argv.slice(2);
  const bench = name ? benches[name] : undefined;
  if (!bench) {
    process.stderr.write(`usage: npm run bench -- <${Object.keys(benches).join("|")}> [--rounds N]\n`);
    return 2;
  }
  await bench(rest);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    const text = err instanceof BenchSetupError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`bench: ${text}\n`);
    process.exitCode = 1;
  },
);
