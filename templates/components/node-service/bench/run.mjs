// Bounded benchmark: starts the built server on a free loopback port, warms up, measures
// GET /healthz with autocannon, prints a JSON summary and stops the server.
// Knobs: BENCH_CONNECTIONS (default 50, max 200), BENCH_DURATION (seconds, default 10, max 60).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import autocannon from "autocannon";

const clamp = (value, fallback, max) => Math.min(Math.max(Number(value) || fallback, 1), max);
const connections = clamp(process.env.BENCH_CONNECTIONS, 50, 200);
const duration = clamp(process.env.BENCH_DURATION, 10, 60);

const port = await new Promise((resolve, reject) => {
  const probe = createServer();
  probe.on("error", reject);
  probe.listen(0, "127.0.0.1", () => {
    const { port: free } = probe.address();
    probe.close(() => resolve(free));
  });
});

const server = spawn(process.execPath, ["--max-semi-space-size=32", "dist/server.js"], {
  env: {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: String(port),
    LOG_LEVEL: "warn",
    NODE_ENV: "production",
    // The service refuses to start without keys; /healthz itself needs none.
    API_KEYS: process.env.API_KEYS || randomBytes(16).toString("hex"),
  },
  stdio: ["ignore", "inherit", "inherit"],
});
const url = `http://127.0.0.1:${port}/healthz`;

try {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      if ((await fetch(url)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("server did not become healthy within 10 s");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await autocannon({ url, connections, duration: 3 });
  const result = await autocannon({ url, connections, duration });
  console.log(
    JSON.stringify(
      {
        url,
        connections,
        durationSeconds: duration,
        requestsPerSecond: result.requests.average,
        latencyMs: { p50: result.latency.p50, p99: result.latency.p99 },
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
      },
      null,
      2,
    ),
  );
} finally {
  server.kill("SIGTERM");
}
