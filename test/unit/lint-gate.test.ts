/**
 * `lint: strict` as a guard of the Pulumi program: a preview or up that would
 * run a migration with an unaccepted blocking finding stops before any
 * resource is registered. The program runs under mocks; the lint is real
 * (Squawk plus pgstack's checks).
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { migrationsToGate } from "../../infra/guards/lint";
import { fakeProject, REPO_ROOT, runStack, stackFileConfig } from "../support/pulumi-mocks";

jest.setTimeout(60_000);

const INDEX = "20270101000000_add_users_name_idx";
const DROP = "20270102000000_drop_users_image";
const INDEX_SQL = '-- CreateIndex\nCREATE INDEX "users_name_idx" ON "users"("name");\n';
const DROP_SQL = '-- AlterTable\nALTER TABLE "users" DROP COLUMN "image";\n';

let migrationsDir: string;
let repoMigrations: string[];

async function writeMigration(name: string, sql: string): Promise<void> {
  await fs.mkdir(path.join(migrationsDir, name), { recursive: true });
  await fs.writeFile(path.join(migrationsDir, name, "migration.sql"), sql);
}

beforeAll(async () => {
  migrationsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-gate-"));
  await fs.cp(path.join(REPO_ROOT, "migrations"), migrationsDir, { recursive: true });
  repoMigrations = (await fs.readdir(migrationsDir)).filter((n) => /^\d{14}_/.test(n)).sort();
  await writeMigration(INDEX, INDEX_SQL);
  await writeMigration(DROP, DROP_SQL);
});
afterAll(() => fs.rm(migrationsDir, { recursive: true, force: true }));

async function prodRun(previousOutputs?: Record<string, unknown>, extraConfig: Record<string, unknown> = {}, stack = "prod") {
  const projectDir = await fakeProject({ migrations: migrationsDir, password: stack === "dev" ? "0123456789abcdef0123456789abcdef" : undefined });
  try {
    const config = { ...(await stackFileConfig(stack === "dev" ? "dev" : "prod")), ...extraConfig };
    return await runStack({ stack, config, projectDir, previousOutputs, preview: true });
  } finally {
    await fs.rm(projectDir, { recursive: true, force: true });
  }
}

describe("which migrations the gate lints", () => {
  const m = (name: string) => ({ name }) as never;
  it("those the stack's last update did not apply, up to the pin; nothing on a first deployment", () => {
    const all = [m("20250101000000_a"), m("20250102000000_b"), m("20250103000000_c")];
    expect(migrationsToGate(all, ["20250101000000_a"]).map((x: { name: string }) => x.name)).toEqual(["20250102000000_b", "20250103000000_c"]);
    expect(migrationsToGate(all, ["20250101000000_a"], "20250102000000_b").map((x: { name: string }) => x.name)).toEqual(["20250102000000_b"]);
    expect(migrationsToGate(all, undefined)).toEqual([]);
  });
});

describe("a strict stack (prod)", () => {
  it("refuses the update with every blocking finding of the migrations it would run, ", async () => {
    let error: Error | undefined;
    try {
      await prodRun({ appliedMigrations: repoMigrations });
    } catch (err) {
      error = err as Error;
    }
    expect(error).toBeDefined();
    expect(error!.constructor.name).toBe("RunError");
    const lines = error!.message.split("\n");
    expect(lines[0]).toMatch(/^Stack 'prod' has lint: strict and /);
    expect(error!.message).toContain(`${INDEX}/migration.sql:2: `);
    expect(error!.message).toContain(`${DROP}/migration.sql:2: `);
    expect(error!.message).not.toMatch(/\n\s+at /);
  });

  it("lets the update through once both findings are accepted with a reason", async () => {
    const before = { index: INDEX_SQL, drop: DROP_SQL };
    await writeMigration(INDEX, `-- pgstack:allow require-concurrent-index-creation users is small (200 rows)\n${INDEX_SQL}`);
    // A DROP COLUMN is also a contract migration: with no rollout wired, strict wants it acknowledged (see phases.test.ts).
    await writeMigration(DROP, `-- pgstack:allow ban-drop-column image was never read since v2\n-- pgstack:allow-contract image was never read since v2\n${DROP_SQL}`);
    try {
      const run = await prodRun({ appliedMigrations: repoMigrations });
      expect(run.resources.map((r) => r.name)).toEqual(expect.arrayContaining([`migrations-${INDEX}`, `migrations-${DROP}`]));
    } finally {
      await writeMigration(INDEX, before.index);
      await writeMigration(DROP, before.drop);
    }
  });

  it("does not re-lint migrations its last update already applied", async () => {
    const run = await prodRun({ appliedMigrations: [...repoMigrations, INDEX, DROP] });
    expect(run.resources.some((r) => r.type === "aws:rds/instance:Instance")).toBe(true);
  });

  it("starts gating with its first successful update (no outputs yet: the history already ran elsewhere)", async () => {
    const run = await prodRun(undefined);
    expect(run.resources.some((r) => r.type === "aws:rds/instance:Instance")).toBe(true);
  });
});

describe("a warn stack (dev by default)", () => {
  it("runs the same migrations (plan and lint print the findings instead)", async () => {
    const run = await prodRun({ appliedMigrations: repoMigrations }, {}, "dev");
    expect(run.resources.map((r) => r.name)).toEqual(expect.arrayContaining([`migrations-${INDEX}`, `migrations-${DROP}`]));
  });

  it("fails like prod once lint: strict is set on it", async () => {
    await expect(prodRun({ appliedMigrations: repoMigrations }, { "pgstack:lint": "strict" }, "dev")).rejects.toThrow(/^Stack 'dev' has lint: strict and /);
  });
});
