/**
 * `pgstack init`: what an existing Prisma application needs to deploy its
 * database with pgstack, and nothing else. Never touches the migrations; a
 * file that exists with other content is kept (and said so, with how to
 * merge); a second run changes nothing.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { PgstackError } from "../../core/errors";

/** The committed dev stack's salt, for pgstack's dev-only passphrase (as this repository's Pulumi.dev.yaml). */
const DEV_SALT = "v1:bbh/KLcrIf8=:v1:1PPwtMbLTnD4+ScA:Y+V9KkIDXlVR7M1I7HiUhO7+J5IEuw==";

/** The npm scripts, as in this repository: each runs pgstack's own from the package. */
export const INIT_SCRIPTS: Record<string, string> = {
  dev: "pgstack dev",
  preview: "pgstack preview",
  rollback: "pgstack rollback",
  destroy: "pgstack destroy",
  pulumi: "pgstack pulumi",
};

export const PROGRAM_FILE = "infra/index.ts";

/** The three lines that make a Pulumi program a pgstack one. */
export function programLines(migrationsDir: string): string[] {
  return [
    `import { PgStack } from "pgstack";`,
    `const db = new PgStack("db", { migrationsDir: ${JSON.stringify(migrationsDir)} });`,
    `export const { databaseUrl, appliedMigrations, latestSnapshot, rollbackCommand, pinnedMigration } = db;`,
  ];
}

export interface InitFile {
  path: string;
  text: string;
}

/** What init writes in `dir`, by the application's own layout. Pure but for reading dir. */
export function initFiles(dir: string, options: { withProgram: boolean }): InitFile[] {
  const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string };
  const name = (pkg.name ?? path.basename(dir)).replace(/^@[^/]+\//, "").replace(/[^A-Za-z0-9_.-]/g, "-") || "app";
  const migrationsDir = existsSync(path.join(dir, "prisma", "migrations")) ? "prisma/migrations" : "migrations";
  const seed = existsSync(path.join(dir, "prisma", "seed.ts"));
  const files: InitFile[] = [];
  if (options.withProgram) {
    files.push({
      path: "Pulumi.yaml",
      text: [
        `name: ${name}`,
        `description: ${name}'s PostgreSQL database, deployed by pgstack (snapshot, migrations, seed).`,
        `runtime:`,
        `  name: nodejs`,
        `  options:`,
        `    # TypeScript through tsx (installed with pgstack): no build step.`,
        `    typescript: false`,
        `    nodeargs: "--require=tsx/cjs"`,
        `main: ${PROGRAM_FILE}`,
        ``,
      ].join("\n"),
    });
    files.push({
      path: PROGRAM_FILE,
      text: [
        `// The Pulumi program: the database and its migrations (pgstack), and whatever else the`,
        `// application deploys, with \`dependsOn: db.ready\` on what needs the migrated database.`,
        ...programLines(migrationsDir),
        ``,
      ].join("\n"),
    });
  }
  files.push({
    path: "Pulumi.dev.yaml",
    text: [
      `# The dev stack: an embedded PostgreSQL (no Docker, no cloud account), data in .pgstack/dev/.`,
      `# \`npm run dev\` brings it up; \`npm run destroy\` stops the server (data kept).`,
      `# encryptionsalt goes with pgstack's dev-only passphrase (dev stack only).`,
      `config:`,
      `  pgstack:engine: embedded`,
      `  pgstack:postgresVersion: "18"`,
      `  pgstack:databaseName: app`,
      `  pgstack:lint: warn`,
      `  pgstack:seed: "${seed}"`,
      `  pgstack:embedded:`,
      `    port: 54329`,
      `encryptionsalt: ${DEV_SALT}`,
      ``,
    ].join("\n"),
  });
  for (const env of ["staging", "prod"]) {
    files.push({
      path: `Pulumi.${env}.yaml`,
      text: [
        `# The ${env} stack (uncomment and fill in; secrets with \`npm run pulumi -- config set --secret --stack ${env} ...\`).`,
        `# Every key: https://github.com/pgstack/pgstack#settings (infra/config/schema.ts).`,
        `# config:`,
        `#   pgstack:engine: rds`,
        `#   pgstack:postgresVersion: "18"`,
        `#   pgstack:databaseName: app`,
        `#   pgstack:rds:`,
        `#     instanceClass: db.t4g.micro`,
        `#     vpcId: vpc-...`,
        `#     subnetIds: [subnet-..., subnet-...]`,
        `#     allowedSecurityGroupIds: [sg-...]`,
        ...(env === "prod" ? [`#     multiAz: true`] : []),
        ``,
      ].join("\n"),
    });
  }
  const workflow = (kind: "preview" | "deploy") =>
    [
      `# ${kind === "preview" ? "Pull requests: preview what the merge would do to staging's database" : "main: deploy staging's database"} with pgstack.`,
      `name: ${kind}`,
      `on:`,
      kind === "preview" ? `  pull_request:\n    branches: [main]` : `  push:\n    branches: [main]`,
      `permissions:`,
      `  contents: read`,
      `  id-token: write # OIDC: assume the cloud role, no long-lived keys`,
      `concurrency:`,
      `  group: ${kind}-staging`,
      `  cancel-in-progress: ${kind === "preview"}`,
      `jobs:`,
      `  ${kind}:`,
      `    runs-on: ubuntu-latest`,
      `    environment: staging`,
      `    env:`,
      `      PULUMI_BACKEND_URL: \${{ vars.PULUMI_BACKEND_URL }}`,
      `      PULUMI_CONFIG_PASSPHRASE: \${{ secrets.PULUMI_CONFIG_PASSPHRASE }}`,
      `    steps:`,
      `      - uses: actions/checkout@v4`,
      `      - uses: actions/setup-node@v4`,
      `        with:`,
      `          node-version: 20`,
      `          cache: npm`,
      `      - run: npm ci --no-audit --no-fund`,
      kind === "preview" ? `      - run: npm run preview -- --stack staging` : `      - run: npm run pulumi -- up --yes --stack staging`,
      ``,
    ].join("\n");
  files.push({ path: ".github/workflows/pgstack-preview.yml", text: workflow("preview") });
  files.push({ path: ".github/workflows/pgstack-deploy.yml", text: workflow("deploy") });
  return files;
}

