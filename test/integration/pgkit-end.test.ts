/**
 * A @pgkit/client (migra's inspection of a database) ended right before its
 * database is dropped WITH (FORCE), as `pgstack revert` drops its throwaway
 * database after inspecting it: on a loaded machine the server may not have
 * read the connection's goodbye yet, and its FATAL 57P01 arrives after end()
 * resolved. pg-promise has removed the pool's error handler by then, so that
 * message must not end the process (it ended `npm run rollback -- --revert`
 * in the rollback-intent test, under load).
 */
import * as path from "node:path";
import { spawnCollect } from "../support/cli";
import { createTestDatabase, testCluster } from "../support/cluster";
import { REPO_ROOT } from "../support/fixtures";

jest.setTimeout(120_000);

const child = async (mode: "fixed" | "plain") => {
  const url = await createTestDatabase(`pgkit_end_${mode}`);
  return spawnCollect(process.execPath, ["--require", "tsx/cjs", path.join(REPO_ROOT, "test", "support", "pgkit-end-child.ts"), url, testCluster().adminUrl, mode], REPO_ROOT, {});
};

test("control: with the client's own end() alone, the late FATAL 57P01 ends the process", async () => {
  const r = await child("plain");
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain("terminating connection due to administrator command");
  expect(r.stdout).not.toContain("survived");
});

test("endPgkitClient: the process survives the late FATAL 57P01", async () => {
  const r = await child("fixed");
  expect(r.stderr).not.toContain("Unhandled 'error' event");
  expect(r.stdout).toContain("survived");
  expect(r.code).toBe(0);
});
