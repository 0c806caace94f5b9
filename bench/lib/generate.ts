/**
 * A deterministic (seeded) migration history in the style `prisma migrate dev`
 * writes: `-- CreateEnum`, `-- CreateTable`, `-- CreateIndex`, `-- AddForeignKey`,
 * `-- AlterTable`, `-- AlterEnum` sections, quoted identifiers, TIMESTAMP(3),
 * DECIMAL(65,30), JSONB; plus the hand-edited parts real histories have: seed
 * rows (INSERT ... SELECT generate_series) and data backfills (UPDATE) on
 * tables that have rows.
 *
 * Every migration runs in a transaction on PostgreSQL 12+ (enum values are
 * only added, never used in the migration that adds them), so the same files
 * run unchanged under pgstack, psql, node-pg-migrate and Flyway.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { rng } from "./common";

export interface GeneratedMigration {
  /** `<14-digit timestamp>_<slug>` */
  name: string;
  slug: string;
  sql: string;
  kind: string;
}

interface Column {
  name: string;
  type: string;
  notNull: boolean;
  /** Added by a later migration and safe to drop (no index, no FK). */
  droppable: boolean;
  enumName?: string;
}

interface Table {
  name: string;
  columns: Column[];
  rows: number;
  indexes: string[];
}

interface EnumType {
  name: string;
  values: string[];
}

const NOUNS = [
  "users", "accounts", "sessions", "organizations", "memberships", "projects", "api_keys", "audit_events", "invitations",
  "teams", "invoices", "invoice_items", "payments", "subscriptions", "plans", "coupons", "orders", "order_items", "products",
  "categories", "tags", "comments", "posts", "attachments", "notifications", "webhooks", "webhook_deliveries", "feature_flags",
  "environments", "deployments", "releases", "builds", "artifacts", "secrets", "domains", "certificates", "regions", "zones",
  "clusters", "nodes", "volumes", "backups", "snapshots", "alerts", "incidents", "runbooks", "dashboards", "widgets", "reports",
  "exports", "imports", "jobs", "job_runs", "schedules", "tasks", "labels", "milestones", "issues", "pull_requests", "reviews",
  "repositories", "branches", "commits", "pipelines", "stages", "steps", "customers", "contacts", "addresses", "shipments",
  "carriers", "warehouses", "inventory_items", "suppliers", "purchase_orders", "refunds", "disputes", "ledgers", "ledger_entries",
];

const ATTRS: { name: string; type: string; value: (g: string) => string }[] = [
  { name: "title", type: "TEXT", value: (g) => `'title ' || ${g}` },
  { name: "description", type: "TEXT", value: (g) => `repeat('d', 20 + (${g} % 60))` },
  { name: "email", type: "TEXT", value: (g) => `'user' || ${g} || '@example.com'` },
  { name: "slug", type: "TEXT", value: (g) => `'slug-' || ${g}` },
  { name: "external_id", type: "TEXT", value: (g) => `md5(${g}::text)` },
  { name: "position", type: "INTEGER", value: (g) => `${g} % 1000` },
  { name: "quantity", type: "INTEGER", value: (g) => `(${g} * 7) % 97` },
  { name: "amount", type: "DECIMAL(65,30)", value: (g) => `(${g} % 10000) / 100.0` },
  { name: "score", type: "DOUBLE PRECISION", value: (g) => `(${g} % 997) / 7.0` },
  { name: "is_active", type: "BOOLEAN", value: (g) => `${g} % 2 = 0` },
  { name: "metadata", type: "JSONB", value: (g) => `jsonb_build_object('n', ${g}, 'k', 'v' || (${g} % 13))` },
  { name: "expires_at", type: "TIMESTAMP(3)", value: (g) => `TIMESTAMP '2024-01-01' + (${g} || ' minutes')::interval` },
  { name: "archived_at", type: "TIMESTAMP(3)", value: () => "NULL" },
  { name: "locale", type: "TEXT", value: (g) => `(ARRAY['en','de','fr','ja'])[1 + ${g} % 4]` },
  { name: "version", type: "INTEGER", value: () => "1" },
  { name: "color", type: "VARCHAR(16)", value: (g) => `'#' || lpad(to_hex(${g} % 16777215), 6, '0')` },
  { name: "notes", type: "TEXT", value: () => "NULL" },
  { name: "weight", type: "DECIMAL(65,30)", value: (g) => `${g} % 50` },
];

