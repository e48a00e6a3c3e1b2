// Metrics and traces of the HTTP service: /metrics in Prometheus text format (promtool-clean when
// promtool is installed) on a port of its own, RED metrics by route template, and a caller's
// `traceparent` continued by the request's span, whose trace id is on every log line of the request.
import { spawnSync } from "node:child_process";
import { Writable } from "node:stream";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import { Metrics, serveMetrics } from "../src/observability/metrics.js";
import { configureTracing } from "../src/observability/tracing.js";
import type { App } from "../src/types.js";
import { API_KEY } from "./support/app.js";
import { freePort, type RedisServer, startRedis } from "./support/redis.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
// Before any app is built: the SDK is installed once per process (each test file is one).
const spans = new InMemorySpanExporter();
configureTracing("test", spans);

const logLines: Record<string, unknown>[] = [];
let app: App;
let base: string;
let metricsUrl: string;
let redis: RedisServer;

beforeAll(async () => {
  redis = await startRedis();
  const config = loadConfig({ API_KEYS: API_KEY, ML_API_KEY: "test-ml-key", REDIS_URL: redis.url });
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  app = await buildApp(config, { logger: { level: "info", stream } });
  const port = await freePort();
  await serveMetrics(app, "127.0.0.1", port);
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  base = `http://127.0.0.1:${address.port}`;
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
});

afterAll(async () => {
  await app.close();
  await redis.stop();
});

describe("metrics", () => {
  it("counts requests by route template and status on the metrics port", async () => {
    await fetch(`${base}/healthz`);
    await fetch(`${base}/no/such/path/42`);
    const response = await fetch(metricsUrl);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/plain");
    const text = await response.text();
    expect(text).toMatch(
      /http_server_request_duration_seconds_count\{method="GET",route="\/healthz",status_code="200"\} [1-9]/,
    );
    expect(text).toMatch(/route="unmatched",status_code="404"/);
    expect(text).not.toContain("/no/such/path/42");
    expect((await fetch(`${metricsUrl.replace("/metrics", "/other")}`)).status).toBe(404);
  });

  it("shows each dependency's check as dependency_up, 0 while it fails", async () => {
    expect(await (await fetch(metricsUrl)).text()).toMatch(/^dependency_up\{dependency="redis"\} 1$/m);
    let down = true;
    app.readinessChecks.push({
      name: "flaky",
      check: async () => {
        if (down) throw new Error("connection refused");
      },
    });
    try {
      expect(await (await fetch(metricsUrl)).text()).toMatch(/^dependency_up\{dependency="flaky"\} 0$/m);
      // The process stays ready: the outage shows in metrics and ?verbose, not as a 503.
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      down = false;
      expect(await (await fetch(metricsUrl)).text()).toMatch(/^dependency_up\{dependency="flaky"\} 1$/m);
    } finally {
      app.readinessChecks.pop();
    }
  });

  it("passes promtool check metrics", async (context) => {
    const text = await (await fetch(metricsUrl)).text();
    const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    if (check.error !== undefined) context.skip();
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
  });

  it("falls back to a free port when METRICS_PORT is taken", async () => {
    const taken = new URL(metricsUrl).port;
    const other = await buildApp(loadConfig({ API_KEYS: API_KEY, ML_API_KEY: "test-ml-key", REDIS_URL: redis.url }), {
      logger: false,
    });
    try {
      const server = await serveMetrics(other, "127.0.0.1", Number(taken));
      const address = server?.address();
      if (address === null || address === undefined || typeof address === "string") throw new Error("no address");
      expect(address.port).not.toBe(Number(taken));
      expect(await (await fetch(`http://127.0.0.1:${address.port}/metrics`)).text()).toContain("# TYPE");
    } finally {
      await other.close();
    }
  });

  it("exports every job failure reason at 0 before the first failure", async () => {
    // A labelled series born at 1 is invisible to increase(): the alert needs it from the start.
    const metrics = new Metrics();
    expect(metrics.jobs.failed).toBeDefined();
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^bus_jobs_failed_total\{reason="deadline_exceeded"\} 0$/m);
  });

  it("exports no bus series where no jobs API registered them", async () => {
    // A service without a job bus would otherwise show a permanent "no jobs accepted".
    expect(await new Metrics().registry.metrics()).not.toMatch(/^(# TYPE )?bus_/m);
  });

  it("exports no upstream series where no proxy registered them", async () => {
    // A service that calls no upstream would otherwise show a permanent "no calls, no retries".
    expect(await new Metrics().registry.metrics()).not.toMatch(/^(# TYPE )?(http_client_|upstream_)/m);
    // This app's own: the series exist exactly where it proxies an upstream (then checked for readiness).
    const proxied = app.readinessChecks.some((check) => check.name === "upstream");
    const text = await app.metrics.registry.metrics();
    expect(/^# TYPE http_client_request_duration_seconds /m.test(text)).toBe(proxied);
    expect(/^# TYPE upstream_retries_(denied_)?total /m.test(text)).toBe(proxied);
  });

  it("is not served on the API port", async () => {
    expect((await fetch(`${base}/metrics`)).status).toBe(404);
  });
});

describe("traces", () => {
  it("continues the caller's traceparent and logs its trace id on every line of the request", async () => {
    spans.reset();
    // Probes log at warn only: an unknown path logs its request and response at info.
    const response = await fetch(`${base}/no/such/path`, {
      headers: { traceparent: TRACEPARENT, "x-request-id": "traced-1" },
    });
    expect(response.status).toBe(404);
    const server = spans.getFinishedSpans().filter((span) => span.kind === SpanKind.SERVER);
    expect(server.map((span) => span.spanContext().traceId)).toEqual([TRACE_ID]);
    const lines = logLines.filter((line) => line.reqId === "traced-1");
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(line.trace_id).toBe(TRACE_ID);
  });

  it("starts a new trace without a traceparent", async () => {
    spans.reset();
    await fetch(`${base}/healthz`, { headers: { traceparent: "garbage" } });
    const [span] = spans.getFinishedSpans();
    expect(span?.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(span?.spanContext().traceId).not.toBe(TRACE_ID);
  });
});
