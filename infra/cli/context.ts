import type { DeployerSession } from "../core/db/deployers";
import { stderrLogger, type Logger } from "../core/logger";
import { processOutput, type Output } from "./output";

/** What a command may touch of the outside world; tests pass their own. */
export interface Context {
  env: NodeJS.ProcessEnv;
  output: Output;
  logger(flags: { json?: boolean; verbose?: boolean }): Logger;
  /** Set where the caller already repaired interrupted snapshots and restores (the program of a `pulumi up`). */
  repaired?: boolean;
  /**
   * A migration step of a `pulumi up`: it prints nothing when it applies its
   * migration at the first attempt (Pulumi shows the step and its duration,
   * and each printed line is stored in the stack's state, once per
   * migration); waits, retries, warnings and failures are printed as ever.
   * It runs on the deploy session's deployer, which holds the connection and
   * the migration lock from one step to the next.
   */
  step?: { deployer: DeployerSession };
}

export const processContext: Context = {
  env: process.env,
  output: processOutput,
  logger: (flags) => stderrLogger({ verbose: flags.verbose }),
};
