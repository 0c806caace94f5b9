/**
 * Adversarial case for the lock released during the application rollout
 * (issue 24, item 2): between the expand and the contract phase of one
 * `pulumi up` the deploy session lets go of the migration lock, so "anything
 * else that deploys" can (README). Another pgstack deployer then applies the
 * contract migration while the old version still serves: the order the phases
 * promise (contract only after the rollout) is gone.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { run } from "../../infra/cli/main";
import { serveMigrationSteps } from "../../infra/cli/session";
import type { Session } from "../../infra/core/session/server";
import { pgstack } from "../support/cli";
import { createTestDatabase, withDb } from "../support/cluster";

jest.setTimeout(120_000);

const REPO = path.resolve(__dirname, "..", "..");
const STEP = path.join(REPO, "infra", "bin", "pgstack-step");
const INIT = "20250101000000_init";
const EXPAND = "20250102000000_add_full_name";
const CONTRACT = "20250103000000_drop_name";

let project: string;
let stack: string;
let session: Session | undefined;

function runStep(argv: string[]): Promise<{ code: number; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, PGSTACK_STACK: stack };
  delete env.DATABASE_URL;
  const child = spawn("sh", [STEP, ...argv], { cwd: project, env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code: code ?? 1, stderr })));
}

beforeAll(async () => {
  project = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-adv-window-"));
  stack = `adv-${path.basename(project)}`;
  const add = async (name: string, sql: string) => {
    await fs.mkdir(path.join(project, "migrations", name), { recursive: true });
    await fs.writeFile(path.join(project, "migrations", name, "migration.sql"), sql);
  };
  await add(INIT, `CREATE TABLE "users" ("id" SERIAL PRIMARY KEY, "name" TEXT);\n`);
  await add(EXPAND, `ALTER TABLE "users" ADD COLUMN "full_name" TEXT;\n`);
  await add(CONTRACT, `ALTER TABLE "users" DROP COLUMN "name";\n`);
});
afterEach(() => {
  session?.close();
  session = undefined;
});
afterAll(async () => {
  await fs.rm(project, { recursive: true, force: true });
});

describe("the rollout window between the phases", () => {
  test("another pgstack deployer (apply --all, as a CI job or the new version's start runs it) does not apply the contract migration before the rollout is done", async () => {
    const url = await createTestDatabase("adv_window");
    const ok = await pgstack(["apply", INIT, "--dir", path.join(project, "migrations")], { DATABASE_URL: url });
    expect(ok.code).toBe(0);
    const steps = [EXPAND, CONTRACT].map((m) => ["apply", m, "--dir", "migrations"]);
    // What infra/stack.ts serves for a chain split before CONTRACT: it lets go after the last expand step.
    session = await serveMigrationSteps({ projectDir: project, stack, databaseUrl: Promise.resolve(url), steps, releaseAfter: [steps[0]], runner: run });
    expect((await runStep(steps[0])).code).toBe(0);

    // The rollout is under way; the old version still serves and reads "name". Another deployer runs meanwhile.
    await pgstack(["apply", "--all", "--dir", path.join(project, "migrations")], { DATABASE_URL: url });
    const columns = await withDb(url, async (c) =>
      (await c.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position`)).rows.map((r) => r.column_name),
    );
    expect(columns).toContain("name");
  });
});
