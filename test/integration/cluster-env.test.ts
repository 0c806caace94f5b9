import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { freePort, initCluster, startCluster, stopCluster } from "../../infra/core/cluster/embedded";

/**
 * The embedded server outlives the command that starts it, and its superuser can
 * read its environment over SQL: nothing of the starter's environment may be there
 * (a Pulumi update starts it with the stack passphrase and backend URL in scope).
 */
describe("an embedded server's environment", () => {
  const secrets = {
    PULUMI_CONFIG_PASSPHRASE: `passphrase-${Math.random().toString(36).slice(2)}`,
    PULUMI_BACKEND_URL: "s3://bucket-of-the-team/pgstack",
    DATABASE_URL: "postgresql://app:hunter2@db.internal:5432/app",
  };
  let root: string;
  let dataDir: string;

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-env-"));
    await fs.chmod(root, 0o755);
    dataDir = path.join(root, "data");
  });
  afterAll(async () => {
    await stopCluster(dataDir).catch(() => undefined);
    for (const k of Object.keys(secrets)) delete process.env[k];
    await fs.rm(root, { recursive: true, force: true });
  });

  test("holds none of the caller's variables, read as the superuser over SQL", async () => {
    Object.assign(process.env, secrets);
    const port = await freePort();
    const password = `p${Math.random().toString(36).slice(2)}`;
    await initCluster({ dataDir, port, password });
    await startCluster({ dataDir, port });

    const client = new Client({ connectionString: `postgresql://postgres:${password}@127.0.0.1:${port}/postgres` });
    await client.connect();
    try {
      const { rows } = await client.query<{ environ: Buffer }>(
        // The postmaster's: a backend's own area is overwritten by its process title.
        "SELECT pg_read_binary_file('/proc/' || split_part(pg_read_file('postmaster.pid'), E'\\n', 1) || '/environ') AS environ",
      );
      const environ = rows[0].environ.toString("utf8");
      for (const value of Object.values(secrets)) expect(environ).not.toContain(value);
      const names = environ.split("\0").filter(Boolean).map((kv) => kv.split("=")[0]);
      // What pgstack passes (PATH, locale), what PostgreSQL sets for itself, and the shell pg_ctl starts it with.
      const allowed = new Set(["PATH", "LC_ALL", "LANG", "PGDATA", "PGSYSCONFDIR", "PG_GRANDPARENT_PID", "PGLOCALEDIR", "PWD"]);
      expect(names.filter((n) => !allowed.has(n) && !n.startsWith("LC_"))).toEqual([]);
      expect(names).toContain("PGDATA"); // the file was read, not empty
    } finally {
      await client.end();
    }
  });
});
