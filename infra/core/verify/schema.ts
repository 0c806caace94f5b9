import { createHash } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import { createClient } from "@pgkit/client";
import { PostgreSQL as Inspected } from "@pgkit/migra";
import { endPgkitClient } from "../db/client";

/**
 * A schema as migra inspects it, and the raw rows of its inspection queries:
 * those rows are what the verify cache keeps, so a cached schema is rebuilt
 * by the same code from the same rows (schemainspect's own JSON form leaves
 * out indexes, domains and types, and pins the server version).
 */
export interface InspectedSchema {
  inspected: Inspected;
  serverVersion: string;
  rows: Record<string, unknown>;
}

type WithRows = Inspected & { queryResults: Record<string, unknown>; execute(name: string): Promise<unknown>; load_all_async(): Promise<void> };

/** migra's inspection of one database, narrowed to `schema`. */
export async function inspectSchema(url: string, schema: string): Promise<InspectedSchema> {
  const client = createClient(url);
  try {
    const inspected = (await Inspected.create(client)) as WithRows;
    const serverVersion = String((inspected as unknown as { pg_version: number }).pg_version);
    const rows = JSON.parse(JSON.stringify(inspected.queryResults)) as Record<string, unknown>;
    inspected.one_schema(schema);
    return { inspected, serverVersion, rows };
  } finally {
    await endPgkitClient(client);
  }
}

/** Rebuilds an inspection from its rows (no database). */
export async function schemaFromRows(rows: Record<string, unknown>, serverVersion: string, schema: string): Promise<Inspected> {
  const Ctor = Inspected as unknown as new (c: unknown, version: string, options: object) => WithRows;
  const inspected = new Ctor(null, serverVersion, {});
  inspected.execute = async (name: string) => {
    const result = rows[name];
    if (!Array.isArray(result)) throw new Error(`the cached schema has no rows for ${name}`);
    inspected.queryResults[name] = result;
    return result;
  };
  await inspected.load_all_async();
  inspected.one_schema(schema);
  return inspected;
}

/** The cache key of an applied set: its names and checksums in order, the server major and the schema. Pure. */
export function appliedSetKey(applied: Array<{ name: string; checksum: string }>, major: string, schema: string): string {
  const h = createHash("sha256");
  h.update(JSON.stringify({ format: 1, schema, major, applied: applied.map((m) => [m.name, m.checksum]) }));
  return h.digest("hex");
}

interface CacheEntry {
  format: 1;
  serverVersion: string;
  rows: Record<string, unknown>;
}

/** The cached expected schema of `key`, or undefined (absent, unreadable or of another format: replay again). */
export async function readCachedSchema(cacheDir: string, key: string, schema: string): Promise<Inspected | undefined> {
  const file = path.join(cacheDir, `${key}.json`);
  if (!existsSync(file)) return undefined;
  try {
    const entry = JSON.parse(await fs.readFile(file, "utf8")) as CacheEntry;
    if (entry.format !== 1) return undefined;
    return await schemaFromRows(entry.rows, entry.serverVersion, schema);
  } catch {
    return undefined;
  }
}

/** Writes the entry atomically (folder 0700, file 0600): a reader sees the whole entry or none. */
export async function writeCachedSchema(cacheDir: string, key: string, captured: InspectedSchema): Promise<void> {
  await fs.mkdir(cacheDir, { recursive: true, mode: 0o700 });
  const file = path.join(cacheDir, `${key}.json`);
  const tmp = `${file}.${process.pid}.tmp`;
  const entry: CacheEntry = { format: 1, serverVersion: captured.serverVersion, rows: captured.rows };
  await fs.writeFile(tmp, JSON.stringify(entry), { mode: 0o600 });
  await fs.rename(tmp, file);
}
