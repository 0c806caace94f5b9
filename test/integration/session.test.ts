/**
 * The deploy session (issue #13) against real PostgreSQL, without Pulumi: the
 * program of an update serves its migration steps (infra/cli/session.ts, as
 * infra/stack.ts starts it), and each step is `sh infra/bin/pgstack-step apply
 * <name> --dir migrations` run in the project folder with only
 * $PGSTACK_STACK, as the command provider runs it. No step carries the
 * database URL. Each applies exactly as `pgstack apply` does; a failing one
 * prints the migration's error and line and fails; anything that is not one
 * of the update's own steps gets nothing; a cancelled step's migration is
 * rolled back; without a session a step changes nothing and says why.
 */
import { spawn } from "node:child_process";
import { promises as fs, statSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { run } from "../../infra/cli/main";
import { serveMigrationSteps } from "../../infra/cli/session";
import { withClient } from "../../infra/core/db/client";
import { MIGRATION_LOCK_KEY } from "../../infra/core/db/deployers";
import { processStart, sessionPaths } from "../../infra/core/session/identity";
import { serveSession, type Session } from "../../infra/core/session/server";
import { createTestDatabase, withDb } from "../support/cluster";

jest.setTimeout(120_000);

const REPO = path.resolve(__dirname, "..", "..");
const STEP = path.join(REPO, "infra", "bin", "pgstack-step");
const ONE = "20250101000000_one";
const TWO = "20250102000000_two";
const BAD = "20250103000000_bad";
const SLOW = "20250104000000_slow";
const AFTER = "20250105000000_after";

let project: string;
let stack: string;
let url: string;
let session: Session | undefined;

const apply = (name: string, ...more: string[]) => ["apply", name, "--dir", "migrations", ...more];
const STEPS = [apply(ONE), apply(TWO), apply(BAD), apply(BAD, "--lock-wait", "1"), apply(SLOW), apply(AFTER)];

/** The step's environment: the test's own minus any database URL, plus the stack, as the migration command gives it. */
function stepEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGSTACK_STACK: stack };
  delete env.DATABASE_URL;
  return env;
}

function step(argv: string[], client: string[] = ["sh", STEP]): { done: Promise<{ code: number; stdout: string; stderr: string }>; kill(): void } {
  const child = spawn(client[0], [...client.slice(1), ...argv], { cwd: project, env: stepEnv(), stdio: ["ignore", "pipe", "pipe"], detached: true });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  return {
    done: new Promise((resolve) => child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }))),
    kill: () => process.kill(-child.pid!, "SIGKILL"),
  };
}

const runStep = (argv: string[], client?: string[]) => step(argv, client).done;

