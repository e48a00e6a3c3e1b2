import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { JobAccepted, JobEvent, JobStatus, PredictRequest, PredictResponse } from "../../src/ml/schemas.js";
import { API_KEY, authed, type RunningApp, startApp } from "../support/app.js";
import type { RedisServer } from "../support/redis.js";
import {
  constraints,
  contract,
  expectContract,
  type FakeMl,
  type GatewayUnderTest,
  IRIS,
  PREDICTION,
  startGateway,
} from "./helpers.js";

let stack: GatewayUnderTest;
let redis: RedisServer;
let ml: FakeMl;
let gateway: RunningApp;

beforeAll(async () => {
  stack = await startGateway({ ML_API_KEY: "ml-secret", ML_TIMEOUT_MS: "300" });
  ({ server: redis, ml, gateway } = stack);
});

afterAll(() => stack?.close());

beforeEach(() => {
  ml.behaviour = "ok";
  ml.ready = true;
  ml.calls.length = 0;
  ml.probes.length = 0;
});

const predict = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${gateway.url}/v1/predict`, {
    method: "POST",
    headers: authed({ "content-type": "application/json", ...headers }),
    body: JSON.stringify(body),
  });

describe("contracts", () => {
  it.each([
    ["predict-request", PredictRequest],
    ["predict-response", PredictResponse],
    ["job-accepted", JobAccepted],
    ["job-status", JobStatus],
    ["job-event", JobEvent],
  ])("the gateway's TypeBox schema is contracts/%s.schema.json", (name, schema) => {
    expect(constraints(schema)).toEqual(constraints(contract(name)));
  });
});

describe("POST /v1/predict", () => {
  it("proxies to the ML service with its key and the request id", async () => {
    const res = await predict(IRIS, { "x-request-id": "pred-1" });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toEqual(PREDICTION);
    expectContract("predict-response", body);
    expect(ml.calls).toHaveLength(1);
    expect(ml.calls[0]?.body).toEqual(IRIS);
    expectContract("predict-request", ml.calls[0]?.body);
    expect(ml.calls[0]?.headers["x-api-key"]).toBe("ml-secret");
    expect(ml.calls[0]?.headers["x-request-id"]).toBe("pred-1");
    expect(res.headers.get("x-request-id")).toBe("pred-1");
  });

  it("needs an API key", async () => {
    const res = await fetch(`${gateway.url}/v1/predict`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(IRIS),
    });
    expect(res.status).toBe(401);
    expect(ml.calls).toHaveLength(0);
  });

  it.each([
    ["three features", { features: [1, 2, 3] }],
    ["a value out of range", { features: [1, 2, 3, 101] }],
    ["a string", { features: [1, 2, 3, "4"] }],
    ["an extra key", { features: [1, 2, 3, 4], debug: true }],
  ])("400 for %s, without calling the ML service", async (_name, body) => {
    const res = await predict(body, { "x-request-id": "pred-400" });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: { code: "validation_error", message: expect.any(String), requestId: "pred-400" },
    });
    expect(ml.calls).toHaveLength(0);
  });

  it("passes an ML validation error through as 422", async () => {
    ml.behaviour = "reject-422";
    const res = await predict(IRIS, { "x-request-id": "pred-422" });
    expect(res.status).toBe(422);
    expect(await res.json()).toEqual({
      error: { code: "validation_error", message: "features: too large", requestId: "pred-422" },
    });
  });

  it.each([
    ["an ML 5xx", "error-500"],
    ["a dropped connection", "drop"],
    ["a response that breaks the contract", "invalid-response"],
  ] as const)("502 on %s", async (_name, behaviour) => {
    ml.behaviour = behaviour;
    const res = await predict(IRIS, { "x-request-id": "pred-502" });
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({
      error: { code: "bad_gateway", message: expect.any(String), requestId: "pred-502" },
    });
  });

  it("504 when the ML service does not answer within ML_TIMEOUT_MS", async () => {
    ml.behaviour = "slow";
    const started = Date.now();
    const res = await predict(IRIS);
    expect(res.status).toBe(504);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("gateway_timeout");
    expect(Date.now() - started).toBeLessThan(1_900);
  });

  it("503 + Retry-After when the ML service is down; the gateway stays ready, /readyz?verbose names it", async () => {
    // The same limit as the other instance: both take leases of this key's budget in Redis.
    const other = await startApp({
      REDIS_URL: redis.url,
      ML_URL: "http://127.0.0.1:9",
      API_KEYS: API_KEY,
      RATE_LIMIT_MAX: "10000",
    });
    try {
      expect((await predict(IRIS)).status).toBe(200);
      const res = await fetch(`${other.url}/v1/predict`, {
        method: "POST",
        headers: authed({ "content-type": "application/json" }),
        body: JSON.stringify(IRIS),
      });
      expect(res.status).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("service_unavailable");
      expect(await (await fetch(`${other.url}/readyz`)).json()).toEqual({ status: "ready" });
      const ready = await fetch(`${other.url}/readyz?verbose`);
      expect(ready.status).toBe(200);
      const body = (await ready.json()) as { checks: Record<string, string> };
      expect(body.checks.ml).not.toBe("ok");
      expect(body.checks["job-events"]).toBe("ok");
    } finally {
      await other.close();
    }
  });

  it("/readyz?verbose checks the ML service's /readyz (with the key) and the job bus", async () => {
    expect(await (await fetch(`${gateway.url}/readyz`)).json()).toEqual({ status: "ready" });
    expect(ml.probes).toEqual([]);
    const res = await fetch(`${gateway.url}/readyz?verbose`);
    const body = (await res.json()) as { checks: Record<string, string> };
    expect(res.status).toBe(200);
    expect(body.checks).toMatchObject({ ml: "ok", "job-events": "ok" });
    expect(ml.probes.map(({ path }) => path)).toEqual(["/readyz"]);
    expect(ml.probes[0]?.headers["x-api-key"]).toBe("ml-secret");
  });

  it("/readyz stays 200 while the ML service is live but not ready; ?verbose says so", async () => {
    ml.ready = false;
    const res = await fetch(`${gateway.url}/readyz?verbose`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { checks: Record<string, string> };
    expect(body.checks.ml).toMatch(/readyz answered 503/);
  });
});
