/**
 * The rollout of v2, as the zero-downtime test's command resource runs it:
 * start v2 (app.js on full_name) in its own session so that it outlives this
 * command, wait until its health check answers (its column exists), then flip
 * the switch to it. Exits non-zero (failing the resource) if v2 never gets
 * healthy; the switch then stays on v1.
 *
 * Env: DATABASE_URL, V2_PORT, SWITCH_CONTROL_PORT, RUN_DIR (log and pid file).
 */
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");

const runDir = process.env.RUN_DIR;
const port = Number(process.env.V2_PORT);

function request(method, reqPort, reqPath, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: reqPort, method, path: reqPath }, (res) => {
      let text = "";
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function main() {
  const log = fs.openSync(path.join(runDir, "v2.log"), "a");
  const child = spawn(process.execPath, [path.join(__dirname, "app.js")], {
    detached: true,
    stdio: ["ignore", log, log],
    env: { PATH: process.env.PATH, DATABASE_URL: process.env.DATABASE_URL, PORT: String(port), COLUMN: "full_name", VERSION: "v2" },
  });
  fs.writeFileSync(path.join(runDir, "v2.pid"), String(child.pid));
  child.unref();
  let last = "not started";
  for (let i = 0; i < 200; i++) {
    try {
      const health = await request("GET", port, "/health");
      if (health.status === 200) break;
      last = `${health.status} ${health.body}`;
    } catch (err) {
      last = err.message;
    }
    if (i === 199) throw new Error(`v2 never answered its health check: ${last}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const flip = await request("PUT", Number(process.env.SWITCH_CONTROL_PORT), "/target", String(port));
  if (flip.status !== 200) throw new Error(`the switch refused: ${flip.body}`);
  console.log(`v2 healthy on ${port}; switch ${flip.body}`);
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
