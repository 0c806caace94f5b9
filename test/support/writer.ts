import { Client } from "pg";
import { withDb } from "./cluster";

/**
 * An application writing one row every `everyMs` into `table (tag)` through
 * one session, reconnecting after an error as a pooled client would. Each tag
 * it records was acknowledged (the INSERT returned); errors are counted.
 */
export function startWriter(url: string, table: string, everyMs = 20): { stop(): Promise<{ acked: string[]; errors: number }> } {
  const acked: string[] = [];
  let stopped = false;
  let errors = 0;
  const done = (async () => {
    let client: Client | undefined;
    for (let n = 0; !stopped; n++) {
      try {
        if (!client) {
          client = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
          client.on("error", () => undefined);
          await client.connect();
        }
        const tag = `w${n}`;
        await client.query(`INSERT INTO ${table} (tag) VALUES ($1)`, [tag]);
        acked.push(tag);
      } catch {
        errors++;
        await client?.end().catch(() => undefined);
        client = undefined;
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
    await client?.end().catch(() => undefined);
  })();
  return {
    async stop() {
      stopped = true;
      await done;
      return { acked, errors };
    },
  };
}

/**
 * The guarantee of a restore under a writing application: every acknowledged
 * write is either in the restored table or counted as discarded by the
 * report (at most the one write in flight when its session ended is counted
 * without an acknowledgement), and the run saw both kinds and some errors.
 */
export async function expectNoUnreportedLoss(url: string, table: string, written: { acked: string[]; errors: number }, discarded: number): Promise<void> {
  const present = new Set((await withDb(url, (c) => c.query<{ tag: string }>(`SELECT tag FROM ${table}`))).rows.map((r) => r.tag));
  const lost = written.acked.filter((t) => !present.has(t));
  expect(lost.length).toBeGreaterThan(10);
  expect(written.acked.length - lost.length).toBeGreaterThan(0);
  expect(discarded).toBeGreaterThanOrEqual(lost.length);
  expect(discarded - lost.length).toBeLessThanOrEqual(1);
  expect(written.errors).toBeGreaterThan(0);
}
