/**
 * The migration steps' deploy session (issue #13) against real PostgreSQL,
 * without Pulumi: each step is `sh infra/bin/pgstack-step apply <name>` run by
 * a stand-in for the command provider (a copy of sh named
 * pulumi-resource-command, which is what the client looks for above itself),
 * as the provider runs it. One resident process serves every step of that
 * "update", applies each migration exactly as `pgstack apply` does, and ends
 * with the update; a failing step prints the migration's error and line and
 * fails; a process that is not a step of that update gets nothing from it.
 */
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, promises as fs, readdirSync, readFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { serveSession } from "../../infra/core/session/server";
import { processStart } from "../../infra/core/session/identity";
import { MIGRATION_LOCK_KEY } from "../../infra/core/db/deployers";
import { createTestDatabase, withDb } from "../support/cluster";

jest.setTimeout(120_000);

const REPO = path.resolve(__dirname, "..", "..");
let work: string;
let provider: string;
let url: string;
let dir: string;

/** pids of resident sessions serving this test's migrations folder. */
function sessions(): number[] {
  return readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .filter((pid) => {
      try {
        const env = readFileSync(`/proc/${pid}/environ`, "utf8");
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("pgstack.js\0session") && env.includes(`PGSTACK_TEST_MARK=${work}`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Runs `script` (sh) as the stand-in command provider would, in the repo root. */
function asProvider(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(provider, ["-c", script], { cwd: REPO, env: { ...process.env, DATABASE_URL: url, PGSTACK_TEST_MARK: work }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

async function eventually<T>(probe: () => T | undefined | Promise<T | undefined>, what: string, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ledger = () => withDb(url, async (c) => (await c.query(`SELECT migration_name, finished_at IS NOT NULL AS done FROM "_prisma_migrations" ORDER BY started_at`)).rows);

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-session-"));
  provider = path.join(work, "pulumi-resource-command");
  copyFileSync("/bin/sh", provider);
  await fs.chmod(provider, 0o755);
  dir = path.join(work, "migrations");
  const add = async (name: string, sql: string) => {
    await fs.mkdir(path.join(dir, name), { recursive: true });
    await fs.writeFile(path.join(dir, name, "migration.sql"), sql);
  };
  await add("20250101000000_one", "CREATE TABLE one (id int);\n");
  await add("20250102000000_two", "CREATE TABLE two (id int);\nINSERT INTO two VALUES (2);\n");
  await add("20250103000000_bad", "CREATE TABLE three (id int);\nINSERT INTO nowhere VALUES (1);\n");
  url = await createTestDatabase("session");
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe("the deploy session", () => {
  it("serves every step of one update from one resident process that ends with the update; a failing step fails with its line", async () => {
    const step = (name: string) => `sh infra/bin/pgstack-step apply ${name} --dir ${dir}; echo "exit=$?"; `;
    const seen: number[][] = [];
    const run = asProvider(step("20250101000000_one") + step("20250102000000_two") + step("20250102000000_two") + step("20250103000000_bad") + "sleep 1");
    // While the update runs there is exactly one session.
    seen.push(await eventually(() => (sessions().length > 0 ? sessions() : undefined), "the session", 30_000));
    const result = await run;
    expect(seen[0]).toHaveLength(1);
    expect(result.stdout).toContain("Applied 1 migration(s): 20250101000000_one.\nexit=0");
    expect(result.stdout).toContain("Applied 1 migration(s): 20250102000000_two.\nexit=0");
    expect(result.stdout).toContain("Migration 20250102000000_two is already applied; nothing to do.\nexit=0");
    expect(result.stdout).toMatch(/exit=1\s*$/);
    expect(result.stderr).toContain(`pgstack: Migration 20250103000000_bad failed at line 2 of migration.sql: relation "nowhere" does not exist`);
    expect(await ledger()).toEqual([
      { migration_name: "20250101000000_one", done: true },
      { migration_name: "20250102000000_two", done: true },
      { migration_name: "20250103000000_bad", done: false },
    ]);
    // The stand-in provider has exited: so does the session, and its sessions with the server.
    await eventually(() => (sessions().length === 0 ? true : undefined), "the session to end");
    await eventually(
      async () => ((await withDb(url, (c) => c.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pgstack%'`))).rows.length === 0 ? true : undefined),
      "the session's connections to close",
    );
  });

  it("takes the deployer lock per step: while another deployer holds it, a step waits and then fails naming it", async () => {
    await withDb(url, async (holder) => {
      await holder.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      const result = await asProvider(`sh infra/bin/pgstack-step apply 20250103000000_bad --dir ${dir} --lock-wait 1`);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/Another deployer holds the migration lock on database '[^']+' \(pid \d+/);
    });
  });

  it("without the command provider above it (run by hand) the step runs the CLI itself and starts no session", async () => {
    await fs.writeFile(path.join(dir, "20250103000000_bad", "migration.sql"), "CREATE TABLE three (id int);\n");
    const result = spawnSync("sh", ["infra/bin/pgstack-step", "apply", "20250103000000_bad", "--dir", dir], {
      cwd: REPO,
      env: { ...process.env, DATABASE_URL: url, PGSTACK_TEST_MARK: work },
      encoding: "utf8",
    });
    expect(result.stdout).toContain("Applied 1 migration(s): 20250103000000_bad.");
    expect(result.status).toBe(0);
    expect(sessions()).toEqual([]);
  });
});

describe("serveSession", () => {
  let sockDir: string;
  beforeEach(async () => {
    sockDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-sock-"));
    await fs.chmod(sockDir, 0o700);
  });
  afterEach(() => fs.rm(sockDir, { recursive: true, force: true }));

  const anchorOf = (pid: number) => [{ pid, start: processStart(pid)! }];
  const ask = (socket: string, request: object) =>
    new Promise<string>((resolve) => {
      const c = net.connect(socket, () => c.write(JSON.stringify(request) + "\n"));
      let text = "";
      c.on("data", (d) => (text += d));
      c.on("close", () => resolve(text));
      c.on("error", () => resolve(text));
    });

  it("answers a step with its output and exit code, refuses a wrong token without running anything, and ends when the update's process is gone", async () => {
    const update = spawn("sleep", ["60"]);
    const socket = path.join(sockDir, "s.sock");
    const ran: string[][] = [];
    let exited: number | undefined;
    const server = await serveSession({
      socketPath: socket,
      token: "right-token",
      anchor: anchorOf(update.pid!),
      watchMs: 20,
      exit: (code) => (exited = code),
      handle: async (argv, io) => {
        ran.push(argv);
        io.out("to stdout");
        io.err("to stderr");
        return 3;
      },
    });
    expect((await fs.stat(socket)).isSocket()).toBe(true);
    expect(await ask(socket, { token: "right-token", argv: ["apply", "x"] })).toBe('{"o":"to stdout\\n"}\n{"e":"to stderr\\n"}\n{"x":3}\n');
    expect(await ask(socket, { token: "wrong-token", argv: ["apply", "y"] })).toBe("");
    expect(ran).toEqual([["apply", "x"]]);
    update.kill("SIGKILL");
    await eventually(() => exited, "the session to end");
    expect(exited).toBe(0);
    await expect(fs.stat(socket)).rejects.toThrow();
    server.close();
  });

  it("ends when the step it is running goes away (a cancelled step), as the CLI would have", async () => {
    const socket = path.join(sockDir, "s.sock");
    let exited: number | undefined;
    const server = await serveSession({
      socketPath: socket,
      token: "t",
      anchor: anchorOf(process.pid),
      exit: (code) => (exited = code),
      handle: () => new Promise<number>(() => undefined),
    });
    const c = net.connect(socket, () => c.write(JSON.stringify({ token: "t", argv: ["apply", "x"] }) + "\n"));
    await new Promise((r) => setTimeout(r, 100));
    c.destroy();
    await eventually(() => exited, "the session to end");
    expect(exited).toBe(1);
    server.close();
  });

  it("refuses a socket directory others can enter", async () => {
    await fs.chmod(sockDir, 0o755);
    await expect(
      serveSession({ socketPath: path.join(sockDir, "s.sock"), token: "t", anchor: anchorOf(process.pid), exit: () => undefined, handle: async () => 0 }),
    ).rejects.toThrow(/must be a 0700 directory of this user/);
  });
});
