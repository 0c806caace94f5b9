/**
 * The writing application of `npm run bench -- window`, in its own process so
 * the benchmark's own work never delays it: inserts the values 1, 2, 3, ...
 * into `acks` every PERIOD_MS through one connection; a write that fails is
 * retried with the same value on a new connection (ON CONFLICT DO NOTHING: a
 * write that committed but whose answer was lost is not a duplicate) until it
 * is acknowledged. Tells its parent (IPC) every acknowledged value with the
 * time of the acknowledgement and every failed attempt; stops on "stop".
 *
 * The connection URL comes over IPC, never argv or the environment.
 */
"use strict";
const { Client } = require("pg");

const PERIOD_MS = Number(process.env.BENCH_WRITER_PERIOD_MS || 10);
let stopping = false;

process.on("message", (m) => {
  if (m && m.cmd === "start") void run(m.url);
  if (m && m.cmd === "stop") stopping = true;
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run(url) {
  let client;
  let v = 0;
  let next = Date.now();
  while (!stopping) {
    v++;
    for (;;) {
      try {
        if (!client) {
          client = new Client({ connectionString: url, connectionTimeoutMillis: 2000, application_name: "bench writer" });
          client.on("error", () => undefined);
          await client.connect();
        }
        await client.query("INSERT INTO acks (v) VALUES ($1) ON CONFLICT DO NOTHING", [v]);
        process.send({ ack: v, t: Date.now() });
        break;
      } catch (err) {
        process.send({ error: String(err && err.code ? err.code : "ERR"), t: Date.now() });
        const old = client;
        client = undefined;
        if (old) await old.end().catch(() => undefined);
        if (stopping) break;
        await sleep(PERIOD_MS);
      }
    }
    next += PERIOD_MS;
    const wait = next - Date.now();
    if (wait > 0) await sleep(wait);
    else next = Date.now();
  }
  if (client) await client.end().catch(() => undefined);
  process.send({ stopped: v }, () => process.exit(0));
}
