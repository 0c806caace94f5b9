import { freePort } from "../../infra/core/cluster/embedded";
import { pgstack } from "../support/cli";
import { createTestDatabase } from "../support/cluster";

describe("pgstack ping", () => {
  test("names the server that answered", async () => {
    const url = await createTestDatabase("ping");
    const ok = await pgstack(["ping", "--json"], { DATABASE_URL: url });
    expect(ok.code).toBe(0);
    const answer = JSON.parse(ok.stdout);
    expect(answer).toMatchObject({ host: "127.0.0.1", port: Number(new URL(url).port), database: new URL(url).pathname.slice(1) });
    expect(answer.version).toMatch(/^\d+\.\d+/);
  });

  test("an unreachable database is one sentence with its host, port and where to run the deploy, and no password", async () => {
    const port = await freePort(); // nothing listens there
    const result = await pgstack(["ping"], { DATABASE_URL: `postgresql://app:s3cret-pw@127.0.0.1:${port}/app` });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      `pgstack: Cannot reach PostgreSQL at 127.0.0.1:${port} (connection refused): check the host and port in the database URL and that the server is running; ` +
        "run the deploy where the database is reachable (in CI: runner labels in the PGSTACK_DEPLOY_RUNNER repository variable) or allow this machine in the database's security group.\n",
    );
  });
});
