import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { authed, type RunningApp, startApp } from "../support/app.js";
import { type RedisServer, startRedis } from "../support/redis.js";
import { expectContract, type FakeMl, IRIS, PREDICTION, startFakeMl, workerFinishes } from "./helpers.js";

const MAX_BACKLOG = 3;
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let server: RedisServer;
let redis: Redis;
let ml: FakeMl;
let gateway: RunningApp;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.url);
  ml = await startFakeMl();
  gateway = await startApp({
    REDIS_URL: server.url,
    ML_URL: ml.url,
    JOBS_MAX_BACKLOG: String(MAX_BACKLOG),
    RATE_LIMIT_MAX: "10000",
  });
});

afterAll(async () => {
  await gateway?.close();
  redis?.disconnect();
  await ml?.close();
  await server?.stop();
});

// Every test starts with an empty work queue (as a drained one would be).
beforeEach(async () => {
  await redis.del("jobs:predict");
  await redis.xgroup("CREATE", "jobs:predict", "ml-workers", "0", "MKSTREAM");
});

const enqueue = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${gateway.url}/v1/jobs`, {
    method: "POST",
    headers: authed({ "content-type": "application/json", ...headers }),
    body: JSON.stringify(body),
  });

const fields = (flat: string[]): Record<string, string> => {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
};

describe("POST /v1/jobs", () => {
  it("writes the job hash, the work entry and the queued event, and answers 202", async () => {
    const before = Date.now();
    const res = await enqueue(IRIS, { "x-request-id": "job-req-1" });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { id: string };
    expectContract("job-accepted", body);
    expect(body.id).toMatch(JOB_ID);
    expect(res.headers.get("location")).toBe(`/v1/jobs/${body.id}`);

    const hash = await redis.hgetall(`job:${body.id}`);
    expect(hash).toMatchObject({ status: "queued", request_id: "job-req-1" });
    expect(Number(hash.created_at)).toBeGreaterThanOrEqual(before);
    const ttl = await redis.ttl(`job:${body.id}`);
    expect(ttl).toBeGreaterThan(86_000);

    const entries = await redis.xrange("jobs:predict", "-", "+");
    expect(entries).toHaveLength(1);
    const entry = fields(entries[0]?.[1] ?? []);
    expectContract("job-entry", entry);
    expect(entry).toMatchObject({ v: "1", job_id: body.id, type: "predict", request_id: "job-req-1" });
    expect(entry.created_at).toBe(hash.created_at);
    const payload: unknown = JSON.parse(entry.payload ?? "");
    expectContract("predict-request", payload);
    expect(payload).toEqual(IRIS);

    const [last] = await redis.xrevrange("jobs:events", "+", "-", "COUNT", 1);
    const eventEntry = fields(last?.[1] ?? []);
    expect(eventEntry.id).toBe(body.id);
    const event: unknown = JSON.parse(eventEntry.event ?? "");
    expectContract("job-event", event);
    expect(event).toMatchObject({ id: body.id, type: "queued", status: "queued" });

    // The group sees it as waiting work.
    const [group] = (await redis.xinfo("GROUPS", "jobs:predict")) as unknown[][];
    expect(group?.[group.indexOf("lag") + 1]).toBe(1);
  });

  it("400 on an invalid body, nothing enqueued", async () => {
    const res = await enqueue({ features: [1, 2] });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("validation_error");
    expect(await redis.xlen("jobs:predict")).toBe(0);
  });

  it("the same Idempotency-Key returns the first job's id and enqueues once", async () => {
    const first = await enqueue(IRIS, { "idempotency-key": "order-42" });
    const second = await enqueue(IRIS, { "idempotency-key": "order-42" });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    const a = (await first.json()) as { id: string };
    const b = (await second.json()) as { id: string };
    expect(b.id).toBe(a.id);
    expect(second.headers.get("location")).toBe(`/v1/jobs/${a.id}`);
    expect(await redis.xlen("jobs:predict")).toBe(1);
    expect(await redis.get("idem:order-42")).toBe(a.id);
    expect(await redis.ttl("idem:order-42")).toBeGreaterThan(86_000);

    const other = (await (await enqueue(IRIS, { "idempotency-key": "order-43" })).json()) as { id: string };
    expect(other.id).not.toBe(a.id);
    expect(await redis.xlen("jobs:predict")).toBe(2);
  });

  it("rejects an oversized Idempotency-Key", async () => {
    const res = await enqueue(IRIS, { "idempotency-key": "k".repeat(129) });
    expect(res.status).toBe(400);
    expect(await redis.xlen("jobs:predict")).toBe(0);
  });

  it("503 with Retry-After once lag + pending exceeds JOBS_MAX_BACKLOG", async () => {
    for (let i = 0; i <= MAX_BACKLOG; i += 1) expect((await enqueue(IRIS)).status).toBe(202);
    const res = await enqueue(IRIS, { "x-request-id": "shed-1" });
    expect(res.status).toBe(503);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await res.json()).toEqual({
      error: { code: "backlog_full", message: expect.any(String), requestId: "shed-1" },
    });
    expect(await redis.xlen("jobs:predict")).toBe(MAX_BACKLOG + 1);

    // Delivered but unacknowledged entries count too; acknowledged ones do not.
    const read = (await redis.xreadgroup("GROUP", "ml-workers", "w1", "COUNT", 2, "STREAMS", "jobs:predict", ">")) as
      | [string, [string, string[]][]][]
      | null;
    expect((await enqueue(IRIS)).status).toBe(503);
    const ids = (read?.[0]?.[1] ?? []).map(([id]) => id);
    await redis.xack("jobs:predict", "ml-workers", ...ids);
    expect((await enqueue(IRIS)).status).toBe(202);
  });
});

describe("GET /v1/jobs/:id", () => {
  it("shows a queued job, then its result", async () => {
    const { id } = (await (await enqueue(IRIS)).json()) as { id: string };
    const queued = await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed() });
    expect(queued.status).toBe(200);
    const queuedBody = await queued.json();
    expectContract("job-status", queuedBody);
    expect(queuedBody).toEqual({ id, status: "queued" });

    await workerFinishes(redis, id, "done");
    const done = await (await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed() })).json();
    expectContract("job-status", done);
    expect(done).toEqual({ id, status: "done", result: PREDICTION });
  });

  it("shows a failed job's error", async () => {
    const { id } = (await (await enqueue(IRIS)).json()) as { id: string };
    await workerFinishes(redis, id, "failed");
    const failed = await (await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed() })).json();
    expectContract("job-status", failed);
    expect(failed).toEqual({ id, status: "failed", error: "model exploded" });
  });

  it("404 in the shared error shape for an unknown job", async () => {
    const id = "0b6e4f0e-8d3c-4d8e-9a53-2f1f7f3f9c10";
    const res = await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed({ "x-request-id": "nf-1" }) });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: { code: "not_found", message: expect.any(String), requestId: "nf-1" } });
  });

  it("400 for an id that is not a job id", async () => {
    const res = await fetch(`${gateway.url}/v1/jobs/not-a-uuid`, { headers: authed() });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("validation_error");
  });

  it("needs an API key", async () => {
    const res = await fetch(`${gateway.url}/v1/jobs/0b6e4f0e-8d3c-4d8e-9a53-2f1f7f3f9c10`);
    expect(res.status).toBe(401);
  });
});
