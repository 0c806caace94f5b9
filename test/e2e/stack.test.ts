/**
 * The dev stack end to end with the real pulumi CLI, in a temporary copy of
 * the project with its own file:// backend and a free port: up, preview,
 * a new migration, a failing one and its fix, destroy.
 */
import { createHash } from "node:crypto";
import { existsSync, promises as fs, readFileSync } from "node:fs";
import * as path from "node:path";
import { isRunning } from "../../infra/core/cluster/embedded";
import { migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { listSnapshots } from "../../infra/core/snapshot/template";
import { withDb } from "../support/cluster";
import { PLUGINS_DIR_ENV, resolveToolchain } from "../../infra/toolchain/pulumi";
import { changedSteps, createE2eProject, expectOk, readTree, type E2eProject, type PulumiResult } from "../support/e2e-project";

jest.setTimeout(600_000);

const STACK = "dev";
const GOLDEN = path.join(__dirname, "..", "fixtures", "plan", "plan-stack-dev.md");
let project: E2eProject;
let url: string;
let repoMigrations: string[];
const timings: string[] = [];

const ok = (result: PulumiResult, what: string) => expectOk(result, what, timings);

async function outputs(): Promise<Record<string, unknown>> {
  const out = ok(await project.pulumi(["stack", "output", "--json", "--show-secrets", "--stack", STACK]), "stack output");
  return JSON.parse(out.stdout);
}

async function status(): Promise<Record<string, string>> {
  const s = await migrationStatus(resolveSettings({ url, dir: path.join(project.dir, "migrations") }));
  return Object.fromEntries(s.map((m) => [m.name, m.state]));
}

async function tables(): Promise<string[]> {
  return withDb(url, async (c) => {
    const { rows } = await c.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
    return rows.map((r) => r.tablename as string);
  });
}

const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

const addMigration = (name: string, sql: string) => project.addMigration(name, sql);

const dataDir = () => path.join(project.dir, ".pgstack", STACK, "data");

beforeAll(async () => {
  project = await createE2eProject(STACK);
  repoMigrations = (await fs.readdir(path.join(project.dir, "migrations"), { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
});

afterAll(async () => {
  process.stderr.write(`[e2e] timings:\n  ${timings.join("\n  ")}\n`);
  await project?.teardown(STACK);
});

describe("the dev stack with the real pulumi CLI", () => {
  it("up on empty state starts the embedded server and applies every migration through the chain", async () => {
    const up = ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), "first up");
    const out = await outputs();
    url = out.databaseUrl as string;
    expect(url).toMatch(new RegExp(`^postgresql://postgres:[0-9a-f]{48}@127\\.0\\.0\\.1:${project.port}/app$`));
    expect(out.appliedMigrations).toEqual(repoMigrations);
    expect(Object.values(await status())).toEqual(repoMigrations.map(() => "applied"));
    expect(out.latestSnapshot).toMatch(/^snap_dev_empty_\d{14}$/);
    expect(out.rollbackCommand).toBe(`npm run rollback -- --stack dev --snapshot ${out.latestSnapshot}`);
    // Seeded.
    const users = await withDb(url, (c) => c.query("SELECT count(*)::int AS n FROM users"));
    expect(users.rows[0].n).toBeGreaterThan(0);

    // The password is nowhere in plain text: not in the state, not in what pulumi printed.
    const password = decodeURIComponent(new URL(url).password);
    expect(await readTree(project.stateDir)).not.toContain(password);
    expect(up.stdout + up.stderr).not.toContain(password);
    const pwFile = path.join(project.dir, ".pgstack", STACK, "data.password");
    expect((await fs.stat(pwFile)).mode & 0o777).toBe(0o600);
  });

  it("ran Pulumi's official plugins: the command provider 1.2.1 from the plugin cache, the official language host, no warning", async () => {
    const up = await project.pulumi(["preview", "--stack", STACK]);
    expect(up.stdout + up.stderr).not.toMatch(/from \$PATH|warning: using/i);
    const plugins = JSON.parse(ok(await project.pulumi(["plugin", "ls", "--json"]), "plugin ls").stdout) as { name: string; kind: string; version: string }[];
    expect(plugins).toContainEqual(expect.objectContaining({ name: "command", kind: "resource", version: "1.2.1" }));
    const about = JSON.parse(ok(await project.pulumi(["about", "--json", "--stack", STACK]), "about").stdout) as { plugins: { name: string; kind: string; version: string }[] };
    expect(about.plugins).toContainEqual({ name: "nodejs", kind: "language", version: "3.248.0" });
    // The state's provider is the one the engine loaded: version 1.2.1.
    const state = JSON.parse(ok(await project.pulumi(["stack", "export", "--stack", STACK]), "stack export").stdout) as {
      deployment: { resources: { type: string; urn: string; inputs?: { version?: string } }[] };
    };
    const providers = state.deployment.resources.filter((r) => r.type === "pulumi:providers:command");
    expect(providers.map((r) => r.inputs?.version)).toEqual(["1.2.1"]);
    // Byte for byte the official builds the toolchain was given (CI: ../shared/pulumi-plugins/build).
    const official = process.env[PLUGINS_DIR_ENV];
    if (official) {
      const plan = resolveToolchain();
      expect(sha256(plan.commandProvider.target)).toBe(sha256(path.join(official, "pulumi-resource-command")));
      if (plan.languageHost) expect(sha256(plan.languageHost.target)).toBe(sha256(path.join(official, "pulumi-language-nodejs")));
    }
  });

  it("a preview right after shows no changes", async () => {
    const preview = ok(await project.pulumi(["preview", "--json", "--stack", STACK]), "preview (no changes)");
    expect(changedSteps(preview.stdout)).toEqual([]);
  });

  it("a new migration directory previews as exactly one migration create plus the snapshot, and up applies it", async () => {
    const name = "20990101000000_add_e2e_widgets";
    await addMigration(name, "CREATE TABLE e2e_widgets (id int PRIMARY KEY);\n");
    const preview = ok(await project.pulumi(["preview", "--json", "--stack", STACK]), "preview (one new migration)");
    const steps = changedSteps(preview.stdout);
    // Real resources: exactly one new migration command, the snapshot taken anew and the verification run again.
    expect(steps.filter((s) => !s.type.startsWith("pgstack:")).sort((x, y) => x.name.localeCompare(y.name))).toEqual([
      { op: "create", name: `migrations-${name}`, type: "command:local:Command" },
      { op: "replace", name: "pre-update-copy", type: "command:local:Command" },
      // The verification runs again after it (README, "Verify").
      { op: "replace", name: "verify-run", type: "command:local:Command" },
    ]);
    // Components carry no inputs of their own (their children do): a reviewer sees nothing else change.
    expect(steps.filter((s) => s.type.startsWith("pgstack:"))).toEqual([]);

    const before = (await outputs()).latestSnapshot as string;
    ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), "up (one new migration)");
    expect((await status())[name]).toBe("applied");
    const out = await outputs();
    expect(out.appliedMigrations).toEqual([...repoMigrations, name]);
    // A new snapshot holding everything up to the last migration before this one; the old one is kept.
    expect(out.latestSnapshot).toMatch(new RegExp(`^snap_dev_${repoMigrations[repoMigrations.length - 1].slice(0, 14)}_`));
    const snaps = (await listSnapshots(url, { source: "app" })).map((s) => s.snapshotId);
    expect(snaps).toEqual(expect.arrayContaining([before, out.latestSnapshot]));
    // Sealed: nobody connects to a snapshot, so what it holds is what was taken.
    const snapshotUrl = url.replace(/\/app$/, `/${out.latestSnapshot}`);
    await expect(withDb(snapshotUrl, (c) => c.query("SELECT 1"))).rejects.toMatchObject({ code: "55000" });
    // Opened for a moment by the superuser (as only a superuser or its owner could) to read it.
    const allow = (on: boolean) => withDb(url, (c) => c.query(`ALTER DATABASE "${out.latestSnapshot}" ALLOW_CONNECTIONS ${on}`));
    await allow(true);
    try {
      await withDb(snapshotUrl, async (c) => {
        const { rows } = await c.query("SELECT to_regclass('public.e2e_widgets') AS t");
        expect(rows[0].t).toBeNull();
      });
    } finally {
      await allow(false);
    }
  });

  it("a migration with a SQL error fails the update there: the ones after it do not run and the database is unchanged by it", async () => {
    const bad = "20990102000000_bad_insert";
    const after = "20990103000000_after_bad";
    await addMigration(bad, "CREATE TABLE e2e_half (id int);\nINSERT INTO e2e_missing_table VALUES (1);\n");
    await addMigration(after, "CREATE TABLE e2e_after (id int);\n");
    const tablesBefore = await tables();

    const up = await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]);
    timings.push(`up (failing migration): ${(up.ms / 1000).toFixed(1)} s`);
    expect(up.code).not.toBe(0);
    const printed = up.stdout + up.stderr;
    expect(printed).toContain(`Migration ${bad} failed at line 2 of migration.sql: relation "e2e_missing_table" does not exist`);
    expect(printed).not.toContain(decodeURIComponent(new URL(url).password));

    const s = await status();
    expect(s[bad]).toBe("failed");
    expect(s[after]).toBe("pending");
    expect(await tables()).toEqual(tablesBefore);
  });

  it("fixing the file resumes the chain from it", async () => {
    const bad = "20990102000000_bad_insert";
    await fs.writeFile(path.join(project.dir, "migrations", bad, "migration.sql"), "CREATE TABLE e2e_half (id int);\n");
    ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), "up (fixed migration)");
    const s = await status();
    expect(s[bad]).toBe("applied");
    expect(s["20990103000000_after_bad"]).toBe("applied");
    expect(await tables()).toEqual(expect.arrayContaining(["e2e_half", "e2e_after"]));
    const preview = ok(await project.pulumi(["preview", "--json", "--stack", STACK]), "preview (after the fix)");
    expect(changedSteps(preview.stdout)).toEqual([]);
  });

  it("with lint: strict, preview lists the migrations, the snapshot and both blocking findings and fails; accepted, it passes", async () => {
    const index = "20990104000000_add_users_name_idx";
    const drop = "20990105000000_drop_users_avatar_url";
    const indexSql = '-- CreateIndex\nCREATE INDEX "users_name_idx" ON "users"("name");\n';
    const dropSql = '-- AlterTable\nALTER TABLE "users" DROP COLUMN "avatar_url";\n';
    await addMigration(index, indexSql);
    await addMigration(drop, dropSql);
    ok(await project.pulumi(["config", "set", "pgstack:lint", "strict", "--stack", STACK]), "config set lint strict");
    const tablesBefore = await tables();

    const refused = await project.script("preview", ["--stack", STACK]);
    timings.push(`npm run preview (strict, refused): ${(refused.ms / 1000).toFixed(1)} s`);
    const printed = refused.stdout + refused.stderr;
    expect(refused.code).not.toBe(0);
    expect(printed).toContain("2 migration(s) would be applied");
    expect(printed).toContain(index);
    expect(printed).toContain(drop);
    expect(printed).toMatch(/Snapshot before the first migration: snap_dev_20990103000000_after_bad_\d{14}/);
    expect(printed).toContain("require-concurrent-index-creation");
    expect(printed).toContain("ban-drop-column");
    // pulumi preview itself fails on the gate, with the findings' text and no stack trace.
    expect(printed).toContain("Stack 'dev' has lint: strict and 2 blocking finding(s)");
    expect(printed).toContain(`${index}/migration.sql:2: require-concurrent-index-creation`);
    expect(printed).not.toMatch(/\n\s+at .*\.ts:\d+/);
    expect(printed).not.toContain(decodeURIComponent(new URL(url).password));
    // The PR comment for the stack, from its state (golden; the snapshot's time normalized).
    const comment = await project.cli(["plan", "--stack", STACK, "--markdown"]);
    expect(comment.code).toBe(1);
    const markdown = comment.stdout.replace(/(snap_dev_20990103000000_after_bad_)\d{14}/, "$1<time>");
    if (process.env.UPDATE_GOLDEN) await fs.writeFile(GOLDEN, markdown);
    expect(markdown).toBe(await fs.readFile(GOLDEN, "utf8"));

    const up = await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]);
    expect(up.code).not.toBe(0);
    expect(up.stdout + up.stderr).toContain(`${drop}/migration.sql:2: ban-drop-column`);
    expect(await tables()).toEqual(tablesBefore);
    expect((await status())[index]).toBe("pending");

    await addMigration(index, `-- pgstack:allow require-concurrent-index-creation users has a few hundred rows\n${indexSql}`);
    // A DROP COLUMN is also a contract migration: with no rollout wired (contractAfter), strict wants it acknowledged too.
    await addMigration(drop, `-- pgstack:allow ban-drop-column avatar_url is unused since the profile redesign\n-- pgstack:allow-contract avatar_url is unused since the profile redesign\n${dropSql}`);
    const accepted = ok(await project.script("preview", ["--stack", STACK]), "npm run preview (strict, accepted)");
    const shown = accepted.stdout + accepted.stderr;
    expect(shown).toContain("Lint: 0 blocking, 0 warning(s), 2 accepted");
    expect(shown).toContain("users has a few hundred rows");
    expect(shown).toContain("avatar_url is unused since the profile redesign");
    const steps = changedSteps(ok(await project.pulumi(["preview", "--json", "--stack", STACK]), "preview --json (accepted)").stdout);
    expect(steps.filter((x) => x.type === "command:local:Command" && x.op === "create").map((x) => x.name)).toEqual([`migrations-${index}`, `migrations-${drop}`]);
  });

  it("destroy stops the server and keeps the data", async () => {
    expect(await isRunning(dataDir())).toBe(true);
    ok(await project.pulumi(["destroy", "--yes", "--stack", STACK]), "destroy");
    expect(await isRunning(dataDir())).toBe(false);
    expect(existsSync(path.join(dataDir(), "PG_VERSION"))).toBe(true);
  });
});
