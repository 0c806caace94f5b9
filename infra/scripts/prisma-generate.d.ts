// Types for prisma-generate.js (plain CommonJS so plain-node setup scripts can require it).

export interface EnsurePrismaClientOptions {
  /** Regenerate even when the client looks up to date. */
  force?: boolean;
  /** Receives one line when generation actually runs. */
  log?: (message: string) => void;
}

export interface EnsurePrismaClientResult {
  /** true when `prisma generate` ran, false when the client was already up to date. */
  generated: boolean;
  /** Why it ran ("no generated client yet", "schema.prisma changed ...", "forced"), or "up to date". */
  reason: string;
  /** Absolute path of the generated client directory (prisma/generated/client). */
  clientDir: string;
}

/** Generates Prisma Client offline unless it is newer than schema.prisma; throws one clear sentence on failure. */
export function ensurePrismaClient(projectDir: string, options?: EnsurePrismaClientOptions): EnsurePrismaClientResult;

/** The environment `prisma generate` needs to run without network access (DATABASE_URL removed). */
export function offlineEnv(projectDir: string, base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;

/** Why the client needs regenerating, or null when it is up to date. */
export function staleReason(projectDir: string): string | null;

/** Directory the `prisma-client` generator writes to. */
export function clientDirFor(projectDir: string): string;
