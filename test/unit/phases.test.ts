/**
 * Expand, roll out the application, contract (issue 24, items 2 and 4), under
 * Pulumi mocks through the public entry: with `contractAfter`, the chain splits
 * at the first migration the previous update did not apply that breaks the
 * application version now running; every step from there on waits for the
 * rollout, which waits for the expand phase. Without a rollout, or with no
 * pending contract migration, the stack registers what it always did.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ADD, DROP, DROP_OLD, INIT, LATER, SQL } from "../support/phases-history";
import { runDevStack } from "../support/phases-history";
import { fakeProject, lastComponent, named, type Registered, type RunResult } from "../support/pulumi-mocks";

jest.setTimeout(60_000);

const ALL = Object.keys(SQL);
const PASSWORD = "0123456789abcdef0123456789abcdef";
const COMMAND = "command:local:Command";

let migrationsDir: string;
let projectDir: string;

async function writeMigration(name: string, sql: string): Promise<void> {
  await fs.mkdir(path.join(migrationsDir, name), { recursive: true });
  await fs.writeFile(path.join(migrationsDir, name, "migration.sql"), sql);
}

beforeAll(async () => {
  migrationsDir = await fs.mkdtemp(path.join(os.tmpdir(), "pgstack-phases-"));
  for (const name of ALL) await writeMigration(name, SQL[name]);
  projectDir = await fakeProject({ migrations: migrationsDir, password: PASSWORD });
});
afterAll(async () => {
  await fs.rm(projectDir, { recursive: true, force: true });
  await fs.rm(migrationsDir, { recursive: true, force: true });
});

/** A rollout as an application's program writes it: a command that depends on the expand phase. */
function rolloutArgs(received: { expanded?: pulumi.Resource[] }) {
  return {
    contractAfter: (expanded: pulumi.Resource[], db: { databaseUrl: pulumi.Output<string> }) => {
      received.expanded = expanded;
      return [new command.local.Command("rollout", { create: "true", environment: { DATABASE_URL: db.databaseUrl } }, { dependsOn: expanded })];
    },
  };
}

const dev = (options: { applied?: string[]; args?: object; preview?: boolean; config?: Record<string, unknown>; observation?: object } = {}): Promise<RunResult> => runDevStack(projectDir, options);

const step = (name: string) => `migrations-${name}`;
const deps = (run: RunResult, name: string) => named(run.resources, name).dependencies;
/** Every registration but the rollout, as what it is: type, name, inputs, dependencies. */
const shape = (resources: Registered[]) =>
  resources.filter((r) => r.name !== "rollout" && r.type !== "pulumi:pulumi:StackReference").map((r) => ({ type: r.type, name: r.name, inputs: r.inputs, dependencies: [...r.dependencies].sort() }));

