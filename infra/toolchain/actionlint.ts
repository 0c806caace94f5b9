import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** Pinned: a newer actionlint may add checks that fail an unchanged workflow. */
export const ACTIONLINT_VERSION = "v1.7.12";

export function actionlintPath(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(cache, "pgstack", `actionlint-${ACTIONLINT_VERSION}`, "actionlint");
}

/** Builds actionlint once from the Go module proxy into the shared cache. */
export function ensureActionlint(log: (line: string) => void = () => undefined): string {
  const bin = actionlintPath();
  if (existsSync(bin)) return bin;
  mkdirSync(path.dirname(bin), { recursive: true });
  log(`building actionlint ${ACTIONLINT_VERSION} from Go modules (one time)...`);
  try {
    execFileSync("go", ["install", `github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}`], {
      env: { ...process.env, GOBIN: path.dirname(bin), GOFLAGS: "-mod=mod" },
      stdio: ["ignore", "ignore", "pipe"],
    });
  } catch (err) {
    const missingGo = (err as NodeJS.ErrnoException).code === "ENOENT";
    throw new Error(
      missingGo
        ? "Go is needed to build actionlint once: install Go 1.22 or newer, or put actionlint on PATH."
        : `Building actionlint failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim().split("\n").pop()}`,
    );
  }
  return bin;
}

if (require.main === module) {
  console.log(ensureActionlint((l) => console.error(l)));
}
