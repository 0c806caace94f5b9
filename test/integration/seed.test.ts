import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { applyMigrations } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { memoryLogger } from "../../infra/core/logger";
import { createTestDatabase, withDb } from "../support/cluster";
import { REPO_MIGRATIONS, REPO_ROOT, fingerprint } from "../support/fixtures";

const TABLES = ["users", "accounts", "sessions", "verification_tokens", "organizations", "memberships", "projects", "invitations", "api_keys", "audit_events"];

function runSeed(env: Record<string, string>) {
  return spawnSync(process.execPath, [path.join(REPO_ROOT, "node_modules", "tsx", "dist", "cli.mjs"), "prisma/seed.ts"], {
    cwd: REPO_ROOT,
    env: { ...process.env, NODE_ENV: "development", ...env },
    encoding: "utf8",
  });
}

/** Every row of every seeded table but updated_at, hashed per table. */
async function digests(url: string): Promise<Record<string, { rows: number; md5: string }>> {
  return withDb(url, async (c) => {
    const out: Record<string, { rows: number; md5: string }> = {};
    for (const table of TABLES) {
      const { rows } = await c.query(
        `SELECT count(*)::int AS rows, coalesce(md5(string_agg((to_jsonb(t) - 'updated_at')::text, '|' ORDER BY (to_jsonb(t) - 'updated_at')::text)), '') AS md5 FROM "${table}" t`,
      );
      out[table] = rows[0] as { rows: number; md5: string };
    }
    return out;
  });
}

describe("prisma/seed.ts through Prisma Client on the migrated schema", () => {
  let url: string;
  beforeAll(async () => {
    url = await createTestDatabase("seed");
    await applyMigrations({ ...resolveSettings({ url, dir: REPO_MIGRATIONS }) }, { kind: "all" }, memoryLogger());
  });

  it("seeds every model, and a second run leaves exactly the same rows", async () => {
    const first = runSeed({ DATABASE_URL: url });
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    const afterFirst = await digests(url);
    expect(Object.fromEntries(Object.entries(afterFirst).map(([t, d]) => [t, d.rows]))).toEqual({
      users: 4, accounts: 2, sessions: 1, verification_tokens: 1, organizations: 2,
      memberships: 5, projects: 3, invitations: 1, api_keys: 2, audit_events: 4,
    });
    const second = runSeed({ DATABASE_URL: url });
    expect(second.status).toBe(0);
    expect(await digests(url)).toEqual(afterFirst);
    expect(first.stdout + second.stdout).not.toContain(new URL(url).password);
  });

  it("stores API key secrets only as hashes, and uses the enum value added by a later migration", async () => {
    const keys = await withDb(url, (c) => c.query(`SELECT key_prefix, hashed_secret FROM api_keys ORDER BY 1`));
    for (const k of keys.rows) expect(k.hashed_secret).toMatch(/^[0-9a-f]{64}$/);
    const viewers = await withDb(url, (c) => c.query(`SELECT count(*)::int AS n FROM memberships WHERE role = 'VIEWER'`));
    expect(viewers.rows[0].n).toBeGreaterThan(0);
  });

  it.each([
    ["PGSTACK_STACK", "prod"],
    ["PGSTACK_ENV", "production"],
    ["NODE_ENV", "production"],
  ])("refuses with %s=%s, in one sentence, without touching the database", async (key, value) => {
    const before = [await fingerprint(url), await digests(url)];
    const result = runSeed({ DATABASE_URL: url, [key]: value });
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe("Refusing to seed the prod database: the seed is for dev and test data only.");
    expect([await fingerprint(url), await digests(url)]).toEqual(before);
  });
});
