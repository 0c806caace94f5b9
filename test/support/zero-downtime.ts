/**
 * The zero-downtime harness: real processes (the application's versions, the
 * traffic switch, see zdt/), and a bounded load loop that records every
 * acknowledged write and every failed request with its error.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync, promises as fs } from "node:fs";
import * as http from "node:http";
import * as path from "node:path";

export const ZDT_DIR = path.join(__dirname, "zdt");

/** Every process the harness started (and the pid files of those started by others), for `stopAll`. */
export class Processes {
  private children: ChildProcess[] = [];
  private pidFiles: string[] = [];

  /** `node <script>` with env, its output appended to logFile; not detached (ends with the test). */
  start(script: string, env: Record<string, string>, logFile: string): ChildProcess {
    const fd = openSync(logFile, "a");
    const child = spawn(process.execPath, [path.join(ZDT_DIR, script)], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", fd, fd] });
    closeSync(fd);
    child.on("error", () => undefined);
    this.children.push(child);
    return child;
  }

  /** A process some other program started (e.g. the rollout command), known by its pid file. */
  adopt(pidFile: string): void {
    this.pidFiles.push(pidFile);
  }

  async stopAll(): Promise<void> {
    const pids: number[] = this.children.filter((c) => c.exitCode === null && c.pid).map((c) => c.pid!);
    for (const file of this.pidFiles) {
      const pid = Number((await fs.readFile(file, "utf8").catch(() => "")).trim());
      if (pid > 0) pids.push(pid);
    }
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // already gone
      }
    }
    this.children = [];
    this.pidFiles = [];
  }
}

export interface Answer {
  status: number;
  body: string;
  version?: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export function request(port: number, method: string, urlPath: string, body?: unknown, timeoutMs = 15_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { host: "127.0.0.1", port, method, path: urlPath, agent, timeout: timeoutMs, headers: payload ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {} },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, version: res.headers["x-app-version"] as string | undefined }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** Polls GET path until it answers 200 (or throws with the last answer). */
export async function waitHealthy(port: number, urlPath = "/health", timeoutMs = 15_000): Promise<Answer> {
  const until = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const answer = await request(port, "GET", urlPath, undefined, 2_000);
      if (answer.status === 200) return answer;
      last = `${answer.status} ${answer.body}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > until) throw new Error(`port ${port} never answered ${urlPath} with 200: ${last}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Failure {
  /** ms since the load started */
  at: number;
  op: "read" | "write";
  status?: number;
  version?: string;
  error: string;
}

export interface LoadResult {
  requests: number;
  reads: number;
  writes: number;
  /** Values whose POST answered 201, with the version that acknowledged each. */
  acked: { value: string; version: string }[];
  failures: Failure[];
  /** Requests completed per second over the whole run. */
  rate: number;
  seconds: number;
}

/** The `error` of a JSON answer (the application's and the switch's), else the body's start. */
function errorOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    if (typeof parsed?.error === "string") return parsed.error;
  } catch {
    // not JSON
  }
  return body.slice(0, 300);
}

export interface Load {
  stop(): Promise<LoadResult>;
  /** Requests completed so far. */
  completed(): number;
}

/**
 * Bounded load through `port`: `rate` requests a second on a fixed schedule
 * (request i is due at start + i/rate), at most `concurrency` in flight; every
 * other request a write of a value unique to the run (`<prefix>-<i>`), the rest
 * reads of the newest rows. A request is a failure unless a read answers 200
 * with a JSON array and a write answers 201.
 */
export function startLoad(port: number, options: { prefix: string; rate?: number; concurrency?: number }): Load {
  const rate = options.rate ?? 150;
  const concurrency = options.concurrency ?? 16;
  const started = Date.now();
  const result: LoadResult = { requests: 0, reads: 0, writes: 0, acked: [], failures: [], rate: 0, seconds: 0 };
  let next = 0;
  let stopped = false;

  async function one(i: number): Promise<void> {
    const write = i % 2 === 0;
    const value = `${options.prefix}-${i}`;
    const fail = (error: string, status?: number, version?: string) =>
      result.failures.push({ at: Date.now() - started, op: write ? "write" : "read", status, version, error });
    try {
      const answer = write ? await request(port, "POST", "/people", { value }) : await request(port, "GET", "/people?limit=20");
      if (write && answer.status === 201) result.acked.push({ value, version: answer.version ?? "?" });
      else if (!write && answer.status === 200 && Array.isArray(JSON.parse(answer.body))) {
        // a good read
      } else fail(errorOf(answer.body), answer.status, answer.version);
    } catch (err) {
      fail((err as Error).message);
    } finally {
      result.requests++;
      if (write) result.writes++;
      else result.reads++;
    }
  }

  async function worker(): Promise<void> {
    while (!stopped) {
      const i = next++;
      const wait = started + (i * 1000) / rate - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (stopped) return;
      await one(i);
    }
  }

  const workers = Array.from({ length: concurrency }, () => worker());
  return {
    completed: () => result.requests,
    async stop() {
      stopped = true;
      await Promise.all(workers);
      result.seconds = (Date.now() - started) / 1000;
      result.rate = result.requests / result.seconds;
      return result;
    },
  };
}

/** A short account of a load run for the test's log. */
export function describeLoad(name: string, r: LoadResult): string {
  const byVersion = new Map<string, number>();
  for (const a of r.acked) byVersion.set(a.version, (byVersion.get(a.version) ?? 0) + 1);
  const firstFailures = r.failures.slice(0, 5).map((f) => `    ${(f.at / 1000).toFixed(2)} s ${f.op} ${f.status ?? "-"} ${f.version ?? ""} ${f.error}`);
  return [
    `[zdt ${name}] ${r.requests} requests in ${r.seconds.toFixed(1)} s (${r.rate.toFixed(0)}/s; ${r.reads} reads, ${r.writes} writes), ` +
      `acknowledged writes ${[...byVersion].map(([v, n]) => `${v} ${n}`).join(", ")}; failed ${r.failures.length}`,
    ...firstFailures,
  ].join("\n");
}
