// Traces with nothing to export (OTEL_EXPORTER_OTLP_ENDPOINT unset, the default): no span is
// recorded, yet every request still has a trace context: the caller's trace continued (or a new
// one), its trace id on every log line of the request. (observability.test.ts: with an exporter.)
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.js";
import { loadConfig } from "../src/config.js";
import type { App } from "../src/types.js";
import { API_KEY } from "./support/app.js";
import { type RedisServer, startRedis } from "./support/redis.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";

const logLines: Record<string, unknown>[] = [];
let app: App;
let base: string;
let redis: RedisServer;

beforeAll(async () => {
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  redis = await startRedis();
  const config = loadConfig({ API_KEYS: API_KEY, ML_API_KEY: "test-ml-key", REDIS_URL: redis.url });
  app = await buildApp(config, { logger: { level: "info", stream } });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  base = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  await app?.close();
  await redis?.stop();
});

/** The trace and span ids logged for the request `reqId` (every line must agree). */
async function logged(reqId: string, traceparent?: string): Promise<{ traceId: string; spanId: string }> {
  const headers: Record<string, string> = { "x-request-id": reqId };
  if (traceparent !== undefined) headers.traceparent = traceparent;
  // An unknown path: its request and response are logged at info.
  expect((await fetch(`${base}/no/such/path`, { headers })).status).toBe(404);
  const lines = logLines.filter((line) => line.reqId === reqId);
  expect(lines.length).toBeGreaterThanOrEqual(2);
  const [first] = lines as [Record<string, unknown>];
  for (const line of lines) expect([line.trace_id, line.span_id]).toEqual([first.trace_id, first.span_id]);
  return { traceId: String(first.trace_id), spanId: String(first.span_id) };
}

describe("trace context without an exporter", () => {
  it("continues the caller's trace with a span id of its own", async () => {
    const ids = await logged("ctx-1", `00-${TRACE_ID}-${CALLER_SPAN}-01`);
    expect(ids.traceId).toBe(TRACE_ID);
    expect(ids.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(ids.spanId).not.toBe(CALLER_SPAN);
  });

  it("starts a new trace for each request without a valid traceparent", async () => {
    const a = await logged("ctx-2");
    const b = await logged("ctx-3", "garbage");
    for (const ids of [a, b]) {
      expect(ids.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(ids.traceId).not.toBe("0".repeat(32));
    }
    expect(a.traceId).not.toBe(b.traceId);
  });
});
