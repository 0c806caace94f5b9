import { resolveSettings, DEFAULTS } from "../../infra/core/settings";

describe("resolveSettings", () => {
  it("applies defaults and resolves the migrations folder", () => {
    expect(resolveSettings({ url: "postgresql://u@h/db" }, "/project")).toEqual({
      databaseUrl: "postgresql://u@h/db",
      migrationsDir: "/project/migrations",
      ...DEFAULTS,
    });
  });

  it("reports every problem in one sentence", () => {
    expect(() => resolveSettings({ lockWait: "soon", lockTimeout: "-1", retries: "1.5" })).toThrow(
      "Invalid settings: no database URL: pass --url or set DATABASE_URL; --lock-wait must be a number of seconds, 0 or more (got 'soon'); --lock-timeout must be a whole number of milliseconds, 0 or more (got '-1'); --retries must be a whole number of attempts, 0 or more (got '1.5').",
    );
  });

  it("rejects a URL that is not PostgreSQL's", () => {
    expect(() => resolveSettings({ url: "mysql://u@h/db" })).toThrow("Invalid settings: the database URL must start with postgresql://.");
  });
});
