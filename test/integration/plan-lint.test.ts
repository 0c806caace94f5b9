import { promises as fs } from "node:fs";
import * as path from "node:path";
import { pgstack } from "../support/cli";
import { createTestDatabase } from "../support/cluster";
import { REPO_ROOT, migrationsDir } from "../support/fixtures";

const GOLDEN = path.join(REPO_ROOT, "test", "fixtures", "plan", "plan-strict.md");

const applied = {
  "20250101000000_users": `-- CreateTable\nCREATE TABLE "users" (\n    "id" TEXT NOT NULL,\n    "email" TEXT NOT NULL,\n    "nickname" TEXT,\n\n    CONSTRAINT "users_pkey" PRIMARY KEY ("id")\n);\n`,
};
const risky = {
  "20250201000000_index_email": `-- CreateIndex\nCREATE INDEX "users_email_idx" ON "users"("email");\n`,
  "20250202000000_drop_nickname": `-- AlterTable\nALTER TABLE "users" DROP COLUMN "nickname";\n`,
};
const accepted = {
  "20250201000000_index_email": `-- CreateIndex\n-- pgstack:allow require-concurrent-index-creation users has 200 rows in every environment\nCREATE INDEX "users_email_idx" ON "users"("email");\n`,
  "20250202000000_drop_nickname": `-- AlterTable\n-- pgstack:allow ban-drop-column nickname was never read, and the snapshot keeps it\nALTER TABLE "users" DROP COLUMN "nickname";\n`,
};

describe("pgstack plan with lint findings", () => {
  let url: string;
  beforeAll(async () => {
    url = await createTestDatabase("plan_lint");
    const dir = await migrationsDir(applied);
    expect((await pgstack(["apply", "--all", "--dir", dir], { DATABASE_URL: url })).code).toBe(0);
  });

  it("--strict lists the pending migrations and their blocking findings, and exits non-zero (golden PR comment)", async () => {
    const dir = await migrationsDir({ ...applied, ...risky });
    const result = await pgstack(["plan", "--markdown", "--strict", "--dir", dir], { DATABASE_URL: url });
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe(
      "pgstack: 2 blocking finding(s) in migrations 20250201000000_index_email, 20250202000000_drop_nickname: fix them, or accept each with `-- pgstack:allow <rule> <reason>` on the line before it.",
    );
    const markdown = result.stdout.split(dir + path.sep).join("");
    if (process.env.UPDATE_GOLDEN) await fs.writeFile(GOLDEN, markdown);
    expect(markdown).toBe(await fs.readFile(GOLDEN, "utf8"));
  });

  it("without --strict, the same plan reports the findings but does not fail", async () => {
    const dir = await migrationsDir({ ...applied, ...risky });
    const result = await pgstack(["plan", "--json", "--dir", dir], { DATABASE_URL: url });
    expect(result.code).toBe(0);
    const { lint } = JSON.parse(result.stdout);
    expect(lint.blocking).toBe(2);
    expect(lint.findings.filter((f: { severity: string }) => f.severity === "blocking").map((f: { rule: string }) => f.rule).sort()).toEqual([
      "ban-drop-column",
      "require-concurrent-index-creation",
    ]);
  });

  it("with both findings accepted, --strict passes and the plan shows them as accepted with their reasons", async () => {
    const dir = await migrationsDir({ ...applied, ...accepted });
    const result = await pgstack(["plan", "--markdown", "--strict", "--dir", dir], { DATABASE_URL: url });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("| `20250201000000_index_email` | 3 | accepted: users has 200 rows in every environment | `require-concurrent-index-creation` |");
    expect(result.stdout).toContain("| `20250202000000_drop_nickname` | 3 | accepted: nickname was never read, and the snapshot keeps it | `ban-drop-column` |");
    expect(result.stdout).toContain("no blocking finding; 0 warning(s); 2 accepted.");
  });

  it("does not lint applied history", async () => {
    const dir = await migrationsDir({ ...applied, "20250201000000_noop": `SELECT 1;\n` });
    const result = await pgstack(["plan", "--json", "--strict", "--dir", dir], { DATABASE_URL: url });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).lint.findings.filter((f: { migration: string }) => f.migration === "20250101000000_users")).toEqual([]);
  });
});
