// With nothing to export (no OTEL_EXPORTER_OTLP_ENDPOINT, the default) the gateway records no
// span, but the job entry still carries a traceparent the worker continues: the caller's trace
// (and its sampled flag) or a new, sampled one.
import { afterAll, beforeAll, expect, it } from "vitest";
import { authed } from "../support/app.js";
import { expectContract, fieldMap, type GatewayUnderTest, IRIS, startGateway } from "./helpers.js";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN = "b7ad6b7169203331";

let stack: GatewayUnderTest;

beforeAll(async () => {
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  stack = await startGateway();
});

afterAll(async () => {
  await stack.close();
});

/** POSTs a job (with `traceparent` when given) and returns the traceparent of its stream entry. */
async function entryTraceparent(traceparent?: string): Promise<string | undefined> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (traceparent !== undefined) headers.traceparent = traceparent;
  const response = await fetch(`${stack.gateway.url}/v1/jobs`, {
    method: "POST",
    headers: authed(headers),
    body: JSON.stringify(IRIS),
  });
  expect(response.status).toBe(202);
  const { id } = (await response.json()) as { id: string };
  const entries = await stack.redis.xrange("{jobs:0}:predict", "-", "+");
  const entry = entries.map(([, flat]) => fieldMap(flat)).find((fields) => fields.job_id === id);
  expectContract("job-entry", entry);
  return entry?.traceparent;
}

it("carries the caller's trace into the job entry, with the gateway's span id and the caller's flags", async () => {
  for (const flags of ["01", "00"]) {
    const carried = await entryTraceparent(`00-${TRACE_ID}-${CALLER_SPAN}-${flags}`);
    expect(carried).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-${flags}$`));
    expect(carried).not.toContain(CALLER_SPAN);
  }
});

it("starts a sampled trace for a job posted without traceparent", async () => {
  const [a, b] = [await entryTraceparent(), await entryTraceparent()];
  for (const carried of [a, b]) expect(carried).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  expect(a?.slice(3, 35)).not.toBe(b?.slice(3, 35));
});