/** Lines .gitignore needs: pgstack's local state, data and caches. */
export const IGNORED = [".pgstack/", ".pulumi-state/"];

export interface InitReport {
  created: string[];
  /** Files that exist with other content: kept as they are. */
  kept: string[];
  /** npm scripts added, and the ones kept because the application has its own. */
  scriptsAdded: string[];
  scriptsKept: string[];
  /** Printed instead of touching an existing Pulumi program. */
  programLines?: string[];
}

/** Runs init in `dir`. */
export function init(dir: string): InitReport {
  const pkgFile = path.join(dir, "package.json");
  if (!existsSync(pkgFile)) throw new PgstackError("E_SETTINGS", `No package.json in ${dir}: run pgstack init in the application's folder (where its package.json is).`);
  const existingProgram = existsSync(path.join(dir, "Pulumi.yaml")) || existsSync(path.join(dir, "Pulumi.yml"));
  const report: InitReport = { created: [], kept: [], scriptsAdded: [], scriptsKept: [] };
  const files = initFiles(dir, { withProgram: !existingProgram });
  if (existingProgram) report.programLines = programLines(existsSync(path.join(dir, "prisma", "migrations")) ? "prisma/migrations" : "migrations");
  for (const file of files) {
    const target = path.join(dir, file.path);
    if (existsSync(target)) {
      if (readFileSync(target, "utf8") !== file.text) report.kept.push(file.path);
      continue;
    }
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, file.text);
    report.created.push(file.path);
  }
  const gitignore = path.join(dir, ".gitignore");
  const ignored = existsSync(gitignore) ? readFileSync(gitignore, "utf8") : "";
  const missing = IGNORED.filter((line) => !ignored.split("\n").some((l) => l.trim() === line || l.trim() === line.replace(/\/$/, "")));
  if (missing.length > 0) {
    writeFileSync(gitignore, `${ignored}${ignored && !ignored.endsWith("\n") ? "\n" : ""}${missing.join("\n")}\n`);
    report.created.push(`.gitignore: ${missing.join(", ")}`);
  }
  const text = readFileSync(pkgFile, "utf8");
  const pkg = JSON.parse(text) as { scripts?: Record<string, string> };
  const scripts = { ...(pkg.scripts ?? {}) };
  for (const [name, command] of Object.entries(INIT_SCRIPTS)) {
    if (scripts[name] === undefined) {
      scripts[name] = command;
      report.scriptsAdded.push(name);
    } else if (scripts[name] !== command) {
      report.scriptsKept.push(name);
    }
  }
  if (report.scriptsAdded.length > 0) {
    const indent = /^[ \t]+/m.exec(text)?.[0] ?? "  ";
    writeFileSync(pkgFile, JSON.stringify({ ...pkg, scripts }, null, indent) + "\n");
  }
  return report;
}

/** What init says, one line each. */
export function describeInit(report: InitReport): string[] {
  const lines: string[] = [];
  for (const f of report.created) lines.push(`created ${f}`);
  if (report.scriptsAdded.length > 0) lines.push(`added npm scripts ${report.scriptsAdded.join(", ")} to package.json`);
  for (const f of report.kept) lines.push(`kept ${f}: it differs from pgstack's; to merge, compare it with \`npx pgstack init --show ${f}\``);
  for (const s of report.scriptsKept) lines.push(`kept the npm script ${s}: it is your own; pgstack's is \`${INIT_SCRIPTS[s]}\``);
  if (report.programLines) {
    lines.push("Pulumi.yaml exists: add these three lines to your Pulumi program (top level), then `npm run dev`:");
    for (const l of report.programLines) lines.push(`  ${l}`);
  }
  if (lines.length === 0) lines.push("nothing to do: this application is set up for pgstack");
  return lines;
}
