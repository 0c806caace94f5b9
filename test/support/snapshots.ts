import { adminQuery } from "./cluster";

/**
 * Runs `fn` with snapshot database `database` open to connections, as a
 * superuser can (snapshots are closed: a test that reads or tampers with one
 * opens it the way only a superuser or its owner could), and closes it again.
 */
export async function withSnapshotOpened<T>(database: string, fn: () => Promise<T>): Promise<T> {
  await adminQuery(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`);
  try {
    return await fn();
  } finally {
    await adminQuery(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS false`);
  }
}
