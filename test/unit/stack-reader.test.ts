import { parseStackConfig } from "../../infra/config/schema";
import { outputsFromCli, rawConfigFromCli } from "../../infra/config/stack";

/** `pulumi config --json` / `stack output --json` as the tools outside the program read them: through the program's schema. */
describe("the stack reader", () => {
  it("reads config through the schema, defaults included (data dir, lint, keep), like the Pulumi program", () => {
    const config = parseStackConfig(rawConfigFromCli("dev", "pgstack", { "pgstack:engine": { value: "embedded" }, "pgstack:seed": { value: "true" } }));
    expect(config).toMatchObject({ engine: "embedded", environment: "dev", lint: "warn", migrationsDir: "migrations", seed: true, snapshots: { keep: 5 } });
    expect(config.embedded?.dataDir).toBe(".pgstack/dev/data");
    const staging = parseStackConfig(rawConfigFromCli("staging", "pgstack", { "pgstack:engine": { value: "external" }, "pgstack:externalUrl": { secret: true } }));
    expect(staging).toMatchObject({ environment: "staging", lint: "strict", hasExternalUrl: true });
  });

  it("takes objects from objectValue (or their JSON), sees secrets only as set, and names a secret stored in plain text", () => {
    const raw = rawConfigFromCli("dev", "p", {
      "pgstack:embedded": { value: '{"port":5555}' },
      "pgstack:password": { value: "hunter2", secret: false },
      "aws:region": { value: "eu-west-1" },
    });
    expect(raw).toEqual({ stack: "dev", project: "p", keys: ["embedded", "password"], values: { embedded: { port: 5555 } }, hasPassword: true, hasExternalUrl: false, plainSecrets: ["password"] });
    expect(() => parseStackConfig(raw)).toThrow(/pgstack:password is stored in plain text in Pulumi\.dev\.yaml/);
  });

  it("reads the outputs it knows, nothing else", () => {
    expect(outputsFromCli({ databaseUrl: "postgresql://u:p@h/db", appliedMigrations: ["a"], latestSnapshot: "", other: 1 })).toEqual({
      databaseUrl: "postgresql://u:p@h/db",
      appliedMigrations: ["a"],
      latestSnapshot: undefined,
    });
  });
});
