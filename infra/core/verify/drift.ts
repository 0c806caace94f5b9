import { Migration as MigraMigration, PostgreSQL as Inspected } from "@pgkit/migra";
import { parseDatabaseUrl } from "../db/url";
import { isPgstackError, messageOf } from "../errors";
import type { Logger } from "../logger";
import { OBJECT_KINDS } from "../revert/revert";
import type { CheckResult, CheckStatus } from "./check";
import type { LedgerFacts } from "./ledger";
import { replayHistory, type ReplayOn } from "./replay";
import type { DriftPolicy } from "./policy";
import { appliedSetKey, inspectSchema, readCachedSchema, writeCachedSchema } from "./schema";

export { DEFAULT_DRIFT_POLICY, type DriftPolicy } from "./policy";

export interface DriftedObject {
  /** "table", "index", "trigger", ... (migra's kinds, in the report's words). */
  kind: string;
  /** schema.name, unquoted; a trigger or constraint as schema.table.name; a function with its arguments. */
  name: string;
  class: "changed" | "extra";
  /** What happened to it: made outside the history, changed, or removed. */
  how: "added" | "changed" | "removed";
  /** The DDL that reproduces the drift on a database migrated by the history. */
  ddl: string[];
  /** On the allowlist: reported, never counted. */
  allowed: boolean;
}

interface SchemaObject {
  schema?: string;
  table_name?: string;
  equals(other: unknown): boolean;
  create_statement?: string;
  drop_statement?: string;
  elements?: string[];
  quoted_full_name?: string;
}

type Objects = Map<string, { kind: string; key: string; o: SchemaObject }>;

