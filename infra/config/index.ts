import * as pulumi from "@pulumi/pulumi";
import { DEV_PASSPHRASE } from "../toolchain/pulumi";
import { NAMESPACE, OBJECT_KEYS, SECRET_KEYS, parseStackConfig, StackConfigError, type RawStackConfig, type StackConfig } from "./schema";

export * from "./schema";

/** The stack's config plus its two secrets, which stay Outputs. */
export interface LoadedStackConfig {
  config: StackConfig;
  /** `pgstack:password`, a secret Output, when set. */
  password?: pulumi.Output<string>;
  /** `pgstack:externalUrl`, a secret Output, when set. */
  externalUrl?: pulumi.Output<string>;
}

/** Whether the engine was told `key` is a secret (@pulumi/pulumi exports it, marked internal). */
function isSecretConfig(key: string): boolean {
  const runtimeConfig = require("@pulumi/pulumi/runtime/config") as { isConfigSecret?: (k: string) => boolean };
  return runtimeConfig.isConfigSecret?.(key) ?? true;
}

/**
 * Reads the stack's `pgstack:*` config once (the only place that reads
 * pulumi.Config) and validates it; a bad config stops the program with one
 * sentence naming the key, and no stack trace.
 */
export function loadStackConfig(): LoadedStackConfig {
  const { raw, password, externalUrl } = readStackConfigValues();
  return { config: parseConfig(raw), password, externalUrl };
}

/** Validates raw settings; a bad one stops the program with one sentence naming the key. */
export function parseConfig(raw: RawStackConfig): StackConfig {
  try {
    return parseStackConfig(raw);
  } catch (err) {
    if (err instanceof StackConfigError) throw new pulumi.RunError(err.message);
    throw err;
  }
}

/** The stack's `pgstack:*` config as the schema's raw input, and its two secrets, not yet validated. */
export function readStackConfigValues(): { raw: RawStackConfig; password?: pulumi.Output<string>; externalUrl?: pulumi.Output<string> } {
  const cfg = new pulumi.Config(NAMESPACE);
  const prefix = `${NAMESPACE}:`;
  const keys = Object.keys(pulumi.runtime.allConfig())
    .filter((k) => k.startsWith(prefix))
    .map((k) => k.slice(prefix.length));
  const values: Record<string, unknown> = {};
  for (const k of keys) {
    if (SECRET_KEYS.has(k)) continue;
    if (OBJECT_KEYS.has(k)) {
      try {
        values[k] = cfg.getObject<unknown>(k);
      } catch {
        throw new pulumi.RunError(`Stack '${pulumi.getStack()}' config is invalid: ${prefix}${k} must be an object (set its fields with pulumi config set --path ${prefix}${k}.<field> <value>).`);
      }
    } else {
      values[k] = cfg.get(k);
    }
  }
  const password = cfg.getSecret("password");
  const externalUrl = cfg.getSecret("externalUrl");
  const raw: RawStackConfig = {
    stack: pulumi.getStack(),
    project: pulumi.getProject(),
    keys,
    values,
    hasPassword: password !== undefined,
    hasExternalUrl: externalUrl !== undefined,
    plainSecrets: keys.filter((k) => SECRET_KEYS.has(k) && !isSecretConfig(`${prefix}${k}`)),
    devPassphrase: process.env.PULUMI_CONFIG_PASSPHRASE === DEV_PASSPHRASE,
  };
  return { raw, password, externalUrl };
}
