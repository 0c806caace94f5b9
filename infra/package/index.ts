/**
 * pgstack's public entry (package.json `main`): the PgStack component and its
 * parts, with their arguments. Everything else is internal.
 */
export { PgStack, type PgStackArgs } from "./pgstack";
export { Database, type DatabaseArgs } from "../components/database";
export { PreUpdateSnapshot, type PreUpdateSnapshotArgs } from "../components/snapshot";
export { MigrationChain, type MigrationChainArgs } from "../components/migrations";
export { Seed, type SeedArgs } from "../components/seed";