describe("a rollout wired with pending contract migrations (the previous update applied the first two)", () => {
  let run: RunResult;
  const received: { expanded?: pulumi.Resource[] } = {};
  beforeAll(async () => {
    run = await dev({ applied: [INIT, DROP_OLD], args: rolloutArgs(received) });
  });

  it("calls the function in the constructor with the expand handle, PgStack.expanded", () => {
    expect(received.expanded).toBeDefined();
    expect(received.expanded).toBe(lastComponent!.expanded);
  });

  it("gives the function the component too: the application gets the database URL, as a secret", () => {
    const rollout = named(run.resources, "rollout");
    expect(rollout.inputs.environment.DATABASE_URL).toBe(`postgresql://postgres:${PASSWORD}@127.0.0.1:54329/app`);
    expect(rollout.secretInputs).toContain("environment");
  });

  it("the rollout waits for the expand phase: its last step, after the database and every step before it", () => {
    const rollout = named(run.resources, "rollout");
    expect(rollout.type).toBe(COMMAND);
    // The expand handle's last step, and the database its URL comes from.
    expect([...rollout.dependencies].sort()).toEqual([step(ADD), "db-cluster"].map((n) => named(run.resources, n).urn).sort());
    // That step comes after the two before it and the snapshot (the database's).
    expect(deps(run, step(ADD))).toEqual(expect.arrayContaining([named(run.resources, step(DROP_OLD)).urn, named(run.resources, "pre-update-copy").urn]));
  });

  it("splits at the first pending contract migration: it and every later one (an expand one too) wait for the rollout; the steps before it do not", () => {
    const rollout = named(run.resources, "rollout").urn;
    for (const name of [DROP, LATER]) expect(deps(run, step(name))).toContain(rollout);
    // History order is kept.
    expect(deps(run, step(DROP))).toContain(named(run.resources, step(ADD)).urn);
    expect(deps(run, step(LATER))).toContain(named(run.resources, step(DROP)).urn);
    // The old DROP COLUMN was applied by the previous update: it holds nothing back.
    for (const name of [INIT, DROP_OLD, ADD]) expect(deps(run, step(name))).not.toContain(rollout);
  });

  it("seeds after the whole chain", () => {
    expect(named(run.resources, "seed-run").dependencies).toContain(named(run.resources, step(LATER)).urn);
  });

  it("serves the whole chain in one deploy session, which keeps the migration lock through the rollout (no release between the phases)", () => {
    expect(run.sessions).toHaveLength(1);
    expect(run.sessions[0].steps).toEqual(ALL.map((n) => ["apply", n, "--dir", "migrations"]));
    // No release between the phases: the only other thing it serves is the verification, after the chain.
    expect(Object.keys(run.sessions[0]).sort()).toEqual(["after", "closed", "databaseUrl", "projectDir", "stack", "steps"]);
    expect(run.sessions[0].after).toEqual([expect.arrayContaining(["verify"])]);
  });

  it("changes no migration's inputs: the split is in the dependencies only", async () => {
    const plain = await dev({ applied: [INIT, DROP_OLD] });
    for (const name of ALL) expect(named(run.resources, step(name)).inputs).toEqual(named(plain.resources, step(name)).inputs);
  });
});

describe("contractAfter as a list (the rollout made after the component, given as a promise)", () => {
  it("splits the same way: the contract steps wait for it, and it waits for db.expanded", async () => {
    let give!: (r: pulumi.Resource) => void;
    const later = new Promise<pulumi.Resource>((resolve) => (give = resolve));
    // The application's program goes on after `new PgStack(...)`: its rollout depends on db.expanded.
    const before = lastComponent;
    const made = (async () => {
      while (lastComponent === before) await new Promise((r) => setTimeout(r, 5));
      give(new command.local.Command("rollout", { create: "true" }, { dependsOn: lastComponent!.expanded }));
    })();
    const run = await dev({ applied: [INIT, DROP_OLD], args: { contractAfter: [later] } });
    await made;
    const rollout = named(run.resources, "rollout");
    expect(rollout.dependencies).toEqual([named(run.resources, step(ADD)).urn]);
    for (const name of [DROP, LATER]) expect(deps(run, step(name))).toContain(rollout.urn);
    for (const name of [INIT, DROP_OLD, ADD]) expect(deps(run, step(name))).not.toContain(rollout.urn);
  });
});

describe("the preview shows the two phases", () => {
  it("names what each phase runs and the rollout's resources, on the component", async () => {
    const info = jest.spyOn(pulumi.log, "info");
    try {
      await dev({ applied: [INIT, DROP_OLD], args: rolloutArgs({}), preview: true });
      const said = info.mock.calls.map((c) => String(c[0]));
      expect(said).toContain(`expand: 1 migration (${ADD}); then the application rollout (rollout); then contract: 2 migrations (${DROP}, ${LATER})`);
    } finally {
      info.mockRestore();
    }
  });
});

describe("no split: the stack registers exactly what it does without a rollout", () => {
  it("when no pending migration is contract", async () => {
    const applied = [INIT, DROP_OLD, ADD, DROP];
    const wired = await dev({ applied, args: rolloutArgs({}) });
    const plain = await dev({ applied });
    expect(shape(wired.resources)).toEqual(shape(plain.resources));
    // The rollout still comes after the whole chain: the expand phase is all of it.
    expect(named(wired.resources, "rollout").dependencies).toContain(named(wired.resources, step(LATER)).urn);
  });

  it("on the stack's first update (no application runs on its database yet)", async () => {
    const wired = await dev({ args: rolloutArgs({}) });
    const plain = await dev();
    expect(shape(wired.resources)).toEqual(shape(plain.resources));
  });

  it("without contractAfter: each step depends on the one before it and the snapshot only, and the warn stack reads no stack outputs", async () => {
    const plain = await dev({ applied: [INIT, DROP_OLD] });
    // The chain's dependencies (the snapshot, through it the database) and the step before.
    expect([...deps(plain, step(DROP))].sort()).toEqual(["db-cluster", "pre-update-copy", step(ADD)].map((n) => named(plain.resources, n).urn).sort());
    expect(plain.resources.some((r) => r.type === "pulumi:pulumi:StackReference")).toBe(false);
  });
});

