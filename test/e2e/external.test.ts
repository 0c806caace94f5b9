/**
 * Two stacks sharing one external database, deployed at the same time with
 * the real pulumi CLI: one waits for the other (snapshot and migrations take
 * the same advisory lock) or fails with one sentence; nothing is applied
 * twice, and each stack took its own pre-update snapshot.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { listAllSnapshots } from "../../infra/core/snapshot/store";
import { createTestDatabase, withDb } from "../support/cluster";
import { createE2eProject, readTree, type E2eProject, type PulumiResult } from "../support/e2e-project";

jest.setTimeout(900_000);

const STACKS = ["team-a", "team-b"];
let project: E2eProject;
let url: string;
let repoMigrations: string[];

function ok(result: PulumiResult, what: string): PulumiResult {
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  return result;
}

async function configure(stack: string): Promise<void> {
  // createE2eProject gives its first stack an embedded port; an external stack has no embedded block.
  await project.pulumi(["config", "rm", "--path", "pgstack:embedded", "--stack", stack]);
  ok(await project.pulumi(["config", "set", "pgstack:engine", "external", "--stack", stack]), "config engine");
  ok(await project.pulumi(["config", "set", "pgstack:seed", "false", "--stack", stack]), "config seed");
  ok(await project.pulumi(["config", "set", "--secret", "pgstack:externalUrl", url, "--stack", stack]), "config externalUrl");
}

beforeAll(async () => {
  url = await createTestDatabase("shared");
  project = await createE2eProject(STACKS[0]);
  ok(await project.pulumi(["stack", "init", STACKS[1]]), "stack init");
  for (const stack of STACKS) await configure(stack);
  repoMigrations = (await fs.readdir(path.join(project.dir, "migrations"), { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
});

afterAll(async () => {
  await project?.cleanup();
});

describe("two stacks, one external database, deployed at once", () => {
  it("apply every migration exactly once, each stack snapshotting first", async () => {
    const results = await Promise.all(STACKS.map((stack) => project.pulumi(["up", "--yes", "--skip-preview", "--stack", stack])));
    const password = decodeURIComponent(new URL(url).password);
    for (const r of results) {
      const printed = r.stdout + r.stderr;
      if (password) expect(printed).not.toContain(password);
      // A stack that lost the race says so in one sentence naming the other deployer.
      if (r.code !== 0) expect(printed).toMatch(/another deployer|migration lock|is applying migrations/i);
    }
    expect(results.some((r) => r.code === 0)).toBe(true);
    // A stack that failed completes on its next up.
    for (const [i, r] of results.entries()) {
      if (r.code !== 0) ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACKS[i]]), `retry up ${STACKS[i]}`);
    }

    await withDb(url, async (c) => {
      const finished = await c.query("SELECT migration_name, count(*)::int AS n FROM _prisma_migrations WHERE finished_at IS NOT NULL GROUP BY 1 ORDER BY 1");
      expect(finished.rows).toEqual(repoMigrations.map((name) => ({ migration_name: name, n: 1 })));
      const attempts = await c.query("SELECT count(*)::int AS n FROM _prisma_migrations");
      expect(attempts.rows[0].n).toBe(repoMigrations.length);
    });

    // Either engine: a stack whose snapshot ran while the other stack's deployer was connected took a pg_dump
    // (auto never ends another session to copy), into the project's .pgstack/snapshots.
    const snapshots = await listAllSnapshots(url, {}, { snapshotsDir: path.join(project.dir, ".pgstack", "snapshots") });
    for (const stack of STACKS) {
      const out = JSON.parse(ok(await project.pulumi(["stack", "output", "--json", "--show-secrets", "--stack", stack]), "stack output").stdout);
      expect(out.appliedMigrations).toEqual(repoMigrations);
      expect(snapshots.map((s) => s.snapshotId)).toContain(out.latestSnapshot);
      expect(snapshots.find((s) => s.snapshotId === out.latestSnapshot)!.stack).toBe(stack);
    }
    // The external URL is a secret: not in plain text in the state.
    if (password) expect(await readTree(project.stateDir)).not.toContain(password);
  });
});
