/**
 * `node --require tsx/cjs pgkit-end-child.ts <database url> <admin url> fixed|plain`:
 * a @pgkit/client with one idle connection whose server process is slow to read
 * the goodbye (stopped with SIGSTOP, as on a loaded machine), ended (with
 * endPgkitClient, or with its own end() alone), then its database dropped WITH
 * (FORCE): the server's FATAL 57P01 arrives on that connection after end()
 * resolved. Exits 0 when the process survives it.
 */
import { createClient, sql } from "@pgkit/client";
import { endPgkitClient, withClient } from "../../infra/core/db/client";

const [url, admin, mode] = process.argv.slice(2);

(async () => {
  const client = createClient(url);
  const pid = Number((await client.one(sql`SELECT pg_backend_pid() AS p`)).p);
  process.kill(pid, "SIGSTOP");
  try {
    if (mode === "fixed") await endPgkitClient(client);
    else await client.end().catch(() => undefined);
    const database = new URL(url).pathname.slice(1);
    const drop = withClient(admin, (c) => c.query(`DROP DATABASE "${database}" WITH (FORCE)`));
    await new Promise((r) => setTimeout(r, 300));
    process.kill(pid, "SIGCONT");
    await drop;
  } finally {
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // gone already
    }
  }
  // Time for the server's message to arrive and be handled (or not).
  await new Promise((r) => setTimeout(r, 1000));
  process.stdout.write("survived\n");
})().catch((err) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(2);
});
