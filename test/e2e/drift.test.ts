/**
 * Drift with the real pulumi CLI on the dev stack: every update ends with a
 * verification; an out-of-band ALTER TABLE then a new migration: the preview
 * reports the drift with its DDL; with lint: strict, `pulumi up` refuses
 * before the snapshot and applies nothing; accepted for one update, the
 * migration applies and the verification after it fails the update with the
 * drift check's sentence.
 */
import * as path from "node:path";
import { migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { listSnapshots } from "../../infra/core/snapshot/template";
import { withDb } from "../support/cluster";
import { createE2eProject, expectOk, type E2eProject } from "../support/e2e-project";

jest.setTimeout(900_000);

const STACK = "dev";
const NEW = "20990101000000_add_e2e_widgets";
const DDL = 'alter table "public"."users" add column "nickname" text;';
let project: E2eProject;
let url: string;

beforeAll(async () => {
  project = await createE2eProject(STACK);
});
afterAll(async () => {
  await project?.teardown(STACK);
});

async function status(): Promise<Record<string, string>> {
  const s = await migrationStatus(resolveSettings({ url, dir: path.join(project.dir, "migrations") }));
  return Object.fromEntries(s.map((m) => [m.name, m.state]));
}

it("the first up verifies the database after the migrations and the seed", async () => {
  const up = expectOk(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), "first up");
  expect(up.stdout).toMatch(/verify-run +created/);
  const out = JSON.parse(expectOk(await project.pulumi(["stack", "output", "--json", "--show-secrets", "--stack", STACK]), "outputs").stdout);
  url = out.databaseUrl;
});

it("an out-of-band ALTER TABLE, then a new migration: the preview says so with the DDL; strict up refuses before the snapshot", async () => {
  await withDb(url, (c) => c.query("ALTER TABLE users ADD COLUMN nickname text"));
  await project.addMigration(NEW, "CREATE TABLE e2e_widgets (id int PRIMARY KEY);\n");
  const preview = expectOk(await project.pulumi(["preview", "--stack", STACK]), "preview (drift, lint warn)");
  expect(preview.stdout + preview.stderr).toContain("drift: The schema differs from what the 10 applied migrations make: changed: table public.users");
  expect(preview.stdout + preview.stderr).toContain(DDL);

  expectOk(await project.pulumi(["config", "set", "pgstack:lint", "strict", "--stack", STACK]), "config set lint strict");
  const snapshotsBefore = (await listSnapshots(url, { source: "app" })).map((s) => s.snapshotId);
  const refused = await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]);
  expect(refused.code).not.toBe(0);
  const said = refused.stdout + refused.stderr;
  expect(said).toContain("Stack 'dev' refuses to deploy onto a database that differs from its migrations (lint: strict)");
  expect(said).toContain(DDL);
  expect((await status())[NEW]).toBe("pending");
  expect((await listSnapshots(url, { source: "app" })).map((s) => s.snapshotId)).toEqual(snapshotsBefore);
});

it("accepted for one update, the migration applies and the verification after it fails the update with the drift sentence", async () => {
  const accepted = await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK], { PGSTACK_ACCEPT_DRIFT: "1" });
  expect(accepted.code).not.toBe(0);
  expect((await status())[NEW]).toBe("applied");
  const said = accepted.stdout + accepted.stderr;
  expect(said).toMatch(/verify-run/);
  expect(said).toContain("drift: The schema differs from what the 11 applied migrations make: changed: table public.users");
  // Undone by hand: the next up's verification passes.
  await withDb(url, (c) => c.query("ALTER TABLE users DROP COLUMN nickname"));
  await withDb(url, (c) => c.query("SELECT 1"));
  expectOk(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), "up after the drift is undone");
});
