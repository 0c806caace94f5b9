/**
 * The Pulumi program (Pulumi.yaml `main`): one PostgreSQL database per stack,
 * snapshotted before an update applies migrations, then migrated by a chain of
 * command resources and seeded (never on prod). See infra/stack.ts.
 */
import * as path from "node:path";
import { loadStackConfig } from "./config";
import { defineStack } from "./stack";

const PROJECT_DIR = path.resolve(__dirname, "..");

export = async () => defineStack(loadStackConfig(), PROJECT_DIR);
