/**
 * Adversarial cases for the phases around the application rollout (issue 24,
 * item 2), under Pulumi mocks through the public entry (as test/unit/phases):
 * where the chain splits decides which migrations run while the old version
 * serves and which the new version finds missing when it goes live.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ADD, DROP, DROP_OLD, INIT, SQL as HISTORY } from "../support/phases-history";
import { runDevStack } from "../support/phases-history";
import { fakeProject, named, type RunResult } from "../support/pulumi-mocks";

jest.setTimeout(60_000);

// The history without its later expand migration.
const SQL: Record<string, string> = Object.fromEntries([INIT, DROP_OLD, ADD, DROP].map((name) => [name, HISTORY[name]]));
const PASSWORD = "0123456789abcdef0123456789abcdef";

let migrationsDir: string;
let projectDir: string;

beforeAll(async () => {
  migrationsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-adv-phases-"));
  for (const [name, sql] of Object.entries(SQL)) {
    await fs.mkdir(path.join(migrationsDir, name), { recursive: true });
    await fs.writeFile(path.join(migrationsDir, name, "migration.sql"), sql);
  }
  projectDir = await fakeProject({ migrations: migrationsDir, password: PASSWORD });
});
afterAll(async () => {
  await fs.rm(projectDir, { recursive: true, force: true });
  await fs.rm(migrationsDir, { recursive: true, force: true });
});

const rollout = {
  contractAfter: (expanded: pulumi.Resource[]) => [new command.local.Command("rollout", { create: "true" }, { dependsOn: expanded })],
};

const dev = (options: { applied?: string[]; args?: object; preview?: boolean; observation?: object } = {}): Promise<RunResult> => runDevStack(projectDir, options);

const step = (name: string) => `migrations-${name}`;
const observation = (applied: string[]) => ({ identity: "7311111111111111111/app/16384", applied: new Map(applied.map((n) => [n, new Date(0)])) });

/** Everything the program said on the component (info and warn). */
async function said<T>(run: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const info = jest.spyOn(pulumi.log, "info");
  const warn = jest.spyOn(pulumi.log, "warn");
  try {
    const result = await run();
    await new Promise((r) => setTimeout(r, 200));
    return { result, lines: [...info.mock.calls, ...warn.mock.calls].map((c) => String(c[0])) };
  } finally {
    info.mockRestore();
    warn.mockRestore();
  }
}

describe("phases: an application already running on the stack's first update", () => {
  // An existing database adopted by a new stack (engine external, or a stack whose state was recreated): its ledger
  // shows the application's history, the stack has no previous outputs. Without contractAfter pgstack warns that
  // DROP runs while the running version is live; wiring contractAfter must not make it run there silently.
  test("with contractAfter wired, the pending DROP COLUMN either waits for the rollout or is named in a warning", async () => {
    const plain = await said(() => dev({ preview: true, observation: observation([INIT, DROP_OLD, ADD]) }));
    expect(plain.lines.some((l) => l.includes(DROP))).toBe(true); // the control: pgstack knows the application runs

    const wired = await said(() => dev({ preview: true, observation: observation([INIT, DROP_OLD, ADD]), args: rollout }));
    const waits = named(wired.result.resources, step(DROP)).dependencies.includes(named(wired.result.resources, "rollout").urn);
    expect(waits || wired.lines.some((l) => l.includes(DROP))).toBe(true);
  });
});

describe("phases: the database's ledger behind the previous update's outputs", () => {
  // `pgstack snapshot restore <id>` (no pin) took the database back to before DROP; the stack's outputs still list it.
  // The next update applies DROP again. Without contractAfter pgstack warns (pending by the ledger); with it, the
  // split is computed from the outputs alone, so DROP runs before the rollout, silently.
  test("a contract migration a restore removed either waits for the rollout or is named in a warning", async () => {
    const all = [INIT, DROP_OLD, ADD, DROP];
    const plain = await said(() => dev({ applied: all, preview: true, observation: observation([INIT, DROP_OLD, ADD]) }));
    expect(plain.lines.some((l) => l.includes(DROP))).toBe(true); // the control

    const wired = await said(() => dev({ applied: all, preview: true, observation: observation([INIT, DROP_OLD, ADD]), args: rollout }));
    const waits = named(wired.result.resources, step(DROP)).dependencies.includes(named(wired.result.resources, "rollout").urn);
    expect(waits || wired.lines.some((l) => l.includes(DROP))).toBe(true);
  });
});

describe("phases: an expand migration after a pending contract one", () => {
  // One release with two changes: an old column dropped (contract), and full_name added (expand), which the new
  // version reads. The chain splits at DROP_OLD, so ADD runs after the rollout: the new version goes live on a
  // database without full_name and every one of its requests that reads it fails.
  test("the new version does not go live before full_name exists (or the update says so, or refuses)", async () => {
    const outcome = await said(() => dev({ applied: [INIT], args: rollout }).catch((e: unknown) => e));
    if (outcome.result instanceof Error) return; // refused: acceptable
    const run = outcome.result as RunResult;
    const addWaits = named(run.resources, step(ADD)).dependencies.includes(named(run.resources, "rollout").urn);
    const warned = outcome.lines.some((l) => l.includes(ADD) && !l.startsWith("expand:"));
    expect(!addWaits || warned).toBe(true);
  });
});
