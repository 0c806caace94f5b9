/**
 * Shared by the npm-script entry points (dev, preview, rollback, destroy): pulumi on
 * this project for one stack (infra/toolchain/pulumi.ts), with the local file://
 * backend unless the user set PULUMI_BACKEND_URL, and the dev passphrase for the dev
 * stack only unless the user set PULUMI_CONFIG_PASSPHRASE(_FILE).
 */
import { errorSentence, exitCodeOf } from "../core/errors";
import { PROJECT_ROOT, pulumiFor, type Pulumi } from "../toolchain/pulumi";

export { PROJECT_ROOT, type Pulumi };

export function say(line: string): void {
  process.stderr.write(`[pgstack] ${line}\n`);
}

export function pulumiForScript(stack: string): Promise<Pulumi> {
  return pulumiFor(stack, { log: say });
}

/** `--stack <name>` / `--stack=<name>` / `-s <name>` from argv, and the other arguments. */
export function takeStack(argv: string[], fallback: string): { stack: string; rest: string[] } {
  const rest: string[] = [];
  let stack = fallback;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--stack" || a === "-s") stack = argv[++i] ?? fallback;
    else if (a.startsWith("--stack=")) stack = a.slice("--stack=".length);
    else rest.push(a);
  }
  return { stack, rest };
}

/**
 * Runs an npm script's async main and exits with its code. Failures follow the
 * CLI's contract (cli/main.ts): `pgstack: <sentence>` on stderr, exit 2 for a
 * malformed command line (E_USAGE), 1 otherwise.
 */
export function runMain(main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`pgstack: ${errorSentence(err)}\n`);
      process.exit(exitCodeOf(err));
    },
  );
}
