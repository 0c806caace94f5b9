/**
 * The zero-downtime test's traffic switch: an HTTP proxy on PORT forwarding
 * every request to the current target (127.0.0.1:TARGET_PORT). The target is
 * flipped atomically by `PUT /target` with the new port as body on
 * CONTROL_PORT (`GET /target` tells the target and when it was flipped):
 * requests that arrive afterwards go to the new target, the ones already
 * forwarded finish on the old one. A request the target cannot take
 * answers 502 with the reason.
 */
const http = require("node:http");

let target = Number(process.env.TARGET_PORT);
let flippedAt = null;
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

const proxy = http.createServer((req, res) => {
  const port = target;
  const upstream = http.request({ host: "127.0.0.1", port, method: req.method, path: req.url, headers: req.headers, agent }, (up) => {
    res.writeHead(up.statusCode ?? 502, up.headers);
    up.pipe(res);
  });
  upstream.on("error", (err) => {
    if (res.headersSent) return res.destroy(err);
    res.writeHead(502, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: `switch: target ${port}: ${err.message}` }));
  });
  req.pipe(upstream);
});
proxy.keepAliveTimeout = 60_000;
proxy.listen(Number(process.env.PORT), "127.0.0.1");

const control = http.createServer((req, res) => {
  let body = "";
  req.on("data", (d) => (body += d));
  req.on("end", () => {
    if (req.method === "PUT" && req.url === "/target" && /^\d+$/.test(body.trim())) {
      const from = target;
      target = Number(body.trim());
      flippedAt = new Date().toISOString();
      res.end(JSON.stringify({ from, to: target, flippedAt }));
    } else if (req.method === "GET" && req.url === "/target") {
      res.end(JSON.stringify({ to: target, flippedAt }));
    } else {
      res.statusCode = 400;
      res.end(JSON.stringify({ error: "PUT /target with a port number" }));
    }
  });
});
control.listen(Number(process.env.CONTROL_PORT), "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
