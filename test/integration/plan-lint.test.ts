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

  describe("expand or contract per pending migration", () => {
    const contract = {
      "20250203000000_rename_email": `-- AlterTable\nALTER TABLE "users" RENAME COLUMN "email" TO "email_address";\n`,
      "20250204000000_bio": `ALTER TABLE "users" ADD COLUMN "bio" TEXT;\n`,
    };

    it("--json gives each pending migration its compatibility and reasons", async () => {
      const dir = await migrationsDir({ ...applied, ...risky, ...contract });
      const result = await pgstack(["plan", "--json", "--dir", dir], { DATABASE_URL: url });
      expect(result.code).toBe(0);
      const pending = JSON.parse(result.stdout).pending as { name: string; compatibility: string; reasons: unknown[]; acknowledged?: string }[];
      expect(pending.map((p) => [p.name, p.compatibility, p.reasons.length, p.acknowledged])).toEqual([
        ["20250201000000_index_email", "expand", 0, undefined],
        ["20250202000000_drop_nickname", "contract", 1, undefined],
        ["20250203000000_rename_email", "contract", 1, undefined],
        ["20250204000000_bio", "expand", 0, undefined],
      ]);
      expect(pending[1].reasons).toEqual([
        {
          statement: 'ALTER TABLE "users" DROP COLUMN "nickname"',
          line: 2,
          rule: "drop-column",
          reason: 'Dropping column "nickname" of "users": the running version still selects and writes it.',
        },
      ]);
      expect(pending[2].reasons).toEqual([expect.objectContaining({ line: 2, rule: "rename-column" })]);
    });

    it("--markdown has a compatibility column, the contract statements and how many contract migrations run while the running version is live", async () => {
      const dir = await migrationsDir({ ...applied, ...risky, ...contract });
      const result = await pgstack(["plan", "--markdown", "--dir", dir], { DATABASE_URL: url });
      expect(result.code).toBe(0);
      expect(result.stdout).toContain("| # | migration | statements | mode | compatibility |");
      expect(result.stdout).toContain("| 1 | `20250201000000_index_email` | 1 | transaction (atomic) | expand |");
      expect(result.stdout).toContain("| 2 | `20250202000000_drop_nickname` | 1 | transaction (atomic) | **contract** |");
      expect(result.stdout).toContain(
        "2 contract migrations will run while the version of the application now running is live, unless the program waits for the rollout (`contractAfter`, README).",
      );
      expect(result.stdout).toContain(
        '| `20250203000000_rename_email` | 2 | `rename-column` | `ALTER TABLE "users" RENAME COLUMN "email" TO "email_address"` | Renaming column "email" of "users" to "email_address": the running version still uses "email". |',
      );
    });

    it("an acknowledged contract migration stays contract and shows its reason; with none, no contract sentence", async () => {
      const dir = await migrationsDir({
        ...applied,
        "20250202000000_drop_nickname": `-- pgstack:allow-contract nickname was never read by any released version\n${risky["20250202000000_drop_nickname"]}`,
      });
      const json = JSON.parse((await pgstack(["plan", "--json", "--dir", dir], { DATABASE_URL: url })).stdout);
      expect(json.pending[0]).toMatchObject({ compatibility: "contract", acknowledged: "nickname was never read by any released version" });
      const markdown = (await pgstack(["plan", "--markdown", "--dir", dir], { DATABASE_URL: url })).stdout;
      expect(markdown).toContain("| **contract**, acknowledged: nickname was never read by any released version |");
      expect(markdown).toContain("1 contract migration will run while the version of the application now running is live");
      const text = (await pgstack(["plan", "--dir", dir], { DATABASE_URL: url })).stdout;
      expect(text).toMatch(/COMPATIBILITY/);
      expect(text).toContain("contract (acknowledged)");
      expect(text).toContain("20250202000000_drop_nickname:3: drop-column: Dropping column \"nickname\" of \"users\"");

      const expandOnly = await migrationsDir({ ...applied, "20250204000000_bio": contract["20250204000000_bio"] });
      const md = (await pgstack(["plan", "--markdown", "--dir", expandOnly], { DATABASE_URL: url })).stdout;
      expect(md).toContain("| 1 | `20250204000000_bio` | 1 | transaction (atomic) | expand |");
      expect(md).not.toContain("contract");
    });

    it("a declared expand migration is expand, with its declaration and the reasons it overrules, in the table, --json and --markdown", async () => {
      const dir = await migrationsDir({
        ...applied,
        "20250202000000_drop_nickname": `-- pgstack:expand no released version reads nickname\n${risky["20250202000000_drop_nickname"]}`,
      });
      const json = JSON.parse((await pgstack(["plan", "--json", "--dir", dir], { DATABASE_URL: url })).stdout);
      expect(json.pending[0]).toMatchObject({
        compatibility: "expand",
        declaredExpand: "no released version reads nickname",
        reasons: [expect.objectContaining({ line: 3, rule: "drop-column" })],
      });
      const markdown = (await pgstack(["plan", "--markdown", "--dir", dir], { DATABASE_URL: url })).stdout;
      expect(markdown).toContain("| expand, declared: no released version reads nickname |");
      expect(markdown).toContain("#### Declared expand");
      expect(markdown).toContain('| `20250202000000_drop_nickname` | 3 | `drop-column` |');
      expect(markdown).not.toContain("contract migration will run");
      const text = (await pgstack(["plan", "--dir", dir], { DATABASE_URL: url })).stdout;
      expect(text).toContain("expand (declared)");
      expect(text).toContain("20250202000000_drop_nickname: declared expand: no released version reads nickname");
      expect(text).toContain('20250202000000_drop_nickname:3: drop-column: Dropping column "nickname" of "users": the running version still selects and writes it. (overruled by the declaration)');
    });

    it("with only expand migrations, no contract sentence", async () => {
      const expandOnly = await migrationsDir({ ...applied, "20250204000000_bio": contract["20250204000000_bio"] });
      const md = (await pgstack(["plan", "--markdown", "--dir", expandOnly], { DATABASE_URL: url })).stdout;
      expect(md).toContain("| 1 | `20250204000000_bio` | 1 | transaction (atomic) | expand |");
      expect(md).not.toContain("contract");
    });
  });
});
