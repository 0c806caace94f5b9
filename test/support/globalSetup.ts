import { startTestCluster } from "./cluster";

/** One throwaway PostgreSQL for the whole run; each test file makes its own database in it. */
export default async function globalSetup(): Promise<void> {
  await startTestCluster();
}
