import { parseArgs, requireYesOnProd } from "../../infra/scripts/rollback";

describe("npm run rollback arguments", () => {
  it("reads the stack, the snapshot, --yes, --keep-old and --unpin", () => {
    expect(parseArgs(["--stack", "dev", "--snapshot", "snap_dev_x", "--yes"])).toEqual({ stack: "dev", snapshot: "snap_dev_x", yes: true, unpin: false, keepOld: false });
    expect(parseArgs(["--stack=staging", "--unpin"])).toMatchObject({ stack: "staging", unpin: true, yes: false });
    expect(parseArgs(["-s", "dev", "-y", "--keep-old"])).toMatchObject({ stack: "dev", yes: true, keepOld: true });
  });

  it("refuses a missing stack, a flag without its value and an unknown flag, in one sentence each", () => {
    expect(() => parseArgs([])).toThrow(/^Name the stack to roll back: npm run rollback -- --stack <name>\.$/);
    expect(() => parseArgs(["--stack", "dev", "--snapshot"])).toThrow(/^--snapshot needs a value\.$/);
    expect(() => parseArgs(["--stack", "dev", "--force"])).toThrow(/^Unknown argument '--force': usage is npm run rollback/);
  });

  it("never asks on prod: a prod rollback without --yes is refused before anything changes", () => {
    expect(() => requireYesOnProd("prod", "prod", false)).toThrow("Stack 'prod' is prod: a rollback there always needs --yes (nothing was changed).");
    expect(() => requireYesOnProd("prod", "prod", true)).not.toThrow();
    expect(() => requireYesOnProd("staging", "staging", false)).not.toThrow();
  });
});
