/**
 * The npm scripts fail the way the CLI does (cli/main.ts): `pgstack: <sentence>`
 * on stderr, exit 2 for a malformed command line, 1 for a refusal.
 */
import * as path from "node:path";
import { spawnCollect } from "../support/cli";
import { REPO_ROOT } from "../support/fixtures";

jest.setTimeout(120_000);

const script = (name: string, args: string[]) => spawnCollect(process.execPath, ["-r", "tsx/cjs", path.join(REPO_ROOT, "infra", "scripts", `${name}.ts`), ...args], REPO_ROOT, {});

describe("the npm scripts' error contract", () => {
  it("npm run destroy on a prod stack: refused in one sentence, exit 1", async () => {
    const result = await script("destroy", ["--stack", "prod"]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe("pgstack: refusing to destroy 'prod' from npm run destroy: run `npm run pulumi -- destroy --stack prod` if you really mean it.");
  });

  it("npm run rollback with an unknown flag: a usage error as the CLI's, exit 2", async () => {
    const result = await script("rollback", ["--stack", "dev", "--force"]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(/^pgstack: Unknown argument '--force': usage is npm run rollback/);
  });
});
