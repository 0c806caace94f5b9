/**
 * The application of the zero-downtime test, one version per column: v1 reads
 * and writes "person"."name", v2 "person"."full_name" (COLUMN). Plain `pg`, a
 * small pool whose sessions stay open (as a real service's do, so a snapshot
 * that ends sessions would show as failed requests).
 *
 *   GET  /health          200 once its column answers a query, else 503
 *   GET  /people[?limit=] the values, newest first (all without limit)
 *   POST /people {value}  inserts one row; 201 only after COMMIT
 *
 * Every answer carries `x-app-version` (VERSION), so the load loop knows which
 * version served it. Errors answer 500 with the database's message.
 */
const http = require("node:http");
const { Pool } = require("pg");

const column = process.env.COLUMN;
if (!/^[a-z_]+$/.test(column ?? "")) throw new Error("COLUMN must be a lower-case column name");
const version = process.env.VERSION ?? column;
const col = `"${column}"`;
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 6, idleTimeoutMillis: 0, connectionTimeoutMillis: 5000 });
pool.on("error", () => undefined);

function answer(res, status, body) {
  res.writeHead(status, { "content-type": "application/json", "x-app-version": version });
  res.end(JSON.stringify(body));
}

async function insert(value) {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query(`INSERT INTO "person" (${col}) VALUES ($1)`, [value]);
    await client.query("COMMIT");
    client.release();
  } catch (err) {
    // A session in an unknown state is not given back to the pool.
    client.release(err);
    throw err;
  }
}

async function handle(req, res) {
  const url = new URL(req.url, "http://app");
  if (req.method === "GET" && url.pathname === "/health") {
    await pool.query(`SELECT ${col} FROM "person" LIMIT 0`);
    return answer(res, 200, { version });
  }
  if (req.method === "GET" && url.pathname === "/people") {
    const limit = url.searchParams.get("limit");
    const { rows } = limit
      ? await pool.query(`SELECT ${col} AS value FROM "person" ORDER BY "id" DESC LIMIT $1`, [Number(limit)])
      : await pool.query(`SELECT ${col} AS value FROM "person" ORDER BY "id" DESC`);
    return answer(res, 200, rows.map((r) => r.value));
  }
  if (req.method === "POST" && url.pathname === "/people") {
    let body = "";
    for await (const chunk of req) body += chunk;
    const { value } = JSON.parse(body);
    await insert(value);
    return answer(res, 201, { value });
  }
  return answer(res, 404, { error: `no route ${req.method} ${url.pathname}` });
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => answer(res, 500, { error: String(err && err.message) }));
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT), "127.0.0.1");
process.on("SIGTERM", () => {
  server.close();
  pool.end().finally(() => process.exit(0));
});
