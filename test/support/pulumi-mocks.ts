/**
 * Runs the pgstack program (or a component) under Pulumi mocks — no CLI, no
 * engine — and records every resource registration with what the mocks API
 * does not pass to `newResource`: parent, explicit dependencies,
 * retainOnDelete, additionalSecretOutputs, ignoreChanges and which inputs
 * were secret.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";
import type { DatabaseObservation } from "../../infra/core/snapshot/observe";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

export interface Registered {
  type: string;
  name: string;
  urn: string;
  parent: string;
  /** Inputs with secrets unwrapped. */
  inputs: Record<string, any>;
  /** Top-level input names whose value is (or contains) a secret. */
  secretInputs: string[];
  dependencies: string[];
  retainOnDelete: boolean;
  additionalSecretOutputs: string[];
  /** The ignoreChanges resource option. */
  ignoreChanges: string[];
  custom: boolean;
  /** The aliases option, as the monitor got it (structured: spec.name, spec.noparent, ...). */
  aliases: any[];
}

const registered: Registered[] = [];
let patched = false;

function containsSecret(value: unknown): boolean {
  if (value === null || typeof value !== "object") return false;
  if ((value as Record<string, unknown>)[pulumi.runtime.specialSigKey] === SECRET_SIG) return true;
  return Object.values(value as Record<string, unknown>).some(containsSecret);
}

function unwrapSecrets(value: any): any {
  if (Array.isArray(value)) return value.map(unwrapSecrets);
  if (value === null || typeof value !== "object") return value;
  if (value[pulumi.runtime.specialSigKey] === SECRET_SIG) return unwrapSecrets(value.value);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v)]));
}

function patchMonitor(): void {
  if (patched) return;
  patched = true;
  const original = MockMonitor.prototype.registerResource;
  MockMonitor.prototype.registerResource = async function (this: MockMonitor, req: any, callback: any) {
    const raw = req.getObject()?.toJavaScript() ?? {};
    const wrapped = (err: unknown, res: any) => {
      if (!err && res) {
        registered.push({
          type: req.getType(),
          name: req.getName(),
          urn: res.getUrn(),
          parent: req.getParent(),
          inputs: unwrapSecrets(pulumi.runtime.deserializeProperties(req.getObject() ?? ({ fields: {} } as any))),
          secretInputs: Object.keys(raw).filter((k) => containsSecret(raw[k])),
          dependencies: req.getDependenciesList(),
          retainOnDelete: req.getRetainondelete?.() ?? false,
          additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
          ignoreChanges: req.getIgnorechangesList?.() ?? [],
          custom: req.getCustom(),
          aliases: (req.getAliasesList?.() ?? []).map((a: any) => a.toObject()),
        });
      }
      callback(err, res);
    };
    return original.call(this, req, wrapped);
  };
}

/** The outputs the stack's previous update left, as a StackReference to itself reads them. */
let previousStackOutputs: Record<string, unknown> | undefined;

/** What the mocked providers answer: each resource's inputs plus the outputs pgstack reads. */
export function mockState(type: string, name: string, inputs: Record<string, any>): Record<string, any> {
  switch (type) {
    case "pulumi:pulumi:StackReference":
      return { ...inputs, outputs: previousStackOutputs ?? {}, secretOutputNames: [] };
    case "command:local:Command": {
      let stdout = "";
      if (name.endsWith("-cluster")) stdout = JSON.stringify({ identity: "embedded:7311111111111111111/app/16384", systemIdentifier: "7311111111111111111", database: "app" });
      else if (name.endsWith("-copy")) stdout = JSON.stringify({ snapshotId: "snap_dev_empty_20251122000000", lastMigration: null });
      else if (name.endsWith("-id")) stdout = JSON.stringify({ snapshotId: "pgstack-prod-empty-20251122000000", lastMigration: null });
      else if (name.endsWith("-identity")) stdout = JSON.stringify({ identity: "probe:7322222222222222222/app/16384" });
      return { ...inputs, stdout, stderr: "" };
    }
    case "aws:rds/instance:Instance":
      return {
        ...inputs,
        identifier: `${name}-1234abcd`,
        address: `${name}.abc.eu-west-1.rds.amazonaws.com`,
        port: 5432,
        resourceId: "db-ABCDEFGHIJKL",
        masterUserSecrets: inputs.manageMasterUserPassword ? [{ secretArn: "arn:aws:secretsmanager:eu-west-1:1:secret:rds!db-1", secretStatus: "active", kmsKeyId: "k" }] : [],
      };
    case "aws:rds/subnetGroup:SubnetGroup":
    case "aws:rds/parameterGroup:ParameterGroup":
      return { ...inputs, name: `${name}-1234abcd` };
    case "docker:index/volume:Volume":
      return { ...inputs, name: "4f2a9c0d1e" };
    case "docker:index/remoteImage:RemoteImage":
      return { ...inputs, imageId: "sha256:0123456789abcdef" };
    default:
      return { ...inputs };
  }
}

export const MOCK_RDS_PASSWORD = "rds-managed-Pa55word";

export interface RunOptions {
  stack: string;
  /** Stack config as in Pulumi.<stack>.yaml's `config:` map (objects allowed). */
  config: Record<string, unknown>;
  /** Secret config values (`pgstack:password`, ...). */
  secrets?: Record<string, string>;
  projectDir: string;
  preview?: boolean;
  /** The outputs of the stack's last update (none: a stack never deployed). */
  previousOutputs?: Record<string, unknown>;
  /** What the program reads of the database (default: it does not answer). */
  observation?: DatabaseObservation;
  /** The PgStack's arguments (default none: every setting from the stack config). */
  args?: import("../../infra/package").PgStackArgs;
}