describe("a stack without a rollout wired", () => {
  const observation = (applied: string[]) => ({ identity: "7311111111111111111/app/16384", applied: new Map(applied.map((n) => [n, new Date(0)])) });

  it("warns which contract migrations will run while the version now running is live (the database's ledger says what is pending)", async () => {
    const warn = jest.spyOn(pulumi.log, "warn");
    try {
      await dev({ preview: true, observation: observation([INIT, DROP_OLD]) });
      expect(warn.mock.calls.map((c) => String(c[0]))).toContain(
        `1 contract migration will run while the application version now running is live: ${DROP}; wire \`contractAfter\` (README).`,
      );
    } finally {
      warn.mockRestore();
    }
  });

  it("with lint: strict, refuses in one sentence naming the migration and both ways out, before registering anything", async () => {
    const strict = { "pgstack:lint": "strict" };
    // The lint finding itself is accepted: the refusal is about the running version.
    await writeMigration(DROP, `-- pgstack:allow ban-drop-column name is read by nobody since v3\n${SQL[DROP]}`);
    try {
      const err = await dev({ applied: [INIT, DROP_OLD], config: strict, preview: true }).catch((e) => e);
      expect(pulumi.RunError.isInstance(err)).toBe(true);
      expect(err.message).toBe(
        `Stack 'dev' has lint: strict and migration ${DROP} breaks the application version now running (contract) with no application rollout wired: ` +
          `pass the rollout as \`contractAfter\` to PgStack so it runs after it (README "Zero-downtime schema changes"), ` +
          "or acknowledge the downtime with a line `-- pgstack:allow-contract <why>` in its migration.sql.",
      );

      // Acknowledged: it goes ahead.
      await writeMigration(DROP, `-- pgstack:allow ban-drop-column name is read by nobody since v3\n-- pgstack:allow-contract maintenance window 02:00\n${SQL[DROP]}`);
      const run = await dev({ applied: [INIT, DROP_OLD], config: strict, preview: true });
      expect(run.resources.map((r) => r.name)).toContain(step(DROP));

      // Wired: it goes ahead too, after the rollout (the expand migration sorted after it acknowledged: see below).
      await writeMigration(DROP, `-- pgstack:allow ban-drop-column name is read by nobody since v3\n${SQL[DROP]}`);
      await writeMigration(LATER, `-- pgstack:allow-contract the new version does not read nickname yet\n${SQL[LATER]}`);
      const wired = await dev({ applied: [INIT, DROP_OLD], config: strict, preview: true, args: rolloutArgs({}) });
      expect(deps(wired, step(DROP))).toContain(named(wired.resources, "rollout").urn);
    } finally {
      await writeMigration(DROP, SQL[DROP]);
      await writeMigration(LATER, SQL[LATER]);
    }
  });
});

describe("contractAfter of the wrong type", () => {
  it("is refused in one sentence before anything but the component is registered", async () => {
    const err = await dev({ args: { contractAfter: "app-service" } }).catch((e) => e);
    expect(err.message).toBe("PgStackArgs.contractAfter must be a list of resources or a function (expanded) => resources; got string.");
    const items = await dev({ args: { contractAfter: ["app-service"] } }).catch((e) => e);
    expect(items.message).toBe("PgStackArgs.contractAfter must be a list of resources or a function (expanded) => resources; item 0 is the string 'app-service', not a resource.");
    const returned = await dev({ args: { contractAfter: () => "app" } }).catch((e) => e);
    expect(returned.message).toBe("PgStackArgs.contractAfter's function must return the list of the rollout's resources; it returned the string 'app'.");
  });
});

