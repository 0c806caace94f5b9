/**
 * A stack as the tools outside the Pulumi program see it (`pgstack plan|status
 * --stack`, `npm run rollback`, `npm run dev`): its outputs and its `pgstack:*`
 * config through the pulumi CLI, the config validated by the same schema, with
 * the same defaults, as the program's (schema.ts), and config set/rm; and,
 * inside the program, the stack's own last appliedMigrations (the lint gate).
 * The only place besides index.ts that reads a stack's config or outputs.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { PgstackError } from "../core/errors";
import { PROJECT_ROOT, pulumiFor, type Pulumi } from "../toolchain/pulumi";
import { NAMESPACE, OBJECT_KEYS, SECRET_KEYS, parseStackConfig, StackConfigError, type RawStackConfig, type StackConfig } from "./schema";

/** A stack's outputs (from its last successful update) and its validated config. */
export interface StackState {
  stack: string;
  config: StackConfig;
  /** Secret; never printed. Undefined before the first update. */
  databaseUrl?: string;
  /** From the last successful update; undefined before the first one. */
  appliedMigrations?: string[];
  latestSnapshot?: string;
}

/** One entry of `pulumi config --json`. */
export interface CliConfigEntry {
  value?: string;
  objectValue?: unknown;
  secret?: boolean;
}

/** The project's name in Pulumi.yaml (only reported, never decided on). */
export function projectName(projectDir = PROJECT_ROOT): string {
  try {
    return /^name:\s*(\S+)/m.exec(readFileSync(path.join(projectDir, "Pulumi.yaml"), "utf8"))?.[1] ?? "pgstack";
  } catch {
    return "pgstack";
  }
}

/** `pulumi config --json` as the schema's raw input (secrets only as "is set"). Pure. */
export function rawConfigFromCli(stack: string, project: string, entries: Record<string, CliConfigEntry>): RawStackConfig {
  const prefix = `${NAMESPACE}:`;
  const keys = Object.keys(entries)
    .filter((k) => k.startsWith(prefix))
    .map((k) => k.slice(prefix.length));
  const values: Record<string, unknown> = {};
  for (const k of keys) {
    if (SECRET_KEYS.has(k)) continue;
    const entry = entries[prefix + k];
    values[k] = OBJECT_KEYS.has(k) ? (entry.objectValue ?? parseObject(entry.value)) : entry.value;
  }
  return {
    stack,
    project,
    keys,
    values,
    hasPassword: keys.includes("password"),
    hasExternalUrl: keys.includes("externalUrl"),
    plainSecrets: keys.filter((k) => SECRET_KEYS.has(k) && !entries[prefix + k].secret),
  };
}

function parseObject(value: string | undefined): unknown {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return value; // the schema names the key that is not an object
  }
}

/** `pulumi stack output --json` as StackState's outputs. Pure. */
export function outputsFromCli(out: Record<string, unknown>): Pick<StackState, "databaseUrl" | "appliedMigrations" | "latestSnapshot"> {
  return {
    databaseUrl: typeof out.databaseUrl === "string" && out.databaseUrl ? out.databaseUrl : undefined,
    appliedMigrations: Array.isArray(out.appliedMigrations) ? (out.appliedMigrations as string[]) : undefined,
    latestSnapshot: typeof out.latestSnapshot === "string" && out.latestSnapshot ? out.latestSnapshot : undefined,
  };
}

function lastLine(r: { stdout: string; stderr: string }): string {
  const text = (r.stderr || r.stdout).trim();
  return (text.split("\n").find((l) => /error/i.test(l)) ?? text.split("\n").pop() ?? "no output").replace(/^error:\s*/i, "").trim().replace(/\.$/, "");
}

