/**
 * pgstack as a package, the way an application team meets it: `npm pack` this
 * repository; a fresh Prisma application (package.json, schema, three
 * migrations) `npm install`s the tarball, runs `npx pgstack init`, then its own
 * Pulumi program (PgStack plus a tiny HTTP server that reads the URL from the
 * component and depends on `ready`) through `npm run dev`; a fourth migration
 * previews as exactly its own step; `npm run rollback` works from the
 * application's folder; nothing under node_modules is written. Then a database
 * that Prisma already migrated is adopted: no SQL, no snapshot.
 */
import { execFileSync } from "node:child_process";
import { promises as fs } from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { freePort, isRunning, stopCluster } from "../../infra/core/cluster/embedded";
import { listAllSnapshots } from "../../infra/core/snapshot/store";
import { ensureToolchain } from "../../infra/toolchain/pulumi";
import { createTestDatabase, withDb } from "../support/cluster";
import { tableDigests } from "../support/data";
import { changedSteps, expectOk, REPO_ROOT, runCaptured, type PulumiResult } from "../support/e2e-project";
import { applyThePrismaWay } from "../support/prisma-way";

jest.setTimeout(1_200_000);

const MIGRATIONS: Record<string, string> = {
  "20250101000000_init": '-- CreateTable\nCREATE TABLE "shop" ("id" INTEGER NOT NULL, CONSTRAINT "shop_pkey" PRIMARY KEY ("id"));\n',
  "20250102000000_items":
    '-- CreateTable\nCREATE TABLE "item" ("id" INTEGER NOT NULL, "name" TEXT NOT NULL, CONSTRAINT "item_pkey" PRIMARY KEY ("id"));\nINSERT INTO "item" ("id", "name") VALUES (1, \'teapot\');\n',
  "20250103000000_price": '-- AlterTable\nALTER TABLE "item" ADD COLUMN "price" INTEGER NOT NULL DEFAULT 0;\n',
};
const FOURTH = "20250104000000_stock";

const SERVER = `const http = require("node:http");
const { Client } = require("pg");
http.createServer(async (req, res) => {
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  try {
    await client.connect();
    const { rows } = await client.query('SELECT * FROM "item" ORDER BY "id"');
    res.end(JSON.stringify(rows));
  } catch (err) {
    res.statusCode = 500;
    res.end(String(err.message));
  } finally {
    await client.end().catch(() => undefined);
  }
}).listen(Number(process.env.PORT), "127.0.0.1");
`;

/** The application's own program: pgstack's three lines, and the application process after the migrations. */
const PROGRAM = (appPort: number) => `import * as command from "@pulumi/command";
import { PgStack } from "pgstack";
const db = new PgStack("db", { migrationsDir: "prisma/migrations" });
export const { databaseUrl, appliedMigrations, latestSnapshot, rollbackCommand, pinnedMigration } = db;

// The application: started once the chain (and seed) succeeded, with the URL from the component.
new command.local.Command("app", {
  dir: "..",
  // Its own session: the command provider ends the command's process group when the command returns.
  create: "setsid node server.js > server.log 2>&1 < /dev/null & echo $! > server.pid",
  delete: "kill $(cat server.pid) 2>/dev/null; rm -f server.pid",
  environment: { DATABASE_URL: db.databaseUrl, PORT: "${appPort}" },
}, { dependsOn: db.ready });
`;

let root: string;
let app: string;
let appPort: number;
let pgPort: number;
let env: NodeJS.ProcessEnv;
let nodeModulesBefore: string;

const run = (command: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<PulumiResult> => runCaptured(command, args, app, { ...env, ...extraEnv });

const npm = (...args: string[]) => run("npm", args);

/** Every path under node_modules with its size and mtime: what "nothing was written" compares. */
async function listing(dir: string): Promise<string> {
  const lines: string[] = [];
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const stat = await fs.lstat(file);
    lines.push(`${path.relative(dir, file)} ${stat.size} ${stat.mtimeMs}`);
  }
  return lines.sort().join("\n");
}

function get(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: "/" }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

