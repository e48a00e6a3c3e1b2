import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { API_KEY, authed, type RunningApp, startApp } from "../support/app.js";
import {
  expectContract,
  fieldMap,
  type GatewayUnderTest,
  IRIS,
  PREDICTION,
  startGateway,
  workerFinishes,
} from "./helpers.js";

const MAX_BACKLOG = 3;
const OTHER_KEY = "second-client-key-42-0123456789abcdefghijklmnopqrstuv";
const RETENTION_MS = 60_000;
/** uuid-shaped, version 8: the gateway's tagged job ids (src/ml/job-id.ts). */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
// BUS_PARTITIONS=1: every key of the bus lives under the hash tag {jobs:0}.
const JOBS = "{jobs:0}:predict";
const EVENTS = "{jobs:0}:events";
const DEADLINES = "{jobs:0}:deadlines";
const jobKey = (id: string): string => `{jobs:0}:job:${id}`;
const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");
const idemKey = (apiKey: string, key: string): string => `idem:${sha256(apiKey).slice(0, 16)}:${key}`;

let stack: GatewayUnderTest;
let redis: Redis;
let gateway: RunningApp;

beforeAll(async () => {
  stack = await startGateway({
    API_KEYS: `${API_KEY},${OTHER_KEY}`,
    JOBS_MAX_BACKLOG: String(MAX_BACKLOG),
    JOB_DEADLINE_MS: "120000",
    EVENTS_RETENTION_MS: String(RETENTION_MS),
  });
  ({ redis, gateway } = stack);
});

afterAll(() => stack?.close());

// Every test starts with an empty work queue (as a drained one would be).
beforeEach(async () => {
  await redis.del(JOBS, DEADLINES);
  await redis.xgroup("CREATE", JOBS, "ml-workers", "0", "MKSTREAM");
});

