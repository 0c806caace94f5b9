/**
 * A stack deployed before pgstack was a package (its database, snapshot,
 * migrations and seed registered at the top level of the program) upgrades to
 * the PgStack component with nothing replaced, created or deleted but the
 * component itself: the parts keep their state through their aliases.
 */
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { changedSteps, createE2eProject, expectOk, REPO_ROOT, type E2eProject } from "../support/e2e-project";

jest.setTimeout(600_000);

/** The last program with the top-level layout. */
const TOP_LEVEL_PROGRAM = "3966560";

let project: E2eProject;

beforeAll(async () => {
  project = await createE2eProject("dev");
});
afterAll(async () => project?.teardown("dev"));

test("an existing stack's preview after the upgrade creates only the component and replaces nothing", async () => {
  const program = path.join(project.dir, "infra", "index.ts");
  const current = await fs.readFile(program, "utf8");
  await fs.writeFile(program, execFileSync("git", ["show", `${TOP_LEVEL_PROGRAM}:infra/index.ts`], { cwd: REPO_ROOT, encoding: "utf8" }));
  expectOk(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", "dev"]), "pulumi up (top-level layout)");
  const before = JSON.parse(expectOk(await project.pulumi(["stack", "export", "--stack", "dev"]), "stack export").stdout);
  const topLevel = (before.deployment.resources as { urn: string; parent?: string; type: string }[]).filter((r) => r.type === "pgstack:db:MigrationChain");
  expect(topLevel).toHaveLength(1);
  expect(topLevel[0].urn).not.toContain("PgStack");

  await fs.writeFile(program, current);
  const preview = expectOk(await project.pulumi(["preview", "--json", "--stack", "dev"]), "pulumi preview (component)");
  expect(changedSteps(preview.stdout)).toEqual([{ op: "create", name: "pgstack", type: "pgstack:db:PgStack" }]);

  expectOk(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", "dev"]), "pulumi up (component)");
  const after = JSON.parse(expectOk(await project.pulumi(["stack", "export", "--stack", "dev"]), "stack export").stdout);
  const ids = (d: { deployment: { resources: { type: string; id?: string }[] } }) =>
    d.deployment.resources.filter((r) => r.type === "command:local:Command").map((r) => r.id).sort();
  // The same command resources (their ids are created once): none was created again.
  expect(ids(after)).toEqual(ids(before));
  const again = expectOk(await project.pulumi(["preview", "--json", "--stack", "dev"]), "pulumi preview (second)");
  expect(changedSteps(again.stdout)).toEqual([]);
});