/** The component the last runStack registered (its `ready`, ...). */
export let lastComponent: import("../../infra/package").PgStack | undefined;

export interface RunResult {
  resources: Registered[];
  outputs: Record<string, { value: unknown; secret: boolean; known: boolean }>;
  /** The deploy sessions the program started (an update with steps starts one; a preview none), with the URL it serves them with. */
  sessions: { projectDir: string; stack: string; steps: string[][]; after?: string[][]; databaseUrl: string; closed: boolean }[];
}

async function settle(output: pulumi.Output<unknown>): Promise<{ value: unknown; secret: boolean; known: boolean }> {
  const o = output as any;
  const [value, secret, known] = await Promise.all([o.promise(), o.isSecret, o.isKnown]);
  return { value, secret, known };
}

/** Sets mocks and config for `stack`, registers a PgStack through the public entry and returns what it registered. */
export async function runStack(options: RunOptions): Promise<RunResult> {
  patchMonitor();
  registered.length = 0;
  previousStackOutputs = options.previousOutputs;
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => ({ id: args.inputs.name ? `${args.inputs.name}-id` : `${args.name}-id`, state: mockState(args.type, args.name, args.inputs) }),
      call: (args) => {
        if (args.token === "aws:secretsmanager/getSecretVersion:getSecretVersion") {
          return { ...args.inputs, secretString: JSON.stringify({ username: "pgstack", password: MOCK_RDS_PASSWORD }) };
        }
        return args.inputs;
      },
    },
    "pgstack",
    options.stack,
    options.preview ?? false,
  );
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(options.config)) flat[k] = typeof v === "string" ? v : JSON.stringify(v);
  for (const [k, v] of Object.entries(options.secrets ?? {})) flat[k] = v;
  pulumi.runtime.setAllConfig(flat, Object.keys(options.secrets ?? {}));

  // Through the public entry, as infra/index.ts and an application's program use it.
  const { PgStack } = await import("../../infra/package");
  const { programDeps } = await import("../../infra/package/pgstack");
  const sessions: RunResult["sessions"] = [];
  Object.assign(programDeps, {
    projectDir: options.projectDir,
    observe: async () => options.observation,
    serveSteps: async ({ databaseUrl, ...rest }: { projectDir: string; stack: string; databaseUrl: pulumi.Output<string>; steps: string[][]; after?: string[][] }) => {
      const session = { ...rest, databaseUrl: "", closed: false };
      sessions.push(session);
      databaseUrl.apply((url) => (session.databaseUrl = url));
      return { close: () => void (session.closed = true) };
    },
  });
  try {
    const component = new PgStack("pgstack", options.args ?? {});
    lastComponent = component;
    const outputs = component.outputs();
    const settled: RunResult["outputs"] = {};
    for (const [k, v] of Object.entries(outputs)) settled[k] = await settle(v as pulumi.Output<unknown>);
    // Let every pending registration reach the monitor.
    await new Promise((r) => setTimeout(r, 50));
    return { resources: [...registered], outputs: settled, sessions };
  } finally {
    Object.assign(programDeps, { projectDir: undefined, observe: undefined, serveSteps: undefined });
  }
}

/** Registers components directly (tests of one component), returning what was registered meanwhile. */
export async function withMocks<T>(stack: string, fn: () => Promise<T> | T, preview = false): Promise<{ result: T; resources: Registered[] }> {
  patchMonitor();
  registered.length = 0;
  await pulumi.runtime.setMocks(
    { newResource: (args) => ({ id: `${args.name}-id`, state: mockState(args.type, args.name, args.inputs) }), call: (args) => args.inputs },
    "pgstack",
    stack,
    preview,
  );
  const result = await fn();
  await new Promise((r) => setTimeout(r, 50));
  return { result, resources: [...registered] };
}

/** Reads a Pulumi.<stack>.yaml's `config:` map. */
export async function stackFileConfig(stack: string): Promise<Record<string, unknown>> {
  // js-yaml ships with @pulumi/pulumi.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const yaml = require("js-yaml") as { load(text: string): unknown };
  const doc = yaml.load(await fs.readFile(path.join(REPO_ROOT, `Pulumi.${stack}.yaml`), "utf8")) as { config?: Record<string, unknown> };
  return doc.config ?? {};
}

/**
 * A project dir for the program: the repo's migrations and seed (symlinked)
 * and, for the embedded engine, the password file the cluster command would
 * have written.
 */
export async function fakeProject(options: { stack?: string; password?: string; migrations?: string } = {}): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-unit-"));
  await fs.symlink(options.migrations ?? path.join(REPO_ROOT, "migrations"), path.join(dir, "migrations"));
  await fs.mkdir(path.join(dir, "prisma"));
  await fs.symlink(path.join(REPO_ROOT, "prisma", "seed.ts"), path.join(dir, "prisma", "seed.ts"));
  if (options.password) {
    await fs.mkdir(path.join(dir, ".pgstack", options.stack ?? "dev"), { recursive: true });
    await fs.writeFile(path.join(dir, ".pgstack", options.stack ?? "dev", "data.password"), options.password + "\n", { mode: 0o600 });
  }
  return dir;
}

export function byType(resources: Registered[], type: string): Registered[] {
  return resources.filter((r) => r.type === type);
}

export function named(resources: Registered[], name: string): Registered {
  const found = resources.find((r) => r.name === name);
  if (!found) throw new Error(`no resource named ${name}; have ${resources.map((r) => r.name).join(", ")}`);
  return found;
}