async function getWhenUp(port: number): Promise<{ status: number; body: string }> {
  for (let i = 0; ; i++) {
    try {
      return await get(port);
    } catch (err) {
      if (i > 50) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function writeMigration(name: string, sql: string): Promise<void> {
  await fs.mkdir(path.join(app, "prisma", "migrations", name), { recursive: true });
  await fs.writeFile(path.join(app, "prisma", "migrations", name, "migration.sql"), sql);
}

beforeAll(async () => {
  const plan = await ensureToolchain({ log: (line) => process.stderr.write(`[e2e package] ${line}\n`) });
  root = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-package-"));
  await fs.chmod(root, 0o755);
  app = path.join(root, "shop");
  await fs.mkdir(app, { mode: 0o755 });
  [appPort, pgPort] = [await freePort(), await freePort()];
  env = {
    ...process.env,
    PATH: [...plan.pathDirs, process.env.PATH].join(path.delimiter),
    PULUMI_BACKEND_URL: `file://${path.join(root, "state")}`,
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_update_notifier: "false",
  };
  delete env.PULUMI_CONFIG_PASSPHRASE;
  await fs.mkdir(path.join(root, "state"));

  execFileSync("npm", ["pack", "--silent", "--pack-destination", root], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "inherit"] });
  await fs.writeFile(path.join(app, "package.json"), JSON.stringify({ name: "shop", version: "1.0.0", private: true }, null, 2) + "\n");
  await fs.mkdir(path.join(app, "prisma", "migrations"), { recursive: true });
  await fs.writeFile(path.join(app, "prisma", "schema.prisma"), 'datasource db {\n  provider = "postgresql"\n}\n');
  await fs.writeFile(path.join(app, "prisma", "migrations", "migration_lock.toml"), 'provider = "postgresql"\n');
  for (const [name, sql] of Object.entries(MIGRATIONS)) await writeMigration(name, sql);
  expectOk(await npm("install", "--prefer-offline", path.join(root, "pgstack-0.1.0.tgz")), "npm install <tarball>");
  nodeModulesBefore = await listing(path.join(app, "node_modules"));
});

afterAll(async () => {
  if (!app) return;
  const pid = await fs.readFile(path.join(app, "server.pid"), "utf8").catch(() => "");
  if (pid.trim()) {
    try {
      process.kill(Number(pid), "SIGTERM");
    } catch {
      // already gone
    }
  }
  const dataDir = path.join(app, ".pgstack", "dev", "data");
  if (await isRunning(dataDir).catch(() => false)) await stopCluster(dataDir).catch(() => undefined);
  await fs.rm(root, { recursive: true, force: true });
});

describe("a Prisma application that installs the packed pgstack", () => {
  it("npx pgstack init adds its files and scripts, then npm run dev migrates and the application answers from a migrated table", async () => {
    const init = expectOk(await run("npx", ["pgstack", "init"]), "npx pgstack init");
    expect(init.stdout).toContain("created Pulumi.yaml");
    expect(init.stdout).toContain("added npm scripts dev, preview, rollback, destroy, pulumi to package.json");
    // The application's own program: pgstack's lines plus its server; its own port for the dev database.
    await fs.writeFile(path.join(app, "infra", "index.ts"), PROGRAM(appPort));
    await fs.writeFile(path.join(app, "server.js"), SERVER);
    const stackFile = path.join(app, "Pulumi.dev.yaml");
    await fs.writeFile(stackFile, (await fs.readFile(stackFile, "utf8")).replace("port: 54329", `port: ${pgPort}`));

    const dev = expectOk(await npm("run", "dev"), "npm run dev");
    expect(dev.stderr).toContain("dev database ready");
    const answer = await getWhenUp(appPort);
    expect(answer).toEqual({ status: 200, body: JSON.stringify([{ id: 1, name: "teapot", price: 0 }]) });
  });

  it("a fourth migration previews as exactly its own step (and the snapshot before it)", async () => {
    await writeMigration(FOURTH, '-- AlterTable\nALTER TABLE "item" ADD COLUMN "stock" INTEGER NOT NULL DEFAULT 0;\n');
    const preview = expectOk(await npm("run", "--silent", "pulumi", "--", "preview", "--json", "--stack", "dev"), "npm run pulumi -- preview --json");
    const steps = changedSteps(preview.stdout.slice(preview.stdout.indexOf("{")));
    expect(steps.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { op: "create", name: `migrations-${FOURTH}`, type: "command:local:Command" },
      { op: "replace", name: "pre-update-copy", type: "command:local:Command" },
      { op: "replace", name: "verify-run", type: "command:local:Command" },
    ]);
  });

  it("npm run rollback -- --stack dev --yes undoes it from the application's folder", async () => {
    expectOk(await npm("run", "dev"), "npm run dev (fourth migration)");
    expect(JSON.parse((await getWhenUp(appPort)).body)).toEqual([{ id: 1, name: "teapot", price: 0, stock: 0 }]);
    const rollback = expectOk(await npm("run", "rollback", "--", "--stack", "dev", "--yes"), "npm run rollback");
    expect(rollback.stdout + rollback.stderr).toContain(FOURTH);
    const rows = await getWhenUp(appPort);
    expect(JSON.parse(rows.body)).toEqual([{ id: 1, name: "teapot", price: 0 }]);
  });

  it("starts the installed CLI as fast as this checkout's", async () => {
    const time = async (cwd: string, bin: string) => {
      const started = process.hrtime.bigint();
      execFileSync(process.execPath, [bin, "status", "--help"], { cwd, stdio: "ignore" });
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    const installed: number[] = [];
    const checkout: number[] = [];
    // Interleaved, after one warm-up each (the checkout's first run may build its bundle).
    await time(REPO_ROOT, "infra/bin/pgstack.js");
    await time(app, "node_modules/pgstack/infra/bin/pgstack.js");
    for (let i = 0; i < 5; i++) {
      checkout.push(await time(REPO_ROOT, "infra/bin/pgstack.js"));
      installed.push(await time(app, "node_modules/pgstack/infra/bin/pgstack.js"));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[2];
    process.stderr.write(`[e2e package] CLI start (status --help), median of 5: installed ${median(installed).toFixed(0)} ms, checkout ${median(checkout).toFixed(0)} ms\n`);
    expect(median(installed)).toBeLessThanOrEqual(median(checkout) * 1.25 + 50);
  });

  it("wrote nothing under node_modules", async () => {
    expect(await listing(path.join(app, "node_modules"))).toBe(nodeModulesBefore);
    expect((await fs.stat(path.join(app, ".pgstack", "cache"))).isDirectory()).toBe(true);
  });

  it("adopts a database Prisma already migrated: the first up runs no SQL and takes no snapshot", async () => {
    const url = await createTestDatabase("adopt");
    const migrations = path.join(app, "prisma", "migrations");
    await fs.rm(path.join(migrations, FOURTH), { recursive: true, force: true });
    await applyThePrismaWay(url, migrations);
    const ledger = () => withDb(url, async (c) => (await c.query('SELECT * FROM "_prisma_migrations" ORDER BY migration_name')).rows);
    const [ledgerBefore, dataBefore] = [await ledger(), await tableDigests(url)];

    // Its own passphrase: pgstack's committed dev passphrase is for the dev stack only.
    const pulumi = (...args: string[]) => run("npm", ["run", "--silent", "pulumi", "--", ...args], { PULUMI_CONFIG_PASSPHRASE: "adopt-passphrase" });
    expectOk(await pulumi("stack", "init", "adopt"), "stack init adopt");
    for (const [k, v] of [["pgstack:engine", "external"], ["pgstack:seed", "false"]]) expectOk(await pulumi("config", "set", k, v, "--stack", "adopt"), `config set ${k}`);
    expectOk(await pulumi("config", "set", "--secret", "pgstack:externalUrl", url, "--stack", "adopt"), "config set externalUrl");
    // The application's server belongs to dev; this stack is the database alone.
    await fs.writeFile(path.join(app, "infra", "index.ts"), PROGRAM(appPort).split("\n// The application")[0] + "\n");
    expectOk(await pulumi("up", "--yes", "--skip-preview", "--stack", "adopt"), "pulumi up (adopt)");

    expect(await ledger()).toEqual(ledgerBefore);
    expect(await tableDigests(url)).toEqual(dataBefore);
    expect(await listAllSnapshots(url, { stack: "adopt" }, { snapshotsDir: path.join(app, ".pgstack", "snapshots") })).toEqual([]);
    const outputs = JSON.parse(expectOk(await pulumi("stack", "output", "--json", "--stack", "adopt"), "stack output").stdout);
    expect(outputs.latestSnapshot).toBe("");
    expect(outputs.appliedMigrations).toEqual(Object.keys(MIGRATIONS));

    // A ledger whose checksum differs from the folder's stops with the sentence that names the migration.
    const drifted = await createTestDatabase("adopt_drift");
    await applyThePrismaWay(drifted, migrations);
    await withDb(drifted, (c) => c.query(`UPDATE "_prisma_migrations" SET checksum = repeat('0', 64) WHERE migration_name = '20250102000000_items'`));
    const driftedData = await tableDigests(drifted);
    expectOk(await pulumi("stack", "init", "adopt-drift"), "stack init adopt-drift");
    for (const [k, v] of [["pgstack:engine", "external"], ["pgstack:seed", "false"]]) expectOk(await pulumi("config", "set", k, v, "--stack", "adopt-drift"), `config set ${k}`);
    expectOk(await pulumi("config", "set", "--secret", "pgstack:externalUrl", drifted, "--stack", "adopt-drift"), "config set externalUrl");
    const refused = await pulumi("up", "--yes", "--skip-preview", "--stack", "adopt-drift");
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toContain(
      "Applied migration 20250102000000_items was edited after it ran (its checksum no longer matches the database's record)",
    );
    expect(await tableDigests(drifted)).toEqual(driftedData);
  });
});

describe("installed from a git URL", () => {
  it("npm runs its build (prepare) on the clone: the components load and the CLI runs", async () => {
    const consumer = path.join(root, "from-git");
    await fs.mkdir(consumer);
    await fs.writeFile(path.join(consumer, "package.json"), JSON.stringify({ name: "from-git", version: "1.0.0", private: true }) + "\n");
    // The committed HEAD of this checkout, as `npm install git+https://…/pgstack.git` would fetch it.
    execFileSync("npm", ["install", "--prefer-offline", `git+file://${REPO_ROOT}`], { cwd: consumer, env, stdio: ["ignore", "pipe", "pipe"] });
    const entry = execFileSync(process.execPath, ["-e", 'process.stdout.write(typeof require("pgstack").PgStack)'], { cwd: consumer, encoding: "utf8" });
    expect(entry).toBe("function");
    const version = execFileSync("npx", ["pgstack", "--version"], { cwd: consumer, env, encoding: "utf8" });
    expect(version.trim()).toBe(JSON.parse(await fs.readFile(path.join(REPO_ROOT, "package.json"), "utf8")).version);
  });
});
