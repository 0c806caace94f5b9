/**
 * Fault injection for the crash tests: `PGSTACK_FAILPOINT=<name>[,<name>...]`
 * makes the process SIGKILL itself at that named point, the way a power cut
 * or an OOM kill would end it (no finally, no exit handler runs). Unset, a
 * fail-point costs one environment lookup.
 */
export const FAILPOINT_ENV = "PGSTACK_FAILPOINT";

function armed(name: string, env: NodeJS.ProcessEnv): boolean {
  const list = env[FAILPOINT_ENV];
  return list !== undefined && list.split(",").includes(name);
}

/** Whether `name` is armed: for a fault that is not a kill (a helper process that cannot start). */
export function failpointArmed(name: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return armed(name, env);
}

/** Dies here when `name` is armed. */
export function failpoint(name: string, env: NodeJS.ProcessEnv = process.env): void {
  if (armed(name, env)) process.kill(process.pid, "SIGKILL");
}

/**
 * Runs `work` and, when `name` is armed, dies `delayMs` after starting it:
 * a kill in the middle of a statement (CREATE DATABASE, a rename), not
 * between two of them.
 */
export async function failpointDuring<T>(name: string, work: () => Promise<T>, delayMs = 15, env: NodeJS.ProcessEnv = process.env): Promise<T> {
  if (armed(name, env)) setTimeout(() => process.kill(process.pid, "SIGKILL"), delayMs);
  return work();
}
