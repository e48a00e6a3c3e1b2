// A Redis that stops answering (paused with SIGSTOP) or goes away (stopped, then restarted empty):
// job routes answer 503 with Retry-After and no exception text, never 500, and recover with Redis.
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authed, type RunningApp, startApp } from "../support/app.js";
import { type RedisServer, startRedis } from "../support/redis.js";
import {
  eventually,
  type GatewayUnderTest,
  IRIS,
  openSse,
  PREDICTION,
  startGateway,
  workerFinishes,
} from "./helpers.js";

let stack: GatewayUnderTest;
let server: RedisServer;
let redis: Redis;
let gateway: RunningApp;

beforeAll(async () => {
  stack = await startGateway({ WATCH_RECHECK_MS: "60000" });
  ({ server, redis, gateway } = stack);
});

afterAll(() => stack?.close());

const enqueue = (requestId = "outage") =>
  fetch(`${gateway.url}/v1/jobs`, {
    method: "POST",
    headers: authed({ "content-type": "application/json", "x-request-id": requestId }),
    body: JSON.stringify(IRIS),
  });

async function expectUnavailable(res: Response, requestId: string): Promise<void> {
  expect(res.status).toBe(503);
  expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
  expect(await res.json()).toEqual({
    error: { code: "service_unavailable", message: "The job queue is unavailable, retry later", requestId },
  });
}

describe("Redis outage", () => {
  it("a paused Redis: 503 + Retry-After on every job route, then recovery", async () => {
    const created = await enqueue();
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };

    server.pause();
    try {
      const started = Date.now();
      await expectUnavailable(await enqueue("paused-1"), "paused-1");
      expect(Date.now() - started).toBeLessThan(6_000);
      await expectUnavailable(
        await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed({ "x-request-id": "paused-2" }) }),
        "paused-2",
      );
      await expectUnavailable(
        await fetch(`${gateway.url}/v1/jobs/${id}/events`, { headers: authed({ "x-request-id": "paused-3" }) }),
        "paused-3",
      );
      const ready = await fetch(`${gateway.url}/readyz`);
      expect(ready.status).toBe(503);
    } finally {
      server.resume();
    }

    await eventually(async () => (await enqueue()).status === 202, 10_000, "POST /v1/jobs accepted again");
    const status = await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed() });
    expect(status.status).toBe(200);
    await eventually(async () => (await fetch(`${gateway.url}/readyz`)).status === 200, 10_000, "ready again");
  }, 40_000);

  it("a stopped Redis: 503 while it is gone; a client waiting on SSE still gets the final state", async () => {
    const created = await enqueue();
    const { id } = (await created.json()) as { id: string };
    const sse = await openSse(`${gateway.url}/v1/jobs/${id}/events`, authed());
    expect((await sse.next())?.data).toMatchObject({ id, type: "queued" });

    await server.stop();
    await expectUnavailable(await enqueue("stopped-1"), "stopped-1");

    // Redis comes back (empty: no persistence here). The follower reconnects and reads on from its
    // last id, so the worker's commit reaches the waiting client (re-reads are a minute away).
    await server.restart();
    await eventually(async () => (await enqueue()).status === 202, 10_000, "POST /v1/jobs accepted again");
    await workerFinishes(redis, id, "done");
    const done = await sse.next(5_000);
    expect(done?.data).toMatchObject({ id, type: "done", result: PREDICTION });
    expect(await sse.next()).toBeNull();
  }, 40_000);
  it("starts while Redis is down, then serves jobs once it is up", async () => {
    const later = await startRedis();
    await later.stop();
    const started = Date.now();
    const early = await startApp({ REDIS_URL: later.url, ML_URL: stack.ml.url });
    try {
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await fetch(`${early.url}/readyz`)).status).toBe(503);
      const res = await fetch(`${early.url}/v1/jobs`, {
        method: "POST",
        headers: authed({ "content-type": "application/json", "x-request-id": "early-1" }),
        body: JSON.stringify(IRIS),
      });
      await expectUnavailable(res, "early-1");
      await later.restart();
      await eventually(
        async () =>
          (
            await fetch(`${early.url}/v1/jobs`, {
              method: "POST",
              headers: authed({ "content-type": "application/json" }),
              body: JSON.stringify(IRIS),
            })
          ).status === 202,
        10_000,
        "POST /v1/jobs accepted",
      );
      await eventually(async () => (await fetch(`${early.url}/readyz`)).status === 200, 10_000, "ready");
    } finally {
      await early.close();
      await later.stop();
    }
  }, 40_000);
});
