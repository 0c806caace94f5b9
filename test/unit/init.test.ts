/**
 * `pgstack init` in an existing Prisma application: adds what pgstack needs
 * and nothing else, never touches the migrations, keeps the user's files, and
 * a second run changes nothing.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describeInit, init } from "../../infra/cli/init/init";

async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const stat = await fs.stat(file);
    out[path.relative(dir, file)] = `${createHash("sha256").update(await fs.readFile(file)).digest("hex")} ${stat.mtimeMs}`;
  }
  return out;
}

async function app(files: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-init-"));
  for (const [file, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await fs.writeFile(path.join(dir, file), text);
  }
  return dir;
}

const PRISMA_APP = {
  "package.json": JSON.stringify({ name: "@acme/shop", scripts: { test: "jest", dev: "vite" } }, null, 2) + "\n",
  "prisma/schema.prisma": "datasource db {\n  provider = \"postgresql\"\n}\n",
  "prisma/migrations/20250101000000_init/migration.sql": "CREATE TABLE shop (id int);\n",
  "prisma/migrations/migration_lock.toml": 'provider = "postgresql"\n',
};

describe("pgstack init in a Prisma application without a Pulumi program", () => {
  let dir: string;
  let lines: string[];
  beforeAll(async () => {
    dir = await app(PRISMA_APP);
    lines = describeInit(init(dir));
  });
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));

  it("adds the program, the stack files, the workflows, .gitignore lines and the npm scripts the application lacks", async () => {
    const files = Object.keys(await tree(dir)).sort();
    expect(files).toEqual(
      [
        ".github/workflows/pgstack-deploy.yml",
        ".github/workflows/pgstack-preview.yml",
        ".gitignore",
        "Pulumi.dev.yaml",
        "Pulumi.prod.yaml",
        "Pulumi.staging.yaml",
        "Pulumi.yaml",
        "infra/index.ts",
        ...Object.keys(PRISMA_APP),
      ].sort(),
    );
    const pkg = JSON.parse(await fs.readFile(path.join(dir, "package.json"), "utf8"));
    expect(pkg.scripts).toEqual({ test: "jest", dev: "vite", preview: "pgstack preview", rollback: "pgstack rollback", destroy: "pgstack destroy", pulumi: "pgstack pulumi" });
    expect(await fs.readFile(path.join(dir, "infra/index.ts"), "utf8")).toContain(`new PgStack("db", { migrationsDir: "prisma/migrations" })`);
    expect(await fs.readFile(path.join(dir, "Pulumi.dev.yaml"), "utf8")).toContain(`pgstack:seed: "false"`);
    expect(await fs.readFile(path.join(dir, "Pulumi.yaml"), "utf8")).toMatch(/^name: shop$/m);
    // Every line of the staging and prod files is a comment: nothing is decided for them.
    for (const env of ["staging", "prod"]) {
      const text = await fs.readFile(path.join(dir, `Pulumi.${env}.yaml`), "utf8");
      expect(text.trim().split("\n").every((l) => l.startsWith("#"))).toBe(true);
    }
    expect(lines).toContain("kept the npm script dev: it is your own; pgstack's is `pgstack dev`");
  });

  it("leaves the migrations and the schema as they were", async () => {
    for (const [file, text] of Object.entries(PRISMA_APP).filter(([f]) => f.startsWith("prisma/"))) {
      expect(await fs.readFile(path.join(dir, file), "utf8")).toBe(text);
    }
  });

  it("changes nothing when run again, and keeps a file the user changed, saying how to merge", async () => {
    const stackFile = path.join(dir, "Pulumi.dev.yaml");
    await fs.writeFile(stackFile, (await fs.readFile(stackFile, "utf8")).replace("port: 54329", "port: 54400"));
    const before = await tree(dir);
    const again = describeInit(init(dir));
    expect(await tree(dir)).toEqual(before);
    expect(again).toContain("kept Pulumi.dev.yaml: it differs from pgstack's; to merge, compare it with `npx pgstack init --show Pulumi.dev.yaml`");
    expect(again.some((l) => l.startsWith("created") || l.startsWith("added"))).toBe(false);
  });
});

describe("pgstack init in an application with its own Pulumi program", () => {
  it("does not touch it and prints the three lines to add", async () => {
    const dir = await app({ ...PRISMA_APP, "Pulumi.yaml": "name: shop\nruntime: nodejs\n", "index.ts": "export const x = 1;\n" });
    try {
      const lines = describeInit(init(dir));
      expect(await fs.readFile(path.join(dir, "Pulumi.yaml"), "utf8")).toBe("name: shop\nruntime: nodejs\n");
      expect(await fs.readFile(path.join(dir, "index.ts"), "utf8")).toBe("export const x = 1;\n");
      await expect(fs.stat(path.join(dir, "infra"))).rejects.toThrow();
      const at = lines.indexOf("Pulumi.yaml exists: add these three lines to your Pulumi program (top level), then `npm run dev`:");
      expect(at).toBeGreaterThanOrEqual(0);
      expect(lines.slice(at + 1, at + 4).map((l) => l.trim())).toEqual([
        `import { PgStack } from "pgstack";`,
        `const db = new PgStack("db", { migrationsDir: "prisma/migrations" });`,
        `export const { databaseUrl, appliedMigrations, latestSnapshot, rollbackCommand, pinnedMigration } = db;`,
      ]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses a folder without package.json with one sentence, through the CLI, writing nothing", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-init-"));
    try {
      let stderr = "";
      let code = 0;
      try {
        execFileSync(process.execPath, [path.resolve(__dirname, "../../infra/bin/pgstack.js"), "init"], { cwd: dir, encoding: "utf8", stdio: "pipe" });
      } catch (err) {
        stderr = (err as { stderr: string }).stderr;
        code = (err as { status: number }).status;
      }
      expect(code).toBe(1);
      expect(stderr.trim()).toBe(`pgstack: No package.json in ${await fs.realpath(dir)}: run pgstack init in the application's folder (where its package.json is).`);
      expect(await fs.readdir(dir)).toEqual([]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