/** Reads and validates the `pgstack:*` config of `stack`. */
export async function readStackConfig(stack: string, pulumi: Pulumi, projectDir = PROJECT_ROOT): Promise<StackConfig> {
  const r = await pulumi.capture(["config", "--json", "--stack", stack]);
  if (r.code !== 0) throw new PgstackError("E_STACK", `Cannot read the config of stack '${stack}': ${lastLine(r)}.`);
  try {
    return parseStackConfig(rawConfigFromCli(stack, projectName(projectDir), JSON.parse(r.stdout || "{}") as Record<string, CliConfigEntry>));
  } catch (err) {
    if (err instanceof StackConfigError) throw new PgstackError("E_STACK", err.message);
    throw err;
  }
}

/** Reads a stack's outputs; the secret URL only with `showSecrets` (never printed). */
export async function readStackOutputs(stack: string, pulumi: Pulumi, options: { showSecrets: boolean }): Promise<Pick<StackState, "databaseUrl" | "appliedMigrations" | "latestSnapshot">> {
  const outputs = await pulumi.capture(["stack", "output", "--json", ...(options.showSecrets ? ["--show-secrets"] : []), "--stack", stack]);
  if (outputs.code !== 0) {
    throw new PgstackError(
      "E_STACK",
      `Cannot read stack '${stack}': ${lastLine(outputs) || "pulumi failed"}; create it with \`npm run dev\` (dev) or \`npm run pulumi -- stack init ${stack}\`.`,
    );
  }
  const out = outputsFromCli(JSON.parse(outputs.stdout || "{}") as Record<string, unknown>);
  return options.showSecrets ? out : { ...out, databaseUrl: undefined };
}

/** Reads a stack's outputs (secrets shown, never printed) and its validated config. */
export async function readStack(stack: string, deps: { pulumi?: Pulumi; projectDir?: string } = {}): Promise<StackState> {
  const pulumi = deps.pulumi ?? (await pulumiFor(stack));
  const outputs = await readStackOutputs(stack, pulumi, { showSecrets: true });
  return { stack, config: await readStackConfig(stack, pulumi, deps.projectDir), ...outputs };
}

/** `pulumi config set [--path] <pgstack:key> <value>` on `stack`; `key` without the namespace. */
export async function setStackConfig(pulumi: Pulumi, stack: string, key: string, value: string, options: { path?: boolean } = {}): Promise<void> {
  const r = await pulumi.capture(["config", "set", ...(options.path ? ["--path"] : []), "--stack", stack, `${NAMESPACE}:${key}`, value]);
  if (r.code !== 0) throw new PgstackError("E_STACK", `Setting ${NAMESPACE}:${key} on stack '${stack}' failed: ${lastLine(r)}.`);
}

/** `pulumi config rm <pgstack:key>` on `stack`. */
export async function removeStackConfig(pulumi: Pulumi, stack: string, key: string): Promise<void> {
  const r = await pulumi.capture(["config", "rm", `${NAMESPACE}:${key}`, "--stack", stack]);
  if (r.code !== 0) throw new PgstackError("E_STACK", `Could not remove ${NAMESPACE}:${key} from stack '${stack}': ${lastLine(r)}.`);
}

/**
 * Inside the Pulumi program (the lint gate): the last successful update's
 * `appliedMigrations`, read through a reference to this very stack. The SDK is
 * loaded here only, so the tools that use this module never load it.
 */
export async function previouslyAppliedMigrations(): Promise<string[] | undefined> {
  // require, not import(): the program's own CommonJS instance of the SDK, which holds its stack context.
  const pulumi = require("@pulumi/pulumi") as typeof import("@pulumi/pulumi");
  const self = new pulumi.StackReference("pgstack-self", {
    name: `organization/${pulumi.getProject()}/${pulumi.getStack()}`,
  });
  const details = await self.getOutputDetails("appliedMigrations");
  return stringList(details.value ?? details.secretValue);
}

/** A list output as read back: an array, or (through some runtimes) an object keyed 0..n-1. */
export function stringList(value: unknown): string[] | undefined {
  if (Array.isArray(value)) return value.map(String);
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.every(([k], i) => k === String(i))) return entries.map(([, v]) => String(v));
  }
  return undefined;
}
