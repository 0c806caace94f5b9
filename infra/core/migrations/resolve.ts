import { withClient, withTransaction } from "../db/client";
import { withAdvisoryLock } from "../db/deployers";
import { PgstackError } from "../errors";
import { ensureLedger, readLedger, recordResolvedApplied, recordResolvedRolledBack } from "../ledger/ledger";
import type { Settings } from "../settings";
import { discoverMigrations, findMigration } from "./discover";
import { computeStatus, type MigrationStatus } from "./status";

export type Resolution = "applied" | "rolled-back";

/**
 * `prisma migrate resolve`, so that nobody writes ledger SQL by hand after a
 * failed migration was finished or undone by hand:
 * - `applied`: the migration's failed attempts are marked rolled back and a
 *   finished row is added (refused when it is already applied);
 * - `rolled-back`: its failed attempts are marked rolled back, so the next
 *   run applies it from the start (refused when it has no failed attempt).
 * The database schema is never touched: this only records what a person did.
 */
export async function resolveMigration(settings: Settings, name: string, resolution: Resolution): Promise<MigrationStatus> {
  const migrations = await discoverMigrations(settings.migrationsDir);
  const migration = findMigration(migrations, name, "Migration");
  return withClient(settings.databaseUrl, (client, db) =>
    withAdvisoryLock(client, db, { waitSeconds: settings.lockWaitSeconds }, async () => {
      const before = computeStatus(migrations, await readLedger(client, db.schema)).find((s) => s.name === migration.name)!;
      if (resolution === "applied") {
        if (before.state === "applied" || before.state === "drifted") {
          throw new PgstackError(
            "E_MIGRATION_ALREADY_APPLIED",
            `Migration ${migration.name} is already recorded as applied: there is nothing to resolve.`,
            { migration: migration.name },
          );
        }
        await ensureLedger(client, db.schema);
        await withTransaction(client, () => recordResolvedApplied(client, db.schema, migration.name, migration.checksum));
      } else {
        const marked = before.state === "failed" ? await recordResolvedRolledBack(client, db.schema, migration.name) : 0;
        if (marked === 0) {
          throw new PgstackError(
            "E_MIGRATION_NOT_FAILED",
            `Migration ${migration.name} is ${before.state}, not failed with work left in the database: only a failed migration can be marked rolled back.`,
            { migration: migration.name, state: before.state },
          );
        }
      }
      return computeStatus(migrations, await readLedger(client, db.schema)).find((s) => s.name === migration.name)!;
    }),
  );
}
