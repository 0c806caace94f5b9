/**
 * The Pulumi program (Pulumi.yaml `main`): one PostgreSQL database per stack,
 * snapshotted before an update applies migrations, then migrated by a chain of
 * command resources and seeded (never on prod). See infra/stack.ts.
 */
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { loadStackConfig } from "./config";
import { defineStack } from "./stack";

const PROJECT_DIR = path.resolve(__dirname, "..");

export = async () => {
  try {
    return await defineStack(loadStackConfig(), PROJECT_DIR);
  } catch (err) {
    throw withoutStack(err);
  }
};

/**
 * pgstack's own refusals (bad config, lint: strict, ...) are one sentence; their
 * stack is never shown. Formatting it anyway, through the source maps of every
 * loaded module (@pulumi/aws has thousands), took ~15 s of CPU on each failed
 * preview, so it is replaced before anyone reads it.
 */
function withoutStack(err: unknown): unknown {
  if (pulumi.RunError.isInstance(err) || pulumi.ResourceError.isInstance(err)) {
    Object.defineProperty(err, "stack", { value: `${err.name}: ${err.message}`, writable: true, configurable: true });
  }
  return err;
}
