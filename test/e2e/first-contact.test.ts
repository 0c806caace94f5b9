/**
 * A newcomer's first `npm run dev` on a fresh clone brings up PostgreSQL 18 (the
 * default major) with every migration of the folder applied, and leaves the
 * checkout as it was cloned: every file it writes (state, data, generated
 * client, caches) is git-ignored.
 */
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { withDb } from "../support/cluster";
import { createE2eProject, expectOk, type E2eProject } from "../support/e2e-project";

jest.setTimeout(600_000);

let project: E2eProject;

beforeAll(async () => {
  project = await createE2eProject("dev");
  const git = (...args: string[]) => execFileSync("git", args, { cwd: project.dir, encoding: "utf8" });
  git("init", "-q");
  git("-c", "user.email=e2e@pgstack.invalid", "-c", "user.name=e2e", "add", "-A");
  git("-c", "user.email=e2e@pgstack.invalid", "-c", "user.name=e2e", "commit", "-qm", "clone");
});
afterAll(async () => project?.teardown("dev"));

test("npm run dev brings the dev database up and git status stays empty", async () => {
  const dev = expectOk(await project.script("dev", []), "npm run dev");
  expect(dev.stderr).toContain("dev database ready");
  expect(dev.stdout + dev.stderr).not.toMatch(/npm error|warning: using pulumi-/i);
  expect(execFileSync("git", ["status", "--porcelain"], { cwd: project.dir, encoding: "utf8" })).toBe("");
  // The CLI answers on the stack's own database (URL from the stack).
  const status = expectOk(await project.cli(["status", "--stack", "dev", "--json"]), "pgstack status --stack dev");
  const states = (JSON.parse(status.stdout) as { migrations: { state: string }[] }).migrations.map((m) => m.state);
  expect(states.length).toBeGreaterThan(0);
  expect(new Set(states)).toEqual(new Set(["applied"]));

  // PostgreSQL 18, and the ledger holds exactly the migrations folder, each finished.
  const out = expectOk(await project.pulumi(["stack", "output", "--json", "--show-secrets", "--stack", "dev"]), "pulumi stack output");
  const url = (JSON.parse(out.stdout) as { databaseUrl: string }).databaseUrl;
  const folder = (await fs.readdir(path.join(project.dir, "migrations"), { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  expect(folder.length).toBeGreaterThan(0);
  await withDb(url, async (c) => {
    const versionNum = Number((await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0].v);
    expect(versionNum).toBeGreaterThanOrEqual(180000);
    expect(versionNum).toBeLessThan(190000);
    const { rows } = await c.query<{ migration_name: string }>(
      `SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY migration_name`,
    );
    expect(rows.map((r) => r.migration_name)).toEqual(folder);
  });
});
