// One trace id from the client's `traceparent` to the job entry the worker continues, and the bus
// metrics of the gateway (jobs accepted, stream lag and pending read at scrape time).
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { configureTracing } from "../../src/observability/tracing.js";
import { authed } from "../support/app.js";
import { expectContract, fieldMap, type GatewayUnderTest, IRIS, startGateway } from "./helpers.js";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const TRACEPARENT = `00-${TRACE_ID}-b7ad6b7169203331-01`;
const spans = new InMemorySpanExporter();
configureTracing("test", spans);

let stack: GatewayUnderTest;

beforeAll(async () => {
  stack = await startGateway();
});

afterAll(async () => {
  await stack.close();
});

it("carries the POST's trace into the job entry", async () => {
  const response = await fetch(`${stack.gateway.url}/v1/jobs`, {
    method: "POST",
    headers: authed({ "content-type": "application/json", traceparent: TRACEPARENT }),
    body: JSON.stringify(IRIS),
  });
  expect(response.status).toBe(202);
  const [post] = spans.getFinishedSpans().filter((span) => span.name === "POST /v1/jobs");
  expect(post?.spanContext().traceId).toBe(TRACE_ID);
  const [[, flat] = ["", []]] = await stack.redis.xrange("{jobs:0}:predict", "-", "+");
  const entry = fieldMap(flat);
  expectContract("job-entry", entry);
  // The worker's parent: the POST's own span, in the client's trace.
  expect(entry.traceparent).toBe(`00-${TRACE_ID}-${post?.spanContext().spanId}-01`);
});

it("carries the trace of POST /v1/predict to the ML service", async () => {
  const response = await fetch(`${stack.gateway.url}/v1/predict`, {
    method: "POST",
    headers: authed({ "content-type": "application/json", traceparent: TRACEPARENT }),
    body: JSON.stringify(IRIS),
  });
  expect(response.status).toBe(200);
  const [post] = spans.getFinishedSpans().filter((span) => span.name === "POST /v1/predict");
  expect(stack.ml.calls.at(-1)?.headers.traceparent).toBe(`00-${TRACE_ID}-${post?.spanContext().spanId}-01`);
});

it("counts accepted jobs and reads lag and pending at scrape time", async () => {
  const text = await stack.gateway.app.metrics.registry.metrics();
  expect(text).toMatch(/^bus_jobs_accepted_total 1$/m);
  expect(text).toMatch(/^bus_stream_lag\{partition="0"\} 1$/m);
  expect(text).toMatch(/^bus_stream_pending\{partition="0"\} 0$/m);
  expect(text).toMatch(
    /http_server_request_duration_seconds_count\{method="POST",route="\/v1\/jobs",status_code="202"\} 1/,
  );
});