describe("an expand migration that sorts after a pending contract one (it runs after the rollout)", () => {
  const later = (strict: boolean) =>
    `${strict ? "e" : "E"}xpand migration ${LATER} sorts after the contract migration ${DROP}, so it runs after the application rollout and the new version goes live without it: ` +
    `rename it so it sorts before ${DROP}, or ship it in an earlier update`;

  it("is named in a warning with the contract migration and the fix", async () => {
    const warn = jest.spyOn(pulumi.log, "warn");
    try {
      await dev({ applied: [INIT, DROP_OLD], args: rolloutArgs({}), preview: true });
      expect(warn.mock.calls.map((c) => String(c[0]))).toContain(`${later(false)}.`);
    } finally {
      warn.mockRestore();
    }
  });

  it("with lint: strict, is refused before anything is registered unless it is acknowledged", async () => {
    const strict = { "pgstack:lint": "strict" };
    await writeMigration(DROP, `-- pgstack:allow ban-drop-column name is read by nobody since v3\n${SQL[DROP]}`);
    const info = jest.spyOn(pulumi.log, "info");
    try {
      // (A rollout that depends on nothing of the component: what does is refused too, and reports the same error first.)
      const bare = { contractAfter: () => [new command.local.Command("rollout", { create: "true" })] };
      const err = await dev({ applied: [INIT, DROP_OLD], config: strict, preview: true, args: bare }).catch((e) => e);
      expect(pulumi.RunError.isInstance(err)).toBe(true);
      expect(err.message).toBe(
        `Stack 'dev' has lint: strict and ${later(true)}; if the new version does not need it, acknowledge with a line \`-- pgstack:allow-contract <why>\` in its migration.sql.`,
      );
      await writeMigration(LATER, `-- pgstack:allow-contract the new version does not read nickname yet\n${SQL[LATER]}`);
      const run = await dev({ applied: [INIT, DROP_OLD], config: strict, preview: true, args: rolloutArgs({}) });
      expect(deps(run, step(LATER))).toContain(named(run.resources, "rollout").urn);
      expect(info.mock.calls.map((c) => String(c[0]))).toContain(`contract: accepted ${LATER} after the application rollout: the new version does not read nickname yet`);
    } finally {
      info.mockRestore();
      await writeMigration(DROP, SQL[DROP]);
      await writeMigration(LATER, SQL[LATER]);
    }
  });
});

describe("the split decided by the database's ledger (contractAfter wired)", () => {
  const observation = (applied: string[]) => ({ identity: "7311111111111111111/app/16384", applied: new Map(applied.map((n) => [n, new Date(0)])) });

  it("an adopted database with an application on it (no previous outputs, a ledger with history): the pending contract migration waits for the rollout", async () => {
    const run = await dev({ args: rolloutArgs({}), observation: observation([INIT, DROP_OLD, ADD]) });
    const rollout = named(run.resources, "rollout");
    for (const name of [DROP, LATER]) expect(deps(run, step(name))).toContain(rollout.urn);
    for (const name of [INIT, DROP_OLD, ADD]) expect(deps(run, step(name))).not.toContain(rollout.urn);
    expect(rollout.dependencies).toContain(named(run.resources, step(ADD)).urn);
  });

  it("a ledger behind the outputs (a restore): the contract migration it removed waits for the rollout again", async () => {
    const run = await dev({ applied: ALL, args: rolloutArgs({}), observation: observation([INIT, DROP_OLD, ADD]) });
    expect(deps(run, step(DROP))).toContain(named(run.resources, "rollout").urn);
    expect(deps(run, step(ADD))).not.toContain(named(run.resources, "rollout").urn);
  });

  it("a new database (an empty ledger): no split, the stack is what it is without contractAfter", async () => {
    const wired = await dev({ applied: [INIT, DROP_OLD], args: rolloutArgs({}), observation: observation([]) });
    const plain = await dev({ applied: [INIT, DROP_OLD], observation: observation([]) });
    expect(shape(wired.resources)).toEqual(shape(plain.resources));
    expect(named(wired.resources, "rollout").dependencies).toContain(named(wired.resources, step(LATER)).urn);
  });
});