function objectsOf(inspected: Inspected, schema: string): Objects {
  const out: Objects = new Map();
  for (const [prop, kind] of OBJECT_KINDS) {
    const objects = ((inspected as unknown as Record<string, Record<string, SchemaObject> | undefined>)[prop] ?? {}) as Record<string, SchemaObject>;
    for (const [key, o] of Object.entries(objects)) {
      if (prop !== "extensions" && o.schema !== undefined && o.schema !== schema) continue;
      // The ledger is pgstack's (and Prisma's) own: its rows differ by nature.
      if (key.replace(/"/g, "").endsWith("._prisma_migrations") || (o.table_name === "_prisma_migrations")) continue;
      out.set(`${kind}\u0000${key}`, { kind, key, o });
    }
  }
  return out;
}

/**
 * Whether two inspections of one object are the same. A table's columns carry
 * their enum type with its values, and its dependents (the views on it): an
 * enum's new value or a view made by hand is that object's drift, not the
 * table's.
 */
function same(a: SchemaObject, b: SchemaObject): boolean {
  const comparable = (o: SchemaObject) =>
    JSON.stringify(o, (k, v: unknown) => {
      if (k === "dependents" || k === "dependent_on") return undefined;
      if (k === "enum" && v && typeof v === "object") return (v as { name?: string; schema?: string }).schema + "." + (v as { name?: string }).name;
      return v;
    });
  return a.equals(b) || comparable(a) === comparable(b);
}

const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** Whether an allowlist entry names the object. Pure. */
export function allowed(allow: string[], kind: string, name: string): boolean {
  const bare = name.includes(".") ? name.slice(name.indexOf(".") + 1) : name;
  return allow.some((entry) => {
    const re = new RegExp(`^${entry.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
    return re.test(`${kind} ${name}`) || re.test(name) || re.test(bare);
  });
}

/**
 * Object by object, what the database holds that the replayed history does
 * not, with the DDL that makes the history's schema into the database's.
 * `expected` is the history's schema, `live` the database's.
 */
export async function compareSchemas(expected: Inspected, live: Inspected, schema: string, policy: DriftPolicy): Promise<DriftedObject[]> {
  const e = objectsOf(expected, schema);
  const l = objectsOf(live, schema);
  const historyTables = new Set([...e.values()].filter((x) => x.kind === "table").map((x) => x.key));
  // Table changes (columns, defaults, types, nullability) as migra writes them, to be sorted by table.
  let tableStatements: string[] | undefined;
  const migraStatements = async () => {
    if (!tableStatements) {
      const m = await MigraMigration.create(expected, live, { schema });
      m.set_safety(false);
      m.add_all_changes();
      tableStatements = [...m.statements].map((s) => String(s).trim()).filter((s) => s.length > 0);
    }
    return tableStatements;
  };
  const out: DriftedObject[] = [];
  // Tables first (their indexes, constraints and triggers may fold into them), an index before the constraint using it.
  const rank = (id: string) => ["table", "index", "constraint"].indexOf(id.slice(0, id.indexOf("\u0000"))) >>> 0;
  for (const id of [...new Set([...e.keys(), ...l.keys()])].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))) {
    const [was, now] = [e.get(id), l.get(id)];
    if (was && now && same(was.o, now.o)) continue;
    const { kind, key, o } = (now ?? was)!;
    const name = key.replace(/"/g, "");
    const parent = o.table_name && kind !== "table" ? `${quote(o.schema ?? schema)}.${quote(o.table_name)}` : undefined;
    const how: DriftedObject["how"] = !was ? "added" : !now ? "removed" : "changed";
    // Something added on one of the history's tables changes that table: "changed", not "extra".
    const cls: DriftedObject["class"] = was || (parent !== undefined && historyTables.has(parent)) ? "changed" : "extra";
    let ddl: string[];
    if (how === "added") ddl = [now!.o.create_statement ?? ""];
    else if (how === "removed") ddl = [was!.o.drop_statement ?? ""];
    else if (kind === "table") {
      const own = new RegExp(`^alter table (only )?${key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} `, "i");
      ddl = (await migraStatements()).filter((s) => own.test(s) && !/ constraint /i.test(s));
      if (ddl.length === 0) ddl = [was!.o.drop_statement ?? "", now!.o.create_statement ?? ""];
    } else if (kind === "enum" && was!.o.elements && now!.o.elements && isSubsequence(was!.o.elements, now!.o.elements)) {
      ddl = addedEnumValues(key, was!.o.elements, now!.o.elements);
    } else if (kind === "function" || kind === "view") ddl = [now!.o.create_statement ?? ""];
    else ddl = [was!.o.drop_statement ?? "", now!.o.create_statement ?? ""];
    const entry: DriftedObject = { kind, name, class: cls, how, ddl: ddl.filter((s) => s.trim().length > 0).map((s) => s.trim()), allowed: allowed(policy.allow, kind, name) };
    // The index, constraint, trigger or sequence of a table added or removed whole is part of that table's report.
    const whole = parent ? out.find((x) => x.kind === "table" && x.how === how && how !== "changed" && x.name === parent.replace(/"/g, "")) : undefined;
    // Dropping the table drops them; a sequence is made before the table whose default uses it.
    if (whole && how === "added") kind === "sequence" ? whole.ddl.unshift(...entry.ddl) : whole.ddl.push(...entry.ddl);
    else if (whole) continue;
    else out.push(entry);
  }
  return out;
}

function isSubsequence(a: string[], b: string[]): boolean {
  let i = 0;
  for (const x of b) if (x === a[i]) i++;
  return i === a.length;
}

function addedEnumValues(key: string, before: string[], after: string[]): string[] {
  const lit = (v: string) => `'${v.replace(/'/g, "''")}'`;
  return after.flatMap((v, i) => (before.includes(v) ? [] : [`alter type ${key} add value ${lit(v)}${i > 0 ? ` after ${lit(after[i - 1])}` : ` before ${lit(after[1])}`};`]));
}

export interface DriftOptions {
  migrationsDir: string;
  policy: DriftPolicy;
  /** Where expected schemas are kept, by the applied set's checksums. Undefined: no cache. */
  cacheDir?: string;
  replayOn: ReplayOn;
  log: Logger;
}

/**
 * Schema drift: the applied history (the ledger's applied migrations, their
 * files) replayed on a throwaway server, compared with the database by migra.
 */
export async function checkDrift(url: string, facts: LedgerFacts, options: DriftOptions): Promise<CheckResult> {
  const { schema } = parseDatabaseUrl(url);
  const unreplayable = facts.status.filter((s) => s.state === "missing-from-disk").map((s) => s.name);
  if (unreplayable.length > 0) {
    return { name: "drift", status: "fail", sentence: `The history cannot be replayed: ${unreplayable.join(", ")} ${unreplayable.length === 1 ? "is" : "are"} applied but missing from the migrations folder.`, details: { missingFromFolder: unreplayable } };
  }
  const applied = facts.status.filter((s) => s.state === "applied" || s.state === "drifted").map((s) => s.migration!);
  try {
    const live = await inspectSchema(url, schema);
    const major = live.serverVersion.split(".")[0];
    const key = appliedSetKey(applied, major, schema);
    let expected = options.cacheDir ? await readCachedSchema(options.cacheDir, key, schema) : undefined;
    const cached = expected !== undefined;
    if (!expected) {
      const replayed = await replayHistory({ url, major, migrationsDir: options.migrationsDir, applied, migrations: facts.migrations, replayOn: options.replayOn, log: options.log });
      if (options.cacheDir) await writeCachedSchema(options.cacheDir, key, replayed).catch((err) => options.log.warn(`could not cache the expected schema: ${messageOf(err)}`));
      expected = replayed.inspected;
    }
    const objects = await compareSchemas(expected, live.inspected, schema, options.policy);
    const counted = objects.filter((o) => !o.allowed);
    const status = (["fail", "warn", "pass"] as CheckStatus[]).find((s) => counted.some((o) => options.policy[o.class] === s)) ?? "pass";
    const details = { applied: applied.length, cached, replayedOn: cached ? null : options.replayOn, schemaKey: key, objects };
    if (counted.length === 0) {
      const allowedNote = objects.length > 0 ? ` (${objects.length} allowed by pgstack:drift.allow)` : "";
      return { name: "drift", status: "pass", sentence: `The schema is what the ${applied.length} applied migrations make${allowedNote}.`, details };
    }
    const describe = (o: DriftedObject) => `${o.kind} ${o.name} (${o.class === "extra" ? "made outside the migrations" : o.how === "removed" ? "removed outside the migrations" : o.how === "added" ? "added outside the migrations" : "changed outside the migrations"}: ${o.ddl.join(" ")})`;
    const changed = counted.filter((o) => o.class === "changed");
    const extra = counted.filter((o) => o.class === "extra");
    const parts = [
      changed.length > 0 ? `changed: ${changed.map(describe).join("; ")}` : "",
      extra.length > 0 ? `extra: ${extra.map(describe).join("; ")}` : "",
    ].filter(Boolean);
    const advice = status === "fail" ? " Put the change in a migration (or undo it), or allow the object in pgstack:drift." : "";
    return { name: "drift", status, sentence: `The schema differs from what the ${applied.length} applied migrations make: ${parts.join("; ")}.${advice}`, details };
  } catch (err) {
    return { name: "drift", status: "fail", sentence: isPgstackError(err) ? err.message : `The drift check failed: ${messageOf(err).split("\n")[0]}.`, details: { error: isPgstackError(err) ? err.code : "E_INTERNAL" } };
  }
}
