/**
 * Issue 14 end to end on the dev stack with the real pulumi CLI: a deploy
 * adds a column, a table and an index and changes a default; the
 * application then inserts, updates and deletes in several tables;
 * `npm run rollback -- --stack dev --revert --yes` leaves the schema
 * identical to before the deploy (pg_dump -s), keeps every row written since
 * to the tables that existed before it (content digests), reports exactly
 * the dropped column and table with what they hold, and the next
 * `npm run dev` changes nothing. Reverting a migration that dropped a column
 * is refused without --accept-loss, naming the column.
 */
import { migrationStatus } from "../../infra/core/migrations/runner";
import { resolveSettings } from "../../infra/core/settings";
import { dumpSchema } from "../../infra/core/snapshot/dump";
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { withDb } from "../support/cluster";
import { changedSteps, createE2eProject, expectOk, type E2eProject, type PulumiResult } from "../support/e2e-project";

jest.setTimeout(900_000);

const STACK = "dev";
const SHOP = "20990101000000_shop";
const DEPLOY = "20990102000000_nicknames_tags";
const DROP = "20990103000000_drop_legacy";
let project: E2eProject;
let url: string;
let schemaBeforeDeploy: string;
const timings: string[] = [];

const ok = (result: PulumiResult, what: string) => expectOk(result, what, timings);
const up = async (what: string) => ok(await project.pulumi(["up", "--yes", "--skip-preview", "--stack", STACK]), what);

async function keptDigest(): Promise<string> {
  return withDb(url, async (c) => {
    const users = await c.query("SELECT count(*) || ':' || md5(string_agg(id || '|' || email || '|' || plan || '|' || coalesce(legacy, '~'), ',' ORDER BY id)) AS d FROM shop_users");
    const orders = await c.query("SELECT count(*) || ':' || md5(string_agg(id || '|' || user_id || '|' || total, ',' ORDER BY id)) AS d FROM shop_orders");
    return `${users.rows[0].d}/${orders.rows[0].d}`;
  });
}

async function status(): Promise<Record<string, string>> {
  const s = await migrationStatus(resolveSettings({ url, dir: path.join(project.dir, "migrations") }));
  return Object.fromEntries(s.map((m) => [m.name, m.state]));
}

/** `npm run rollback -- <args>` in a pseudo-terminal (util-linux `script`), typing `input`; output is the terminal's. */
function atTerminal(args: string[], input: string): Promise<{ code: number; stdout: string }> {
  const command = [process.execPath, "--require", "tsx/cjs", path.join("infra", "scripts", "rollback.ts"), ...args].map((a) => `'${a}'`).join(" ");
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-qec", command, "/dev/null"], { cwd: project.dir, env: project.env as NodeJS.ProcessEnv, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stdout += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout: stdout.replace(/\r/g, "") }));
    // Typed once the question is on the screen, as a person would.
    const typeWhenAsked = setInterval(() => {
      if (/\[r\/v\/N\]/.test(stdout)) {
        clearInterval(typeWhenAsked);
        child.stdin.write(input);
      }
    }, 100);
    child.on("close", () => clearInterval(typeWhenAsked));
  });
}

beforeAll(async () => {
  project = await createE2eProject(STACK);
});

afterAll(async () => {
  process.stderr.write(`[e2e revert] timings:\n  ${timings.join("\n  ")}\n`);
  await project?.teardown(STACK);
});

