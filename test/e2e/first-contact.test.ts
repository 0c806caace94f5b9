/**
 * A newcomer's first `npm run dev` leaves the checkout as it was cloned: every
 * file it writes (state, data, generated client, caches) is git-ignored.
 */
import { execFileSync } from "node:child_process";
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
});