async function eventually<T>(probe: () => T | undefined | Promise<T | undefined>, what: string, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const query = async <R extends Record<string, unknown>>(sql: string, params: unknown[] = []) => (await withDb(url, (c) => c.query(sql, params))).rows as R[];
const ledger = () => query(`SELECT migration_name, finished_at IS NOT NULL AS done FROM "_prisma_migrations" ORDER BY started_at`);
const lockHolders = async () =>
  (await query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = $1`, [MIGRATION_LOCK_KEY]))[0].n;

async function serve(env: NodeJS.ProcessEnv = process.env): Promise<Session> {
  session = await serveMigrationSteps({ projectDir: project, stack, databaseUrl: Promise.resolve(url), steps: STEPS, runner: run, env });
  return session;
}

beforeAll(async () => {
  project = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-session-"));
  stack = `test-${path.basename(project)}`;
  const add = async (name: string, sql: string) => {
    await fs.mkdir(path.join(project, "migrations", name), { recursive: true });
    await fs.writeFile(path.join(project, "migrations", name, "migration.sql"), sql);
  };
  await add(ONE, "CREATE TABLE one (id int);\n");
  await add(TWO, "CREATE TABLE two (id int);\nINSERT INTO two VALUES (2);\n");
  await add(BAD, "CREATE TABLE three (id int);\nINSERT INTO nowhere VALUES (1);\n");
  await add(SLOW, "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);\n");
  await add(AFTER, "CREATE TABLE after_slow (id int);\n");
  url = await createTestDatabase("session");
});

afterEach(() => {
  session?.close();
  session = undefined;
});

afterAll(async () => {
  await fs.rm(project, { recursive: true, force: true });
});

describe("the deploy session served by the update's program", () => {
  it("runs each of the update's steps as `pgstack apply` would, with no URL in the step; a failing one fails with its line", async () => {
    await serve();
    // Until its first step the program holds no connection (the pre-update snapshot must find the database idle
    // to take a template copy), also after reading the database as the program does.
    await withClient(url, (c) => c.query("SELECT 1"));
    expect(await query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgstack' AND pid <> pg_backend_pid()`)).toEqual([]);
    const { socket, tokenFile } = sessionPaths(await fs.realpath(project), stack);
    // The token only this user can read, next to the socket, in a directory only this user can enter.
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(socket)).mode & 0o777).toBe(0o700);

    // Applied at the first attempt: nothing to add to what Pulumi shows (the step, its duration).
    const one = await runStep(apply(ONE));
    expect(one).toEqual({ code: 0, stdout: "", stderr: "" });
    expect((await runStep(apply(TWO))).code).toBe(0);
    const again = await runStep(apply(TWO));
    expect(again).toMatchObject({ code: 0, stdout: `Migration ${TWO} is already applied; nothing to do.\n` });
    const bad = await runStep(apply(BAD));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`pgstack: Migration ${BAD} failed at line 2 of migration.sql: relation "nowhere" does not exist`);
    expect(await ledger()).toEqual([
      { migration_name: ONE, done: true },
      { migration_name: TWO, done: true },
      { migration_name: BAD, done: false },
    ]);
    expect(await query(`SELECT tablename FROM pg_tables WHERE tablename IN ('one', 'two', 'three') ORDER BY 1`)).toEqual([{ tablename: "one" }, { tablename: "two" }]);
  });

  it("the Node.js client (for machines without a C compiler) is served the same way", async () => {
    await serve();
    const result = await runStep(apply(TWO), ["node", path.join(REPO, "infra", "bin", "step-client.js")]);
    expect(result).toMatchObject({ code: 0, stdout: `Migration ${TWO} is already applied; nothing to do.\n` });
  });

  it("refuses a command line that is not one of the update's steps, and a request without the token, running nothing", async () => {
    await serve();
    const before = await ledger();
    const other = await runStep(["apply", "--all", "--dir", "migrations"]);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain("pgstack: this update's deploy session runs only its own migration steps; got 'apply --all --dir migrations'.");

    // Whatever the argument's characters, each client hands it over and relays the answer byte for byte.
    const odd = ["apply", `we"ird\\ \n\tnamé €`, "--dir", "migrations"];
    for (const client of [undefined, ["node", path.join(REPO, "infra", "bin", "step-client.js")]]) {
      expect(await runStep(odd, client)).toEqual({
        code: 2,
        stdout: "",
        stderr: `pgstack: this update's deploy session runs only its own migration steps; got '${odd.join(" ")}'.\n`,
      });
    }

    // A client that did not read the token: the connection is closed without an answer.
    const { socket } = sessionPaths(await fs.realpath(project), stack);
    const answer = await new Promise<string>((resolve) => {
      let got = "";
      const conn = net.connect(socket, () => conn.write(JSON.stringify({ token: "0".repeat(64), argv: apply(AFTER) }) + "\n"));
      conn.on("data", (d) => (got += d));
      conn.on("close", () => resolve(got));
      conn.on("error", () => undefined);
    });
    expect(answer).toBe("");
    expect(await ledger()).toEqual(before);
    expect(await query(`SELECT 1 FROM pg_tables WHERE tablename = 'after_slow'`)).toEqual([]);
  });

  it("takes the deployer lock at its first step: while another deployer holds it, the step waits and then fails naming it", async () => {
    await serve();
    await withDb(url, async (holder) => {
      await holder.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
      const result = await runStep(apply(BAD, "--lock-wait", "1"));
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/Another deployer holds the migration lock on database '[^']+' \(pid \d+/);
    });
  });

  it("a step cancelled mid-migration leaves nothing of it and the lock free, and the session serves the next step", async () => {
    await fs.writeFile(path.join(project, "migrations", BAD, "migration.sql"), "CREATE TABLE three (id int);\n");
    await serve();
    expect((await runStep(apply(BAD))).code).toBe(0);
    const slow = step(apply(SLOW));
    await eventually(async () => ((await query(`SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()`)).length > 0 ? true : undefined), "the slow migration to run");
    expect(await lockHolders()).toBe(1);
    slow.kill();
    expect((await slow.done).code).not.toBe(0);
    await eventually(async () => ((await query(`SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()`)).length === 0 ? true : undefined), "the slow migration to stop");
    await eventually(async () => ((await lockHolders()) === 0 ? true : undefined), "the lock to be free");
    expect(await query(`SELECT 1 FROM pg_tables WHERE tablename = 'slow'`)).toEqual([]);
    expect((await ledger()).filter((r) => r.migration_name === SLOW)).toEqual([]);
    // The next step is served on a new connection.
    await fs.writeFile(path.join(project, "migrations", SLOW, "migration.sql"), "CREATE TABLE slow (id int);\n");
    expect((await runStep(apply(SLOW))).code).toBe(0);
    expect((await runStep(apply(AFTER))).code).toBe(0);
    expect((await ledger()).filter((r) => r.done).map((r) => r.migration_name)).toEqual([ONE, TWO, BAD, SLOW, AFTER]);
  });

  it("without a serving program, a step changes nothing and says why", async () => {
    await serve();
    session!.close();
    session = undefined;
    const result = await runStep(apply(ONE));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`^pgstack-step: no deploy session for stack '${stack}' in .*: the migration steps run only inside \`pulumi up\`, whose program serves them\\n$`));
    const bare = spawn("sh", [STEP, ...apply(ONE)], { cwd: project, env: { ...stepEnv(), PGSTACK_STACK: "" }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    bare.stderr.on("data", (d) => (stderr += d));
    expect(await new Promise((r) => bare.on("close", r))).toBe(1);
    expect(stderr).toContain("a migration step runs inside `pulumi up` of its stack ($PGSTACK_STACK is not set)");
  });

  it("refuses a socket path too long for the platform, in the program and in both clients, leaving no token behind", async () => {
    const long = path.join(os.tmpdir(), `pgstack-long-${"x".repeat(90)}`);
    const env = { ...process.env, XDG_RUNTIME_DIR: long };
    const { socket, tokenFile } = sessionPaths(await fs.realpath(project), stack, env);
    const sentence = `the deploy session's socket path is too long (${socket}): set XDG_RUNTIME_DIR or TMPDIR to a shorter directory`;
    try {
      await expect(serveMigrationSteps({ projectDir: project, stack, databaseUrl: Promise.resolve(url), steps: STEPS, runner: run, env })).rejects.toThrow(
        `The deploy session's socket path is too long (${socket}): set XDG_RUNTIME_DIR or TMPDIR to a shorter directory.`,
      );
      // Refused before anything was written: not even the folder.
      await expect(fs.stat(path.dirname(tokenFile))).rejects.toThrow();
      // A client that finds a token there says the same, and changes nothing.
      await fs.mkdir(path.dirname(tokenFile), { recursive: true, mode: 0o700 });
      await fs.writeFile(tokenFile, "t", { mode: 0o600 });
      const before = await ledger();
      for (const client of [["sh", STEP], ["node", path.join(REPO, "infra", "bin", "step-client.js")]]) {
        const child = spawn(client[0], [...client.slice(1), ...apply(AFTER)], { cwd: project, env: { ...stepEnv(), XDG_RUNTIME_DIR: long }, stdio: ["ignore", "pipe", "pipe"] });
        let stderr = "";
        child.stderr.on("data", (d) => (stderr += d));
        expect(await new Promise((r) => child.on("close", r))).toBe(1);
        expect(stderr).toBe(`pgstack-step: ${sentence}\n`);
      }
      expect(await ledger()).toEqual(before);
    } finally {
      await fs.rm(long, { recursive: true, force: true });
    }
  });

  it("refuses to start while another update of the same stack and folder serves its steps", async () => {
    await serve();
    await expect(serveMigrationSteps({ projectDir: project, stack, databaseUrl: Promise.resolve(url), steps: STEPS, runner: run })).rejects.toThrow(
      `Another pulumi update of stack '${stack}' from ${project} is serving its migration steps`,
    );
  });
});

