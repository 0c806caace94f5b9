/**
 * The migration steps' deploy session (issue #13) with the real pulumi CLI:
 * the update's own program serves its steps, which carry no database URL; a
 * `pulumi up` killed in the middle of a migration leaves no process behind
 * (the program included), the deployer lock free and nothing of that
 * migration applied, and the next `up` applies exactly the migrations that
 * had not run. A failing step still fails with the migration's error and line
 * in its own output.
 */
import { spawn } from "node:child_process";
import { promises as fs, readdirSync, readFileSync, readlinkSync } from "node:fs";
import * as path from "node:path";
import { MIGRATION_LOCK_KEY } from "../../infra/core/db/deployers";
import { ensureToolchain } from "../../infra/toolchain/pulumi";
import { withDb } from "../support/cluster";
import { changedSteps, createE2eProject, expectOk, type E2eProject } from "../support/e2e-project";

jest.setTimeout(600_000);

const STACK = "dev";
const GATE = "29990101000000_e2e_gate";
const SLOW = "29990102000000_e2e_slow";
const AFTER = "29990103000000_e2e_after";
const BAD = "29990104000000_e2e_bad";
let project: E2eProject;
let url: string;

/**
 * Processes whose working directory or command line is in the project copy,
 * other than the PostgreSQL server (the stack's database, which outlives
 * updates) and Pulumi's own binaries: its language host and the command
 * provider outlive a SIGKILLed engine by tens of seconds (the same with no-op
 * commands). What is left is pgstack's: the program that serves the steps
 * (`includePrograms`), a step's shell, its client, the CLI.
 */
function projectProcesses(includePrograms = false): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      if (comm === "postgres" || comm.startsWith("pulumi-")) continue;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
      if (!includePrograms && cmd.includes("@pulumi/pulumi/cmd/run")) continue;
      let cwd = "";
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {
        // another user's process
      }
      if (cwd.startsWith(project.dir) || cmd.includes(project.dir)) found.push({ pid, cmd });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // A probe may fail while the snapshot copy has the database closed to connections: try again.
    const value = await Promise.resolve()
      .then(probe)
      .catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const query = <R extends Record<string, unknown>>(sql: string, params: unknown[] = []) => withDb(url, async (c) => (await c.query(sql, params)).rows as R[]);

const lockHolders = async () =>
  (
    await query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = $1
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [MIGRATION_LOCK_KEY],
    )
  )[0].n;

const ledger = () =>
  query<{ migration_name: string; started_at: Date; finished_at: Date | null; rolled_back_at: Date | null }>(
    `SELECT migration_name, started_at, finished_at, rolled_back_at FROM "_prisma_migrations" WHERE migration_name LIKE '2999%' ORDER BY started_at`,
  );

beforeAll(async () => {
  project = await createE2eProject(STACK);
});

let afterEachKill: (() => unknown) | undefined;
afterEach(() => {
  afterEachKill?.();
  afterEachKill = undefined;
});

afterAll(async () => {
  await project?.teardown(STACK);
});