const ENUM_WORDS = ["status", "kind", "role", "tier", "visibility", "priority", "channel", "state"];
const ENUM_VALUES = ["ACTIVE", "PENDING", "DISABLED", "ARCHIVED", "DRAFT", "PUBLISHED", "LOW", "MEDIUM", "HIGH", "URGENT", "EMAIL", "SMS", "PUSH", "WEBHOOK", "FAILED", "RETRYING"];

const q = (ident: string) => `"${ident}"`;

export interface GenerateOptions {
  count: number;
  seed: number;
  /** Upper bound of seed rows per table. */
  maxRows?: number;
}

/** The history, in order. Same options give byte-identical files. */
export function generateHistory(options: GenerateOptions): GeneratedMigration[] {
  const rand = rng(options.seed);
  const maxRows = options.maxRows ?? 4000;
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  const chance = (p: number) => rand() < p;

  const tables: Table[] = [];
  const enums: EnumType[] = [];
  const usedNames = new Set<string>();
  const out: GeneratedMigration[] = [];
  let clock = Date.UTC(2022, 0, 3, 9, 0, 0);

  // PostgreSQL cuts identifiers at 63 bytes; keep room for a _<n> suffix so names stay distinct.
  const freshName = (full: string) => {
    const base = full.slice(0, 58);
    let name = base;
    for (let n = 2; usedNames.has(name); n++) name = `${base}_${n}`;
    usedNames.add(name);
    return name;
  };
  const tableName = () => freshName(pick(NOUNS));
  const enumName = () => freshName(pick(ENUM_WORDS));

  const createEnum = (): { enumType: EnumType; sql: string } => {
    const name = enumName();
    const values = [...new Set(Array.from({ length: int(2, 4) }, () => pick(ENUM_VALUES)))];
    const enumType = { name, values };
    enums.push(enumType);
    return { enumType, sql: `-- CreateEnum\nCREATE TYPE ${q(name)} AS ENUM (${values.map((v) => `'${v}'`).join(", ")});\n` };
  };

  const columnSql = (c: Column, defaultSql?: string) =>
    `${q(c.name)} ${c.enumName ? q(c.enumName) : c.type}${c.notNull ? " NOT NULL" : ""}${defaultSql ? ` DEFAULT ${defaultSql}` : ""}`;

  const fkSql = (child: Table, column: string, parent: Table) =>
    `-- AddForeignKey\nALTER TABLE ${q(child.name)} ADD CONSTRAINT ${q(freshName(`${child.name}_${column}_fkey`))} FOREIGN KEY (${q(column)}) REFERENCES ${q(parent.name)}("id") ON DELETE ${pick(["RESTRICT", "CASCADE", "SET NULL"])} ON UPDATE CASCADE;\n`;

  const seedRows = (t: Table, rows: number, parents: Map<string, Table>) => {
    const g = "g";
    const cols = t.columns.filter((c) => c.name !== "id");
    const values = cols.map((c) => {
      if (parents.has(c.name)) {
        const p = parents.get(c.name)!;
        return p.rows > 0 ? `1 + (${g} % ${p.rows})` : "NULL";
      }
      if (c.enumName) return `'${enums.find((e) => e.name === c.enumName)!.values[0]}'`;
      if (c.name === "created_at") return "CURRENT_TIMESTAMP";
      if (c.name === "updated_at") return `TIMESTAMP '2024-06-01' + (${g} || ' seconds')::interval`;
      const attr = ATTRS.find((a) => c.name === a.name || c.name.startsWith(a.name + "_"));
      return attr ? attr.value(g) : "NULL";
    });
    t.rows = rows;
    return `-- Seed rows (hand-written)\nINSERT INTO ${q(t.name)} (${cols.map((c) => q(c.name)).join(", ")})\nSELECT ${values.join(",\n       ")}\nFROM generate_series(1, ${rows}) AS ${g};\n`;
  };

  const addIndex = (t: Table, unique: boolean): string | undefined => {
    const candidates = t.columns.filter((c) => c.name !== "id" && !["JSONB", "TEXT"].includes(c.type) || (c.type === "TEXT" && !unique));
    if (candidates.length === 0) return undefined;
    const first = pick(candidates);
    const cols = [first];
    if (!unique && chance(0.3)) {
      const second = pick(t.columns.filter((c) => c !== first && c.type !== "JSONB"));
      if (second) cols.push(second);
    }
    const name = freshName(`${t.name}_${cols.map((c) => c.name).join("_")}_${unique ? "key" : "idx"}`);
    if (unique && t.rows > 0) return undefined; // seeded values are not unique
    t.indexes.push(name);
    for (const c of cols) c.droppable = false;
    return `-- CreateIndex\nCREATE ${unique ? "UNIQUE " : ""}INDEX ${q(name)} ON ${q(t.name)}(${cols.map((c) => q(c.name)).join(", ")});\n`;
  };

  const kinds: [string, number][] = [
    ["create_table", 24],
    ["add_columns", 16],
    ["create_index", 13],
    ["add_relation", 9],
    ["alter_enum", 7],
    ["add_enum_column", 5],
    ["backfill", 14],
    ["alter_column", 5],
    ["drop_column", 4],
    ["drop_index", 3],
  ];
  const totalWeight = kinds.reduce((s, [, w]) => s + w, 0);
  const pickKind = () => {
    let r = rand() * totalWeight;
    for (const [k, w] of kinds) if ((r -= w) < 0) return k;
    return kinds[0][0];
  };

  for (let i = 0; i < options.count; i++) {
    let kind = i < 4 ? "create_table" : pickKind();
    const seeded = tables.filter((t) => t.rows > 0);
    if (kind === "backfill" && seeded.length === 0) kind = "add_columns";
    if (kind === "alter_enum" && enums.length === 0) kind = "add_enum_column";
    if (kind === "drop_index" && !tables.some((t) => t.indexes.length > 0)) kind = "create_index";
    if (kind === "drop_column" && !tables.some((t) => t.columns.some((c) => c.droppable))) kind = "add_columns";
    if (kind === "create_table" && tables.length >= NOUNS.length) kind = "add_columns";

    let sql = "";
    let slug = "";
    switch (kind) {
      case "create_table": {
        const name = tableName();
        const columns: Column[] = [{ name: "id", type: "SERIAL", notNull: true, droppable: false }];
        const attrs = [...ATTRS].sort(() => rand() - 0.5).slice(0, int(3, 8));
        for (const a of attrs) columns.push({ name: a.name, type: a.type, notNull: chance(0.5) && a.value("1") !== "NULL", droppable: false });
        let enumSql = "";
        if (chance(0.3)) {
          const e = chance(0.5) && enums.length > 0 ? { enumType: pick(enums), sql: "" } : createEnum();
          enumSql = e.sql;
          columns.push({ name: e.enumType.name.replace(/_\d+$/, ""), type: "ENUM", enumName: e.enumType.name, notNull: true, droppable: false });
        }
        const parents = new Map<string, Table>();
        if (tables.length > 0) {
          for (let k = int(0, 2); k > 0; k--) {
            const parent = pick(tables);
            const col = `${parent.name.replace(/s$/, "")}_id`;
            if (columns.some((c) => c.name === col)) continue;
            columns.push({ name: col, type: "INTEGER", notNull: false, droppable: false });
            parents.set(col, parent);
          }
        }
        columns.push({ name: "created_at", type: "TIMESTAMP(3)", notNull: true, droppable: false });
        columns.push({ name: "updated_at", type: "TIMESTAMP(3)", notNull: true, droppable: false });
        const table: Table = { name, columns, rows: 0, indexes: [] };
        const body = columns.map((c) => {
          if (c.name === "id") return `    "id" SERIAL NOT NULL`;
          if (c.name === "created_at") return `    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP`;
          if (c.enumName) return `    ${columnSql(c, `'${enums.find((e) => e.name === c.enumName)!.values[0]}'`)}`;
          return `    ${columnSql(c)}`;
        });
        sql += enumSql + (enumSql ? "\n" : "");
        sql += `-- CreateTable\nCREATE TABLE ${q(name)} (\n${body.join(",\n")},\n\n    CONSTRAINT ${q(`${name}_pkey`)} PRIMARY KEY ("id")\n);\n`;
        tables.push(table);
        for (const [col, parent] of parents) {
          const idx = freshName(`${name}_${col}_idx`);
          table.indexes.push(idx);
          sql += `\n-- CreateIndex\nCREATE INDEX ${q(idx)} ON ${q(name)}(${q(col)});\n`;
          sql += `\n${fkSql(table, col, parent)}`;
        }
        if (chance(0.45)) sql += `\n${seedRows(table, int(200, maxRows), parents)}`;
        else if (chance(0.4)) {
          const u = addIndex(table, true);
          if (u) sql += `\n${u}`;
        }
        slug = `create_${name}`;
        break;
      }
      case "add_columns": {
        const t = pick(tables);
        const add: string[] = [];
        for (let k = int(1, 3); k > 0; k--) {
          const a = pick(ATTRS);
          const colName = freshName(`${a.name}_${t.name.slice(0, 3)}`);
          const withDefault = chance(0.4);
          const c: Column = { name: colName, type: a.type, notNull: withDefault, droppable: true };
          const def = withDefault ? (a.type === "BOOLEAN" ? "false" : a.type === "JSONB" ? "'{}'" : a.type.startsWith("TIMESTAMP") ? "CURRENT_TIMESTAMP" : /INT|DECIMAL|DOUBLE/.test(a.type) ? "0" : "''") : undefined;
          t.columns.push(c);
          add.push(`ADD COLUMN ${columnSql(c, def)}`);
        }
        sql = `-- AlterTable\nALTER TABLE ${q(t.name)} ${add.join(",\n")};\n`;
        slug = `add_${t.name}_fields`;
        break;
      }
      case "create_index": {
        const t = pick(tables);
        const s = addIndex(t, chance(0.25));
        sql = s ?? addIndex(t, false) ?? `-- CreateIndex\nCREATE INDEX ${q(freshName(`${t.name}_created_at_idx`))} ON ${q(t.name)}("created_at");\n`;
        slug = `index_${t.name}`;
        break;
      }
      case "add_relation": {
        if (tables.length < 2) {
          i--;
          continue;
        }
        const child = pick(tables);
        const parent = pick(tables.filter((t) => t !== child));
        const col = freshName(`${parent.name.replace(/s$/, "")}_ref`);
        child.columns.push({ name: col, type: "INTEGER", notNull: false, droppable: false });
        const idx = freshName(`${child.name}_${col}_idx`);
        child.indexes.push(idx);
        sql = `-- AlterTable\nALTER TABLE ${q(child.name)} ADD COLUMN ${q(col)} INTEGER;\n\n-- CreateIndex\nCREATE INDEX ${q(idx)} ON ${q(child.name)}(${q(col)});\n\n${fkSql(child, col, parent)}`;
        if (child.rows > 0 && parent.rows > 0) {
          sql += `\n-- Backfill (hand-written)\nUPDATE ${q(child.name)} SET ${q(col)} = 1 + ("id" % ${parent.rows});\n`;
        }
        slug = `relate_${child.name}_${parent.name}`;
        break;
      }
      case "alter_enum": {
        const e = pick(enums);
        const fresh = ENUM_VALUES.filter((v) => !e.values.includes(v));
        const adds = fresh.sort(() => rand() - 0.5).slice(0, int(1, 2));
        if (adds.length === 0) {
          i--;
          continue;
        }
        e.values.push(...adds);
        sql =
          (adds.length > 1
            ? "-- AlterEnum\n-- This migration adds more than one value to an enum.\n-- With PostgreSQL versions 11 and earlier, this is not possible\n-- in a single migration. This can be worked around by creating\n-- multiple migrations, each migration adding only one value to\n-- the enum.\n\n\n"
            : "-- AlterEnum\n") + adds.map((v) => `ALTER TYPE ${q(e.name)} ADD VALUE '${v}';\n`).join("");
        slug = `add_${e.name}_values`;
        break;
      }
      case "add_enum_column": {
        const t = pick(tables);
        const fresh = enums.length === 0 || chance(0.6);
        const e = fresh ? createEnum() : { enumType: pick(enums), sql: "" };
        const col = freshName(e.enumType.name.replace(/_\d+$/, ""));
        t.columns.push({ name: col, type: "ENUM", enumName: e.enumType.name, notNull: true, droppable: true });
        sql = `${e.sql}${e.sql ? "\n" : ""}-- AlterTable\nALTER TABLE ${q(t.name)} ADD COLUMN ${q(col)} ${q(e.enumType.name)} NOT NULL DEFAULT '${e.enumType.values[0]}';\n`;
        slug = `add_${t.name}_${col}`;
        break;
      }
      case "backfill": {
        const t = pick(seeded);
        const a = pick(ATTRS.filter((x) => x.value("1") !== "NULL"));
        const col = freshName(`${a.name}_v2`);
        t.columns.push({ name: col, type: a.type, notNull: true, droppable: true });
        sql =
          `-- AlterTable\nALTER TABLE ${q(t.name)} ADD COLUMN ${q(col)} ${a.type};\n\n` +
          `-- Backfill (hand-written)\nUPDATE ${q(t.name)} SET ${q(col)} = ${a.value('"id"')};\n\n` +
          `-- AlterTable\nALTER TABLE ${q(t.name)} ALTER COLUMN ${q(col)} SET NOT NULL;\n`;
        if (chance(0.3)) {
          const extra = pick(t.columns.filter((c) => c.enumName));
          if (extra) {
            const e = enums.find((x) => x.name === extra.enumName)!;
            sql += `\n-- Backfill (hand-written)\nUPDATE ${q(t.name)} SET ${q(extra.name)} = '${e.values[Math.min(1, e.values.length - 1)]}' WHERE "id" % 3 = 0;\n`;
          }
        }
        slug = `backfill_${t.name}_${col}`;
        break;
      }
      case "alter_column": {
        const t = pick(tables);
        const c = t.columns.find((x) => x.droppable && !x.notNull && !x.enumName);
        if (c && c.type === "TEXT") {
          sql = `-- AlterTable\nALTER TABLE ${q(t.name)} ALTER COLUMN ${q(c.name)} SET DATA TYPE VARCHAR(255);\n`;
          c.type = "VARCHAR(255)";
        } else if (c) {
          sql = `-- AlterTable\nALTER TABLE ${q(t.name)} ALTER COLUMN ${q(c.name)} DROP DEFAULT;\n`;
        } else {
          const u = t.columns.find((x) => x.name === "updated_at")!;
          sql = `-- AlterTable\nALTER TABLE ${q(t.name)} ALTER COLUMN ${q(u.name)} SET DEFAULT CURRENT_TIMESTAMP;\n`;
        }
        slug = `alter_${t.name}`;
        break;
      }
      case "drop_column": {
        const t = pick(tables.filter((x) => x.columns.some((c) => c.droppable)));
        const c = pick(t.columns.filter((x) => x.droppable));
        t.columns = t.columns.filter((x) => x !== c);
        sql =
          `/*\n  Warnings:\n\n  - You are about to drop the column \`${c.name}\` on the \`${t.name}\` table. All the data in the column will be lost.\n\n*/\n` +
          `-- AlterTable\nALTER TABLE ${q(t.name)} DROP COLUMN ${q(c.name)};\n`;
        slug = `drop_${t.name}_${c.name}`;
        break;
      }
      case "drop_index": {
        const t = pick(tables.filter((x) => x.indexes.length > 0));
        const idx = t.indexes.pop()!;
        // Replaced by a wider one, as Prisma does when an @@index changes.
        const replacement = freshName(`${idx}_v2`);
        const column = "created_at";
        t.indexes.push(replacement);
        sql = `-- DropIndex\nDROP INDEX ${q(idx)};\n\n-- CreateIndex\nCREATE INDEX ${q(replacement)} ON ${q(t.name)}(${q(column)}, "id");\n`;
        slug = `reindex_${t.name}`;
        break;
      }
    }
    clock += int(1, 96) * 3_600_000 + int(0, 3599) * 1000;
    const stamp = new Date(clock).toISOString().replace(/[-:T]/g, "").slice(0, 14);
    out.push({ name: `${stamp}_${slug.slice(0, 60)}`, slug, sql, kind });
  }
  return out;
}

