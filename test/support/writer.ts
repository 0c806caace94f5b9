import { Client } from "pg";

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
