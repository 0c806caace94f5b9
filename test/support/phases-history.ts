/**
 * One small history for the phases tests: a table, an old contract migration
 * (applied long ago in most cases), an expand one, the contract one the
 * rollout must come before, and a later expand one.
 */
export const INIT = "20260101000000_init";
export const DROP_OLD = "20260102000000_drop_legacy";
export const ADD = "20260103000000_add_full_name";
export const DROP = "20260104000000_drop_name";
export const LATER = "20260105000000_add_nickname";
export const SQL: Record<string, string> = {
  [INIT]: 'CREATE TABLE "users" ("id" SERIAL PRIMARY KEY, "name" TEXT, "legacy" TEXT);\n',
  [DROP_OLD]: 'ALTER TABLE "users" DROP COLUMN "legacy";\n',
  [ADD]: 'ALTER TABLE "users" ADD COLUMN "full_name" TEXT;\n',
  [DROP]: 'ALTER TABLE "users" DROP COLUMN "name";\n',
  [LATER]: 'ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\n',
};

import { runStack, stackFileConfig, type RunResult } from "./pulumi-mocks";

/** The dev stack of `projectDir` under Pulumi mocks, as the previous update (`applied`) and the database (`observation`) left it. */
export async function runDevStack(
  projectDir: string,
  options: { applied?: string[]; args?: object; preview?: boolean; config?: Record<string, unknown>; observation?: object } = {},
): Promise<RunResult> {
  return runStack({
    stack: "dev",
    config: { ...(await stackFileConfig("dev")), ...(options.config ?? {}) },
    projectDir,
    previousOutputs: options.applied ? { appliedMigrations: options.applied } : undefined,
    args: options.args as never,
    preview: options.preview,
    observation: options.observation as never,
  });
}
