import { stopTestCluster } from "./cluster";

export default async function globalTeardown(): Promise<void> {
  await stopTestCluster();
}