describe("npm run rollback -- --revert on the dev stack", () => {
  it("deploys, then a deploy adds a column, a table and an index and changes a default; the application writes", async () => {
    await project.addMigration(
      SHOP,
      "CREATE TABLE shop_users (id int PRIMARY KEY, email text NOT NULL, plan text NOT NULL DEFAULT 'free', legacy text);\n" +
        "CREATE TABLE shop_orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES shop_users(id), total numeric(10,2) NOT NULL);\n",
    );
    await up("first up");
    url = JSON.parse(ok(await project.pulumi(["stack", "output", "--json", "--show-secrets", "--stack", STACK]), "outputs").stdout).databaseUrl;
    await withDb(url, async (c) => {
      await c.query("INSERT INTO shop_users SELECT g, 'u' || g || '@example.com', 'free', 'old ' || g FROM generate_series(1, 500) g");
      await c.query("INSERT INTO shop_orders SELECT g, 1 + g % 500, g * 2.5 FROM generate_series(1, 2000) g");
    });
    schemaBeforeDeploy = await dumpSchema(url);

    await project.addMigration(
      DEPLOY,
      "ALTER TABLE shop_users ADD COLUMN nickname text;\n" +
        "CREATE TABLE shop_tags (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES shop_users(id), label text NOT NULL);\n" +
        "CREATE INDEX shop_orders_total_idx ON shop_orders(total);\n" +
        "ALTER TABLE shop_users ALTER COLUMN plan SET DEFAULT 'trial';\n",
    );
    await up("up (deploy)");
    await withDb(url, async (c) => {
      await c.query("INSERT INTO shop_users (id, email, nickname) SELECT g, 'new' || g || '@example.com', 'nick' || g FROM generate_series(501, 560) g");
      await c.query("UPDATE shop_users SET email = 'changed' || id || '@example.com' WHERE id % 9 = 0");
      await c.query("UPDATE shop_orders SET total = total + 1 WHERE id % 4 = 0");
      await c.query("DELETE FROM shop_orders WHERE id > 1950");
      await c.query("INSERT INTO shop_tags (user_id, label) SELECT 1 + g % 560, 'tag' || g FROM generate_series(1, 33) g");
    });
  });

  it("reverts the deploy keeping every write to the tables that existed before it, and reports exactly what it drops", async () => {
    const kept = await keptDigest();
    const r = ok(await project.script("rollback", ["--stack", STACK, "--revert", "--yes"]), "npm run rollback --revert --yes");
    const printed = r.stdout + r.stderr;
    expect(printed).not.toContain(decodeURIComponent(new URL(url).password));
    expect(printed).toContain(`This revert undoes the update that started at`);
    const dropped = printed.split("\n").filter((l) => /^\s{4}(table|column|enum value|constraint)\s/.test(l)).map((l) => l.trim().split(/\s{2,}/));
    expect(dropped).toEqual([
      ["table", "shop_tags", "33 rows"],
      ["column", "shop_users.nickname", "60 non-null values"],
    ]);
    expect(await dumpSchema(url)).toBe(schemaBeforeDeploy);
    expect(await keptDigest()).toBe(kept);
    expect((await status())[DEPLOY]).toBe("pending");
    const out = JSON.parse(ok(await project.pulumi(["stack", "output", "--json", "--stack", STACK]), "outputs").stdout);
    expect(out.pinnedMigration).toBe(SHOP);
    expect(out.appliedMigrations).not.toContain(DEPLOY);
  });

  it("the next npm run dev changes nothing", async () => {
    expect(changedSteps(ok(await project.pulumi(["preview", "--json", "--stack", STACK]), "preview after revert").stdout)).toEqual([]);
    const kept = await keptDigest();
    ok(await project.script("dev", []), "npm run dev after revert");
    expect(await dumpSchema(url)).toBe(schemaBeforeDeploy);
    expect(await keptDigest()).toBe(kept);
  });

  it("at a terminal, npm run rollback shows the restore and the revert side by side and reverts when asked to", async () => {
    ok(await project.script("rollback", ["--stack", STACK, "--unpin"]), "unpin");
    await up("up (re-apply the deploy)");
    expect((await status())[DEPLOY]).toBe("applied");
    await withDb(url, (c) => c.query("INSERT INTO shop_orders VALUES (9001, 1, 1.00)"));
    const kept = await keptDigest();
    const r = await atTerminal(["--stack", STACK], "v\n");
    const printed = r.stdout;
    if (r.code !== 0) throw new Error(printed);
    const header = printed.split("\n").find((l) => l.includes("RESTORE (discards every write since the snapshot)"));
    expect(header).toMatch(/RESTORE \(discards every write since the snapshot\)\s+\|  REVERT \(keeps the data\)/);
    expect(printed).toContain("reverted to " + SHOP + ", keeping the data");
    expect(await dumpSchema(url)).toBe(schemaBeforeDeploy);
    expect(await keptDigest()).toBe(kept);
    expect((await status())[DEPLOY]).toBe("pending");
  });

  it("refuses to revert a migration that dropped a column without --accept-loss, naming it, and changes nothing", async () => {
    ok(await project.script("rollback", ["--stack", STACK, "--unpin"]), "unpin");
    await project.addMigration(DROP, "ALTER TABLE shop_users DROP COLUMN legacy;\n");
    await up("up (re-apply and drop)");
    expect((await status())[DROP]).toBe("applied");
    const schema = await dumpSchema(url);
    const r = await project.script("rollback", ["--stack", STACK, "--revert", "--to", DEPLOY, "--yes"]);
    expect(r.code).not.toBe(0);
    const said = r.stderr.split("\n").filter((l) => l.startsWith("pgstack:"));
    expect(said).toHaveLength(1);
    expect(said[0]).toContain("column shop_users.legacy was dropped by a reverted migration");
    expect(said[0]).toContain("--accept-loss");
    expect(await dumpSchema(url)).toBe(schema);
    expect((await status())[DROP]).toBe("applied");
  });

  it("a failing reverse leaves the database as it was and says so", async () => {
    await fs.writeFile(path.join(project.dir, "migrations", DROP, "down.sql"), "ALTER TABLE shop_users ADD COLUMN legacy text;\nSELECT 1 / 0;\n");
    const schema = await dumpSchema(url);
    const kept = await withDb(url, (c) => c.query("SELECT md5(string_agg(id || email, ',' ORDER BY id)) AS d FROM shop_users"));
    const r = await project.script("rollback", ["--stack", STACK, "--revert", "--to", DEPLOY, "--accept-loss", "--yes"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/pgstack: The reverse of 20990103000000_drop_legacy \(down\.sql\) failed on the rehearsal copy at line 2: division by zero; nothing was changed\./);
    expect(await dumpSchema(url)).toBe(schema);
    expect((await withDb(url, (c) => c.query("SELECT md5(string_agg(id || email, ',' ORDER BY id)) AS d FROM shop_users"))).rows).toEqual(kept.rows);
    expect((await status())[DROP]).toBe("applied");
    const out = JSON.parse(ok(await project.pulumi(["stack", "output", "--json", "--stack", STACK]), "outputs").stdout);
    expect(out.pinnedMigration).toBe("");
  });
});