export interface HistoryLayouts {
  /** Prisma layout: <dir>/<name>/migration.sql (pgstack). */
  prismaDir: string;
  /** One script: BEGIN; \i file; COMMIT; per migration (psql). */
  psqlScript: string;
  /** <name>.sql files (node-pg-migrate). */
  flatDir: string;
  /** V<n>__<slug>.sql files (Flyway). */
  flywayDir: string;
  count: number;
  statements: number;
  bytes: number;
}

/** Writes the history in each tool's layout under `root` (replacing what was there). */
export async function writeHistory(root: string, history: GeneratedMigration[]): Promise<HistoryLayouts> {
  await fs.rm(root, { recursive: true, force: true });
  const prismaDir = path.join(root, "prisma");
  const flatDir = path.join(root, "flat");
  const flywayDir = path.join(root, "flyway");
  for (const d of [prismaDir, flatDir, flywayDir]) await fs.mkdir(d, { recursive: true });
  await fs.writeFile(path.join(prismaDir, "migration_lock.toml"), 'provider = "postgresql"\n');
  const script: string[] = [];
  let bytes = 0;
  let statements = 0;
  for (const [i, m] of history.entries()) {
    const dir = path.join(prismaDir, m.name);
    await fs.mkdir(dir);
    const file = path.join(dir, "migration.sql");
    await fs.writeFile(file, m.sql);
    await fs.writeFile(path.join(flatDir, `${m.name}.sql`), m.sql);
    await fs.writeFile(path.join(flywayDir, `V${i + 1}__${m.slug}.sql`), m.sql);
    script.push(`BEGIN;\n\\i '${file}'\nCOMMIT;`);
    bytes += Buffer.byteLength(m.sql);
    statements += (m.sql.match(/;\n/g) ?? []).length;
  }
  const psqlScript = path.join(root, "psql-all.sql");
  await fs.writeFile(psqlScript, script.join("\n") + "\n");
  return { prismaDir, psqlScript, flatDir, flywayDir, count: history.length, statements, bytes };
}
