import { intentContradiction, plainComment, type RollbackIntent } from "../../infra/core/snapshot/intent";

const intent = (pin: string): RollbackIntent => ({ op: "revert", pin, removed: ["c"], at: "2026-01-01T00:00:00.000Z" });

describe("a rollback record checked against the ledger", () => {
  it("agrees when the pin is the last applied migration", () => {
    expect(intentContradiction(intent("b"), ["a", "b"])).toBeUndefined();
  });
  it("is stale when a migration after the pin is applied (re-applied by hand)", () => {
    expect(intentContradiction(intent("b"), ["a", "c", "b"])).toBe("c, after b, is applied");
    expect(intentContradiction(intent("a"), ["a", "b", "c"])).toBe("b, c, after a, are applied");
  });
  it("is stale when the pin is not applied", () => {
    expect(intentContradiction(intent("b"), ["a"])).toBe("b is not applied");
    expect(intentContradiction(intent("b"), [])).toBe("b is not applied");
  });
});

describe("the comment a copy may carry", () => {
  const rec = (comment: string | null) => JSON.stringify({ "pgstack-rollback": intent("b"), comment });
  const marker = (comment: string | null) =>
    JSON.stringify({ "pgstack-operation": { op: "restore", pid: 1, backendStart: "x", database: "app", closed: true }, comment });
  it("is the database's own comment, without any record or marker around it, however nested", () => {
    expect(plainComment("own")).toBe("own");
    expect(plainComment(null)).toBeNull();
    expect(plainComment(rec("own"))).toBe("own");
    expect(plainComment(marker(rec("own")))).toBe("own");
    expect(plainComment(rec(marker(rec(null))))).toBeNull();
  });
});
