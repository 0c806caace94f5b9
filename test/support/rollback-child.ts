/**
 * `npm run rollback` in a process of its own (so a fail-point's SIGKILL ends
 * only it), with the real database and a stack kept in a JSON file instead of
 * the pulumi CLI: `node --require tsx/cjs rollback-child.ts <stack.json> <project dir> -- <args>`.
 * The file: `{ config: {"pgstack:key": {value, secret?}}, outputs: {...}, calls: [[...]] }`;
 * `config set` / `config rm` change it at once (a kill after them keeps them),
 * `up` is recorded in `calls` and sets the `pinnedMigration` output as the program would.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { rollback } from "../../infra/scripts/rollback";
import { runMain } from "../../infra/scripts/run-pulumi";

export interface FakeStack {
  config: Record<string, { value?: string; secret?: boolean }>;
  outputs: Record<string, unknown>;
  calls: string[][];
}

export function readFakeStack(file: string): FakeStack {
  return JSON.parse(readFileSync(file, "utf8")) as FakeStack;
}

export function writeFakeStack(file: string, stack: FakeStack): void {
  writeFileSync(file, JSON.stringify(stack, null, 2));
}

function fakePulumi(file: string) {
  const change = (fn: (s: FakeStack) => void) => {
    const s = readFakeStack(file);
    fn(s);
    writeFakeStack(file, s);
    return s;
  };
  const ok = (stdout = "") => ({ code: 0, stdout, stderr: "" });
  return {
    async capture(args: string[]) {
      const s = change((st) => st.calls.push(args));
      if (args[0] === "config" && args[1] === "--json") return ok(JSON.stringify(s.config));
      if (args[0] === "stack" && args[1] === "output") return ok(JSON.stringify(s.outputs));
      if (args[0] === "config" && args[1] === "set") {
        const [key, value] = args.slice(-2);
        change((st) => (st.config[key] = { value }));
        return ok();
      }
      if (args[0] === "config" && args[1] === "rm") {
        change((st) => delete st.config[args[2]]);
        return ok();
      }
      return ok();
    },
    async run(args: string[]) {
      change((st) => {
        st.calls.push(args);
        if (args[0] === "up") st.outputs.pinnedMigration = st.config["pgstack:pinnedMigration"]?.value ?? "";
      });
      return 0;
    },
  };
}

if (require.main === module) {
  const [file, projectDir, sep, ...args] = process.argv.slice(2);
  if (sep !== "--") throw new Error("usage: rollback-child.ts <stack.json> <project dir> -- <args>");
  runMain(() => rollback(args, { pulumi: fakePulumi(file) as never, projectDir }));
}
