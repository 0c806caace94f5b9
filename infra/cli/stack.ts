import { PgstackError } from "../core/errors";
import { pulumiFor } from "../toolchain/pulumi";

/** What `pgstack plan --stack` needs of a stack: its outputs and its pgstack config. */
export interface StackState {
  stack: string;
  /** Secret; never printed. Undefined before the first update. */
  databaseUrl?: string;
  /** From the last successful update; undefined before the first one. */
  appliedMigrations?: string[];
  latestSnapshot?: string;
  engine?: string;
  /** `pgstack:lint`, "strict" or "warn". */
  lint?: string;
  pinnedMigration?: string;
}

/** Reads a stack's outputs and config through the pulumi CLI (the project's backend). */
export async function readStack(stack: string): Promise<StackState> {
  const pulumi = await pulumiFor(stack);
  const outputs = await pulumi.capture(["stack", "output", "--stack", stack, "--show-secrets", "--json"]);
  if (outputs.code !== 0) {
    throw new PgstackError(
      "E_USAGE",
      `Cannot read stack '${stack}': ${firstLine(outputs.stderr) || "pulumi failed"}; create it with \`npm run dev\` (dev) or \`npm run pulumi -- stack init ${stack}\`.`,
    );
  }
  const config = await pulumi.capture(["config", "--stack", stack, "--json"]);
  const values = config.code === 0 ? (JSON.parse(config.stdout || "{}") as Record<string, { value?: string }>) : {};
  const out = JSON.parse(outputs.stdout || "{}") as Record<string, unknown>;
  return {
    stack,
    databaseUrl: typeof out.databaseUrl === "string" ? out.databaseUrl : undefined,
    appliedMigrations: Array.isArray(out.appliedMigrations) ? (out.appliedMigrations as string[]) : undefined,
    latestSnapshot: typeof out.latestSnapshot === "string" && out.latestSnapshot ? out.latestSnapshot : undefined,
    engine: values["pgstack:engine"]?.value,
    lint: values["pgstack:lint"]?.value,
    pinnedMigration: values["pgstack:pinnedMigration"]?.value,
  };
}

function firstLine(text: string): string {
  return (text.split("\n").find((l) => /error/i.test(l)) ?? text.split("\n")[0] ?? "").replace(/^error:\s*/i, "").trim().replace(/\.$/, "");
}
