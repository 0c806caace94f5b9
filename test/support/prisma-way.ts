import { execFile } from "node:child_process";
import { randomUUID, createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { withDb } from "./cluster";
import { resolveToolFor } from "../../infra/core/pgtools";

/**
 * Applies a migrations folder the way `prisma migrate deploy` (Prisma 7) does,
 * written from its source and independent of pgstack's code:
 * - listMigrations (prisma/packages/migrate): every directory entry that is a
 *   directory (Dirent.isDirectory: a symlink is not), sorted with localeCompare;
 * - the schema engine's postgres connector sends each migration.sql whole, as
 *   one simple-query message (`client.simple_query(script)`), on one session for
 *   the whole run; the ledger row is inserted before and finished after
 *   (applied_steps_count 1).
 * `count` stops after that many migrations (to leave the rest to pgstack).
 */
export async function applyThePrismaWay(url: string, dir: string, count = Infinity): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const names = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort((a, b) => a.localeCompare(b)).slice(0, count);
  return withDb(url, async (client) => {
    await client.query(`CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`);
    for (const name of names) {
      const bytes = await fs.readFile(path.join(dir, name, "migration.sql"));
      const id = randomUUID();
      // Ledger statements qualified: the scripts may empty search_path, and Prisma's are qualified by its query builder.
      await client.query(`INSERT INTO public."_prisma_migrations" (id, checksum, migration_name, started_at) VALUES ($1, $2, $3, now())`, [
        id,
        createHash("sha256").update(bytes).digest("hex"),
        name,
      ]);
      await client.query(bytes.toString("utf8")); // no parameters: pg sends one simple-query message
      await client.query(`UPDATE public."_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1`, [id]);
    }
    return names;
  });
}

/** `pg_dump -s` of a database, without the lines that differ between any two dumps (\restrict keys). */
export async function schemaDump(url: string): Promise<string> {
  // A pg_dump of at least the server's major (the user's, or pgstack's cached one), as pgstack itself picks it.
  const pgDump = await resolveToolFor("pg_dump", url, {});
  const { stdout } = await promisify(execFile)(pgDump, ["-s", "--no-owner", "--no-privileges", "-d", url], {
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout
    .split("\n")
    .filter((l) => !/^\\(un)?restrict /.test(l))
    .join("\n");
}