const enqueue = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${gateway.url}/v1/jobs`, {
    method: "POST",
    headers: authed({ "content-type": "application/json", ...headers }),
    body: JSON.stringify(body),
  });

/** Records every command Redis executes while `action` runs (MONITOR on its own connection). */
async function monitored(action: () => Promise<void>): Promise<string[][]> {
  const monitor = await redis.monitor();
  const commands: string[][] = [];
  monitor.on("monitor", (_time: string, args: string[]) => commands.push(args));
  try {
    await action();
    // MONITOR output trails the replies a little: wait for the queued event, the enqueue's last write.
    const deadline = Date.now() + 2_000;
    const queuedEvent = ([name, key]: string[]) => name?.toLowerCase() === "xadd" && key === EVENTS;
    while (!commands.some(queuedEvent) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    monitor.disconnect();
  }
  return commands;
}

describe("POST /v1/jobs", () => {
  it("writes hash, deadline, job entry and queued event in one script call, and answers 202", async () => {
    const before = Date.now();
    let res: Response | undefined;
    const commands = await monitored(async () => {
      res = await enqueue(IRIS, { "x-request-id": "job-req-1" });
    });
    expect(res?.status).toBe(202);
    const body = (await res?.json()) as { id: string };
    expectContract("job-accepted", body);
    expect(body.id).toMatch(JOB_ID);
    expect(res?.headers.get("location")).toBe(`/v1/jobs/${body.id}`);

    // One round trip: a single script call (EVALSHA, or EVAL after NOSCRIPT) making exactly these
    // writes, in this order, on keys of the job's partition only (one cluster slot).
    const names = commands.map(([name]) => (name ?? "").toLowerCase());
    expect(names).not.toContain("multi");
    const hset = names.indexOf("hset");
    expect(hset).toBeGreaterThan(0);
    expect(["evalsha", "eval"]).toContain(names[hset - 1]);
    expect(names.slice(hset, hset + 5)).toEqual(["hset", "expire", "zadd", "xadd", "xadd"]);
    const script = commands[hset - 1] ?? [];
    expect(script[2]).toBe("4");
    for (const key of script.slice(3, 7)) expect(key.startsWith("{jobs:0}:")).toBe(true);
    const [jobsXadd, eventsXadd] = commands.slice(hset + 3, hset + 5);
    // Producers never trim the job stream (an untrimmed entry can never be lost while pending).
    expect(jobsXadd?.[1]).toBe(JOBS);
    expect(jobsXadd?.map((arg) => arg.toUpperCase())).not.toContain("MAXLEN");
    expect(jobsXadd?.map((arg) => arg.toUpperCase())).not.toContain("MINID");
    // The events stream is trimmed by age: MINID ~ now - EVENTS_RETENTION_MS.
    expect(eventsXadd?.slice(1, 4)).toEqual([EVENTS, "MINID", "~"]);
    const minId = Number(eventsXadd?.[4]);
    expect(minId).toBeGreaterThanOrEqual(before - RETENTION_MS);
    expect(minId).toBeLessThanOrEqual(Date.now() - RETENTION_MS);

    const hash = await redis.hgetall(jobKey(body.id));
    expect(hash).toMatchObject({ status: "queued", request_id: "job-req-1" });
    expect(Number(hash.created_at)).toBeGreaterThanOrEqual(before);
    expect(Number(hash.deadline)).toBe(Number(hash.created_at) + 120_000);
    expect(await redis.ttl(jobKey(body.id))).toBeGreaterThan(86_000);
    expect(await redis.zscore(DEADLINES, body.id)).toBe(hash.deadline);

    const entries = await redis.xrange(JOBS, "-", "+");
    expect(entries).toHaveLength(1);
    const entry = fieldMap(entries[0]?.[1] ?? []);
    expectContract("job-entry", entry);
    expect(entry).toMatchObject({ v: "1", job_id: body.id, type: "predict", request_id: "job-req-1" });
    expect(entry.created_at).toBe(hash.created_at);
    const payload: unknown = JSON.parse(entry.payload ?? "");
    expectContract("predict-request", payload);
    expect(payload).toEqual(IRIS);

    const [last] = await redis.xrevrange(EVENTS, "+", "-", "COUNT", 1);
    const eventEntry = fieldMap(last?.[1] ?? []);
    expect(eventEntry.id).toBe(body.id);
    const event: unknown = JSON.parse(eventEntry.event ?? "");
    expectContract("job-event", event);
    expect(event).toMatchObject({ id: body.id, type: "queued", status: "queued" });

    // The group sees it as waiting work.
    const [group] = (await redis.xinfo("GROUPS", JOBS)) as unknown[][];
    expect(group?.[group.indexOf("lag") + 1]).toBe(1);
  });

  it("still enqueues after Redis lost its script cache (NOSCRIPT falls back to EVAL)", async () => {
    expect((await enqueue(IRIS)).status).toBe(202);
    await redis.script("FLUSH");
    const res = await enqueue(IRIS);
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(await redis.hget(jobKey(id), "status")).toBe("queued");
    const entries = await redis.xrange(JOBS, "-", "+");
    expect(entries.map(([, fields]) => fieldMap(fields).job_id)).toContain(id);
  });

  it("trims events older than EVENTS_RETENTION_MS, keeps recent ones", async () => {
    await redis.del(EVENTS);
    const old = Date.now() - RETENTION_MS - 60_000;
    // 100 entries fill one stream node; MINID ~ removes whole nodes that are entirely too old.
    for (let i = 0; i < 150; i += 1) await redis.xadd(EVENTS, `${old}-${i}`, "id", "old", "event", "{}");
    const recent = `${Date.now() - 1_000}-0`;
    await redis.xadd(EVENTS, recent, "id", "recent", "event", "{}");
    expect((await enqueue(IRIS)).status).toBe(202);
    const [first] = await redis.xrange(EVENTS, "-", "+", "COUNT", 1);
    expect(first?.[0]).toBe(`${old}-100`);
    expect(await redis.xlen(EVENTS)).toBe(52);
    expect(await redis.xrange(EVENTS, recent, recent)).toHaveLength(1);
  });

  it("400 on an invalid body, nothing enqueued", async () => {
    const res = await enqueue({ features: [1, 2] });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("validation_error");
    expect(await redis.xlen(JOBS)).toBe(0);
  });

  it("rejects an oversized Idempotency-Key", async () => {
    const res = await enqueue(IRIS, { "idempotency-key": "k".repeat(129) });
    expect(res.status).toBe(400);
    expect(await redis.xlen(JOBS)).toBe(0);
  });

  it("503 with Retry-After once lag + pending reaches JOBS_MAX_BACKLOG", async () => {
    for (let i = 0; i < MAX_BACKLOG; i += 1) expect((await enqueue(IRIS)).status).toBe(202);
    const res = await enqueue(IRIS, { "x-request-id": "shed-1" });
    expect(res.status).toBe(503);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await res.json()).toEqual({
      error: { code: "backlog_full", message: expect.any(String), requestId: "shed-1" },
    });
    expect(await redis.xlen(JOBS)).toBe(MAX_BACKLOG);

    // Delivered but unacknowledged entries count too; acknowledged ones do not.
    const read = (await redis.xreadgroup("GROUP", "ml-workers", "w1", "COUNT", 2, "STREAMS", JOBS, ">")) as
      | [string, [string, string[]][]][]
      | null;
    expect((await enqueue(IRIS)).status).toBe(503);
    const ids = (read?.[0]?.[1] ?? []).map(([id]) => id);
    await redis.xack(JOBS, "ml-workers", ...ids);
    expect((await enqueue(IRIS)).status).toBe(202);
  });
});

describe("a burst at the backlog limit", () => {
  it("admits up to JOBS_MAX_BACKLOG of requests that arrive together, not one per request in flight", async () => {
    // The backlog estimate is older than its cache: the burst's first request measures it.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const statuses = await Promise.all(Array.from({ length: 40 }, async () => (await enqueue(IRIS)).status));
    expect(statuses.filter((s) => s === 202)).toHaveLength(MAX_BACKLOG);
    expect(statuses.filter((s) => s === 503)).toHaveLength(40 - MAX_BACKLOG);
    expect(await redis.xlen(JOBS)).toBe(MAX_BACKLOG);
  });
});

describe("time comes from Redis", () => {
  it("created_at, deadline and the queued event are Redis TIME, whatever the gateway's clock says", async () => {
    // A gateway whose clock runs 70 s ahead (a fresh one: the clock offset is measured on first use).
    const skewed = await startApp({
      REDIS_URL: stack.server.url,
      ML_URL: stack.ml.url,
      API_KEYS: API_KEY,
      JOB_DEADLINE_MS: "120000",
      // The same limit as the other instance: both take leases of this key's budget in Redis.
      RATE_LIMIT_MAX: "10000",
    });
    const realNow = Date.now.bind(Date);
    const spy = vi.spyOn(Date, "now").mockImplementation(() => realNow() + 70_000);
    try {
      const res = await fetch(`${skewed.url}/v1/jobs`, {
        method: "POST",
        headers: authed({ "content-type": "application/json" }),
        body: JSON.stringify(IRIS),
      });
      expect(res.status).toBe(202);
      const { id } = (await res.json()) as { id: string };
      const [seconds, micros] = await redis.time();
      const redisNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      const job = await redis.hgetall(jobKey(id));
      expect(Math.abs(Number(job.created_at) - redisNow)).toBeLessThan(5_000);
      expect(Number(job.deadline) - Number(job.created_at)).toBe(120_000);
      expect(Number(await redis.zscore(DEADLINES, id))).toBe(Number(job.deadline));
      const [, fields] = (await redis.xrevrange(EVENTS, "+", "-", "COUNT", 1))[0] ?? [];
      const queued = JSON.parse(fieldMap(fields ?? []).event ?? "{}") as { id: string; ts: number };
      expect(queued.id).toBe(id);
      expect(queued.ts).toBe(Number(job.created_at));
    } finally {
      spy.mockRestore();
      await skewed.close();
    }
  });
});

describe("Idempotency-Key", () => {
  it("the same key and body return the first job's id and enqueue once", async () => {
    const first = await enqueue(IRIS, { "idempotency-key": "order-42" });
    const second = await enqueue(IRIS, { "idempotency-key": "order-42" });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    const a = (await first.json()) as { id: string };
    const b = (await second.json()) as { id: string };
    expect(b.id).toBe(a.id);
    expect(second.headers.get("location")).toBe(`/v1/jobs/${a.id}`);
    expect(await redis.xlen(JOBS)).toBe(1);
    // Scoped to the API key, bound to the body: "<job id> <sha256 of the canonical body>".
    const key = idemKey(API_KEY, "order-42");
    expect(await redis.get(key)).toBe(`${a.id} ${sha256(JSON.stringify(IRIS))}`);
    expect(await redis.ttl(key)).toBeGreaterThan(86_000);

    const other = (await (await enqueue(IRIS, { "idempotency-key": "order-43" })).json()) as { id: string };
    expect(other.id).not.toBe(a.id);
    expect(await redis.xlen(JOBS)).toBe(2);
  });

  it("422 for the same key with another body; nothing enqueued", async () => {
    const first = (await (await enqueue(IRIS, { "idempotency-key": "order-44" })).json()) as { id: string };
    const res = await enqueue(
      { features: [6.7, 3, 5.2, 2.3] },
      { "idempotency-key": "order-44", "x-request-id": "i-1" },
    );
    expect(res.status).toBe(422);
    expect(await res.json()).toEqual({
      error: { code: "idempotency_conflict", message: expect.any(String), requestId: "i-1" },
    });
    expect(await redis.xlen(JOBS)).toBe(1);
    const again = (await (await enqueue(IRIS, { "idempotency-key": "order-44" })).json()) as { id: string };
    expect(again.id).toBe(first.id);
  });

  it("two API keys choosing the same Idempotency-Key get two jobs", async () => {
    const mine = (await (await enqueue(IRIS, { "idempotency-key": "order-45" })).json()) as { id: string };
    const res = await fetch(`${gateway.url}/v1/jobs`, {
      method: "POST",
      headers: { "x-api-key": OTHER_KEY, "content-type": "application/json", "idempotency-key": "order-45" },
      body: JSON.stringify(IRIS),
    });
    expect(res.status).toBe(202);
    const theirs = (await res.json()) as { id: string };
    expect(theirs.id).not.toBe(mine.id);
    expect(await redis.xlen(JOBS)).toBe(2);
    expect(await redis.get(idemKey(OTHER_KEY, "order-45"))).toMatch(new RegExp(`^${theirs.id} `));
  });

  it("a failed transaction leaves no key behind: the retry enqueues", async () => {
    // Break the transaction: ZADD on a key of the wrong type fails inside EXEC.
    await redis.set(DEADLINES, "not a sorted set");
    const failed = await enqueue(IRIS, { "idempotency-key": "order-46", "x-request-id": "tx-1" });
    expect(failed.status).toBe(503);
    expect(Number(failed.headers.get("retry-after"))).toBeGreaterThan(0);
    const body = (await failed.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("service_unavailable");
    expect(body.error.message).not.toMatch(/WRONGTYPE|ReplyError|Error:/);
    expect(await redis.exists(idemKey(API_KEY, "order-46"))).toBe(0);

    await redis.del(DEADLINES);
    const retried = await enqueue(IRIS, { "idempotency-key": "order-46" });
    expect(retried.status).toBe(202);
    const { id } = (await retried.json()) as { id: string };
    expect(await redis.hget(jobKey(id), "status")).toBe("queued");
  });

  it("a key left by a request whose job was never written is taken over once it is stale", async () => {
    const ghost = "0b6e4f0e-8d3c-4d8e-9a53-2f1f7f3f9c10";
    const value = `${ghost} ${sha256(JSON.stringify(IRIS))}`;
    // Fresh (a request in flight): 409, Retry-After until the key leaves its 10 s in-flight window.
    await redis.set(idemKey(API_KEY, "order-47"), value, "EX", 86_400);
    const busy = await enqueue(IRIS, { "idempotency-key": "order-47" });
    expect(busy.status).toBe(409);
    expect(busy.headers.get("retry-after")).toBe("10");
    // 7 s into the window: 3 s left (rounded up), not a flat 1 s that would only earn another 409.
    await redis.set(idemKey(API_KEY, "order-47"), value, "PX", 86_400_000 - 7_000);
    const later = await enqueue(IRIS, { "idempotency-key": "order-47" });
    expect(later.status).toBe(409);
    expect(later.headers.get("retry-after")).toBe("3");
    // Older than the in-flight window: the request gets a job of its own.
    await redis.set(idemKey(API_KEY, "order-47"), value, "EX", 86_000);
    const res = await enqueue(IRIS, { "idempotency-key": "order-47" });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(id).not.toBe(ghost);
    expect(await redis.get(idemKey(API_KEY, "order-47"))).toMatch(new RegExp(`^${id} `));
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
    expect(await redis.zscore(DEADLINES, id)).toBeNull();
  });

  it("shows a failed job's public error", async () => {
    const { id } = (await (await enqueue(IRIS)).json()) as { id: string };
    await workerFinishes(redis, id, "failed", { error: "deadline exceeded" });
    const failed = await (await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed() })).json();
    expectContract("job-status", failed);
    expect(failed).toEqual({ id, status: "failed", error: "deadline exceeded" });
  });

  it("never shows exception text, whatever the hash holds", async () => {
    const { id } = (await (await enqueue(IRIS)).json()) as { id: string };
    await workerFinishes(redis, id, "failed", { error: "ValueError: could not convert string to float: 'x'" });
    const failed = await (await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed() })).json();
    expect(failed).toEqual({ id, status: "failed", error: "job failed" });
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