describe("the migration steps' deploy session", () => {
  it("a first up applies the history through the program's session; no step's state holds the database URL", async () => {
    expectOk(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), "first up");
    url = JSON.parse(expectOk(await project.pulumi(["stack", "output", "--json", "--show-secrets", "--stack", STACK]), "outputs").stdout).databaseUrl;
    // The step client was built and used.
    expect((await fs.stat(path.join(project.dir, ".pgstack", "cache", "pgstack-step-v3"))).isFile()).toBe(true);
    await waitFor("no process of the update left", () => (projectProcesses(true).length === 0 ? true : undefined), 15_000);
    expect(await lockHolders()).toBe(0);
    // Every migration step's state: its command, the stack's name, its triggers; no secret, no URL.
    const state = JSON.parse(expectOk(await project.pulumi(["stack", "export", "--show-secrets", "--stack", STACK]), "export").stdout);
    const steps = (state.deployment.resources as { type: string; urn: string; inputs: Record<string, unknown>; outputs: Record<string, unknown> }[]).filter(
      (r) => r.type === "command:local:Command" && /::migrations-\d{14}_/.test(r.urn),
    );
    expect(steps.length).toBeGreaterThan(3);
    for (const s of steps) {
      expect(s.inputs.environment).toEqual({ PGSTACK_STACK: STACK });
      expect(JSON.stringify(s)).not.toContain(url);
      expect(JSON.stringify(s)).not.toContain("4dabf18193072939515e22adb298388d"); // Pulumi's secret signature
    }
  });

  it("a pulumi up killed mid-migration leaves no process, the lock free and nothing of that migration; the next up applies exactly the rest", async () => {
    // 120 s on the stack's server only: the verification after the next up replays the history on a
    // throwaway server of its own port, where the slow migration must not sleep (it took 120 s there).
    await project.addMigration(
      GATE,
      `CREATE TABLE e2e_gate (seconds int NOT NULL);\nINSERT INTO e2e_gate SELECT CASE WHEN current_setting('port')::int = ${project.port} THEN 120 ELSE 0 END;\n`,
    );
    await project.addMigration(SLOW, "CREATE TABLE e2e_slow (id int);\nSELECT pg_sleep((SELECT seconds FROM e2e_gate));\n");
    await project.addMigration(AFTER, "CREATE TABLE e2e_after (id int);\n");

    const plan = await ensureToolchain({ log: () => undefined });
    const up = spawn(plan.pulumi, ["up", "--yes", "--skip-preview", "--stack", STACK, "--non-interactive"], {
      cwd: project.dir,
      env: project.env as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let printed = "";
    up.stdout.on("data", (d) => (printed += d));
    up.stderr.on("data", (d) => (printed += d));
    const exited = new Promise<void>((resolve) => up.on("close", () => resolve()));

    // Whatever happens below, this update does not outlive the test.
    const killUp = () => up.exitCode === null && up.signalCode === null && up.kill("SIGKILL");
    afterEachKill = killUp;

    // The slow migration is running inside the session (its pg_sleep is on the server), the gate is applied.
    await waitFor(
      "the slow migration to be running",
      async () => ((await query(`SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep((SELECT seconds FROM e2e_gate))%' AND state = 'active' AND pid <> pg_backend_pid()`)).length > 0 ? true : undefined),
      240_000,
    );
    // The program serves the step: no pgstack process of its own runs beside the step's client.
    expect(projectProcesses().filter((p) => /pgstack\.js/.test(p.cmd))).toEqual([]);
    expect(await lockHolders()).toBe(1);
    const gateRow = (await ledger()).find((r) => r.migration_name === GATE)!;
    expect(gateRow.finished_at).not.toBeNull();

    up.kill("SIGKILL");
    await exited;

    // Nothing of the update is left running (its program included: it serves no dead update), and the
    // server has rolled the migration back and freed the lock.
    const leftovers = await waitFor("every process of the killed update to end", () => (projectProcesses(true).length === 0 ? true : undefined), 20_000).catch(
      () => projectProcesses(true),
    );
    if (leftovers !== true) throw new Error(`left running: ${JSON.stringify(leftovers)}\nthe killed update printed:\n${printed}`);
    await waitFor("the deployer lock to be free", async () => ((await lockHolders()) === 0 ? true : undefined), 10_000);
    expect(await query(`SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND state = 'active' AND pid <> pg_backend_pid()`)).toEqual([]);
    expect(await query(`SELECT 1 FROM pg_tables WHERE tablename IN ('e2e_slow', 'e2e_after')`)).toEqual([]);
    expect((await ledger()).map((r) => r.migration_name)).toEqual([GATE]);

    // The next up (after `pulumi cancel`, which any killed update of a file:// backend needs to drop
    // Pulumi's own stack lock): the gate stays as it was, the slow one (quick now) and the one after it
    // run, once each.
    await query("UPDATE e2e_gate SET seconds = 0");
    expectOk(await project.pulumi(["cancel", "--yes", "--stack", STACK]), "cancel");
    const next = expectOk(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), `up after the kill (killed update printed:\n${printed})`);
    const rows = await ledger();
    expect(rows.map((r) => r.migration_name)).toEqual([GATE, SLOW, AFTER]);
    expect(rows.every((r) => r.finished_at !== null && r.rolled_back_at === null)).toBe(true);
    expect(rows[0].started_at).toEqual(gateRow.started_at);
    expect(next.stdout).toContain(`migrations-${SLOW}`);
    expect(next.stdout).toContain(`migrations-${AFTER}`);
    expect(await query(`SELECT tablename FROM pg_tables WHERE tablename IN ('e2e_slow', 'e2e_after') ORDER BY 1`)).toEqual([
      { tablename: "e2e_after" },
      { tablename: "e2e_slow" },
    ]);
    const preview = expectOk(await project.pulumi(["preview", "--json", "--stack", STACK]), "preview after");
    expect(changedSteps(preview.stdout)).toEqual([]);
    await waitFor("no process of the update left", () => (projectProcesses(true).length === 0 ? true : undefined), 15_000);
    expect(await lockHolders()).toBe(0);
  });

  it("a failing step fails with the migration's error and line in its own output, through the session", async () => {
    await project.pulumi(["cancel", "--yes", "--stack", STACK]); // in case the test before left Pulumi's stack lock
    await project.addMigration(BAD, "CREATE TABLE e2e_bad (id int);\nINSERT INTO e2e_nowhere VALUES (1);\n");
    const up = await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]);
    expect(up.code).not.toBe(0);
    expect(up.stdout + up.stderr).toContain(`Migration ${BAD} failed at line 2 of migration.sql: relation "e2e_nowhere" does not exist`);
    expect(up.stdout + up.stderr).toMatch(new RegExp(`migrations-${BAD}[\\s\\S]*error`));
    expect(await query(`SELECT 1 FROM pg_tables WHERE tablename = 'e2e_bad'`)).toEqual([]);
    await waitFor("no process of the update left", () => (projectProcesses(true).length === 0 ? true : undefined), 15_000);
    expect(await lockHolders()).toBe(0);
  });
});
