import { stderrLogger, type Logger } from "../core/logger";
import { processOutput, type Output } from "./output";

/** What a command may touch of the outside world; tests pass their own. */
export interface Context {
  env: NodeJS.ProcessEnv;
  output: Output;
  logger(flags: { json?: boolean; verbose?: boolean }): Logger;
}

export const processContext: Context = {
  env: process.env,
  output: processOutput,
  logger: (flags) => stderrLogger({ verbose: flags.verbose }),
};