describe("one deployer for the whole chain, as one `apply --all`", () => {
  const chainStep = (name: string) => ["apply", name, "--dir", "chain"];
  let chainUrl: string;
  const holders = async (db = chainUrl) =>
    (
      await withDb(db, (c) =>
        c.query<{ pid: number; app: string }>(
          `SELECT a.pid, a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a USING (pid)
            WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = $1 AND l.granted`,
          [MIGRATION_LOCK_KEY],
        ),
      )
    ).rows;
  const pgstackSessions = async (db = chainUrl) =>
    (await withDb(db, (c) => c.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgstack'`))).rows.length;

  beforeAll(async () => {
    for (const [name, sql] of [
      ["20250201000000_c1", "CREATE TABLE c1 (id int);\n"],
      ["20250202000000_c2", "CREATE TABLE c2 (id int);\n"],
      ["20250203000000_c3", "CREATE TABLE c3 (id int);\n"],
      ["20250204000000_bad", "CREATE TABLE c4 (id int);\nINSERT INTO nowhere VALUES (1);\n"],
    ]) {
      await fs.mkdir(path.join(project, "chain", name), { recursive: true });
      await fs.writeFile(path.join(project, "chain", name, "migration.sql"), sql);
    }
    chainUrl = await createTestDatabase("session_chain");
  });

  it("holds its connection and the lock from the first step to the chain's last one, then frees both", async () => {
    const steps = ["20250201000000_c1", "20250202000000_c2", "20250203000000_c3"].map(chainStep);
    session = await serveMigrationSteps({ projectDir: project, stack, databaseUrl: Promise.resolve(chainUrl), steps, runner: run });
    expect(await runStep(steps[0])).toEqual({ code: 0, stdout: "", stderr: "" });
    const [holder] = await holders();
    expect(holder.app).toBe("pgstack");
    // Between steps no other deployer gets in: a `pgstack apply` waits for the lock, then fails naming the session.
    const lines: string[] = [];
    const other = await run(["apply", "--all", "--dir", path.join(project, "chain"), "--lock-wait", "1"], {
      env: { ...process.env, DATABASE_URL: chainUrl },
      output: { out: (l) => lines.push(l), err: (l) => lines.push(l) },
      logger: () => ({ info: () => undefined, warn: () => undefined, error: () => undefined }) as never,
    });
    expect(other).toBe(1);
    expect(lines.join("\n")).toContain(`Another deployer holds the migration lock on database`);
    expect(lines.join("\n")).toContain(`(pid ${holder.pid}, application_name 'pgstack')`);
    expect((await runStep(steps[1])).code).toBe(0);
    expect(await holders()).toEqual([holder]);
    expect((await runStep(steps[2])).code).toBe(0);
    // After the last step: no lock, no connection of the program left.
    await eventually(async () => ((await holders()).length === 0 && (await pgstackSessions()) === 0 ? true : undefined), "the session to let go");
    expect((await withDb(chainUrl, (c) => c.query(`SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL ORDER BY 1`))).rows.map((r) => r.migration_name)).toEqual(
      steps.map((s) => s[1]),
    );
  });

  it("frees the lock and its connection at a failed step, where the chain stops", async () => {
    const steps = ["20250203000000_c3", "20250204000000_bad"].map(chainStep);
    session = await serveMigrationSteps({ projectDir: project, stack, databaseUrl: Promise.resolve(chainUrl), steps: [...steps, chainStep("20250205000000_never")], runner: run });
    expect((await runStep(steps[0])).code).toBe(0);
    expect(await holders()).toHaveLength(1);
    const failed = await runStep(steps[1]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain("Migration 20250204000000_bad failed at line 2 of migration.sql");
    await eventually(async () => ((await holders()).length === 0 && (await pgstackSessions()) === 0 ? true : undefined), "the session to let go");
  });

  it("split around the application rollout: keeps the connection and the lock through the rollout, so no other deployer applies a contract migration while the old version may serve", async () => {
    const db = await createTestDatabase("session_phases");
    const steps = ["20250201000000_c1", "20250202000000_c2", "20250203000000_c3"].map(chainStep);
    session = await serveMigrationSteps({ projectDir: project, stack, databaseUrl: Promise.resolve(db), steps, runner: run });
    expect((await runStep(steps[0])).code).toBe(0);
    // The rollout (between the last expand step and the first contract step): the program still holds the lock.
    const [holder] = await holders(db);
    expect(holder.app).toBe("pgstack");
    await withDb(db, async (c) => {
      expect((await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [MIGRATION_LOCK_KEY])).rows[0].ok).toBe(false);
    });
    // Another deployer (a CI job's `pgstack apply --all`, or the same as `prisma migrate deploy` at the new version's start) times out, applying nothing.
    const lines: string[] = [];
    const other = await run(["apply", "--all", "--dir", path.join(project, "chain"), "--lock-wait", "1"], {
      env: { ...process.env, DATABASE_URL: db },
      output: { out: (l) => lines.push(l), err: (l) => lines.push(l) },
      logger: () => ({ info: () => undefined, warn: () => undefined, error: () => undefined }) as never,
    });
    expect(other).toBe(1);
    expect(lines.join("\n")).toContain(`Another deployer holds the migration lock on database`);
    const applied = () => withDb(db, (c) => c.query(`SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL ORDER BY 1`)).then((r) => r.rows.map((x) => x.migration_name));
    expect(await applied()).toEqual([steps[0][1]]);
    // The contract phase: the same deployer, from the first step to the last.
    expect((await runStep(steps[1])).code).toBe(0);
    expect(await holders(db)).toEqual([holder]);
    expect((await runStep(steps[2])).code).toBe(0);
    await eventually(async () => ((await holders(db)).length === 0 && (await pgstackSessions(db)) === 0 ? true : undefined), "the session to let go");
    expect(await applied()).toEqual(steps.map((s) => s[1]));
  });
});

describe("serveSession", () => {
  let sockDir: string;
  beforeAll(async () => {
    sockDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-sock-"));
    await fs.chmod(sockDir, 0o700);
  });
  afterAll(() => fs.rm(sockDir, { recursive: true, force: true }));

  it("runs onUpdateGone once a process of the update is gone, and stops listening", async () => {
    const child = spawn("sleep", ["60"], { stdio: "ignore" });
    await eventually(() => processStart(child.pid!), "the child to start");
    let gone = 0;
    const socketPath = path.join(sockDir, "u.sock");
    const served = await serveSession({
      socketPath,
      token: "t",
      anchor: [{ pid: child.pid!, start: processStart(child.pid!)! }],
      watchMs: 20,
      handle: async () => 0,
      onStepGone: () => undefined,
      onUpdateGone: () => void gone++,
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(gone).toBe(0);
    child.kill("SIGKILL");
    await eventually(() => (gone === 1 ? true : undefined), "onUpdateGone");
    await expect(fs.stat(socketPath)).rejects.toThrow();
    served.close();
  });

  it("refuses a socket directory others can enter", async () => {
    const open = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-open-"));
    await fs.chmod(open, 0o755);
    await expect(
      serveSession({ socketPath: path.join(open, "s.sock"), token: "t", handle: async () => 0, onStepGone: () => undefined, onUpdateGone: () => undefined }),
    ).rejects.toMatchObject({ code: "E_SESSION_DIR", message: expect.stringContaining(`The deploy session's folder ${open} has mode 755, not 700: remove it`) });
    await fs.rm(open, { recursive: true, force: true });
  });
});
