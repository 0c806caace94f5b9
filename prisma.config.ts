// Prisma 7 configuration: where the schema and the migrations live, how to seed,
// and the datasource URL (which Prisma 7 no longer reads from schema.prisma).
//
// DATABASE_URL is read with process.env, not Prisma's env() helper: env() throws
// when the variable is unset, and `prisma generate` (run by setup, offline, with
// no database around) must work without it. Prisma 7 does not load .env files
// by itself; pgstack passes DATABASE_URL explicitly.
//
// Migrations are applied by pgstack (`pgstack apply`), which records them in
// Prisma's `_prisma_migrations` ledger, so `prisma migrate status` agrees.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: {
    path: "migrations",
    seed: "tsx prisma/seed.ts",
  },
  datasource: {
    url: process.env.DATABASE_URL,
  },
});
