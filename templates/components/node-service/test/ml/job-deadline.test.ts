// A job left queued or running past its deadline ends failed ("deadline exceeded") even when no
// worker runs: the gateway fails it when it reads it (GET, a watcher's snapshot) and in a periodic
// sweep, writing exactly what a worker's sweep writes (worker/housekeeping.py), in one script that
// never touches a job that finished first.
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authed, type RunningApp } from "../support/app.js";
import {
  eventually,
  expectContract,
  fieldMap,
  type GatewayUnderTest,
  IRIS,
  openSse,
  PREDICTION,
  startGateway,
  workerFinishes,
  workerStarts,
} from "./helpers.js";

const DEADLINE_MS = 1_000;
const EVENTS = "{jobs:0}:events";
const DEADLINES = "{jobs:0}:deadlines";
const jobKey = (id: string): string => `{jobs:0}:job:${id}`;

let stack: GatewayUnderTest;
let redis: Redis;
let gateway: RunningApp;

beforeAll(async () => {
  // No worker runs here: nothing but the gateway can end a job.
  stack = await startGateway({ JOB_DEADLINE_MS: String(DEADLINE_MS), WATCH_RECHECK_MS: "60000" });
  ({ redis, gateway } = stack);
});

afterAll(() => stack?.close());

async function enqueue(): Promise<string> {
  const res = await fetch(`${gateway.url}/v1/jobs`, {
    method: "POST",
    headers: authed({ "content-type": "application/json" }),
    body: JSON.stringify(IRIS),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

const getJob = async (id: string) => {
  const res = await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed() });
  expect(res.status).toBe(200);
  return res.json();
};

/** Waits until Redis' clock (TIME, the clock of deadlines) is past the job's deadline. */
async function pastDeadline(id: string): Promise<void> {
  const deadline = Number(await redis.hget(jobKey(id), "deadline"));
  expect(deadline).toBeGreaterThan(0);
  await eventually(
    async () => {
      const [seconds, micros] = await redis.time();
      return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) > deadline;
    },
    DEADLINE_MS + 2_000,
    "the job's deadline",
  );
}

/** The job's entries in the events stream, as parsed job events (raw JSON text kept too). */
async function events(id: string): Promise<{ text: string; event: Record<string, unknown> }[]> {
  const entries = await redis.xrange(EVENTS, "-", "+");
  return entries
    .map(([, flat]) => fieldMap(flat))
    .filter((fields) => fields.id === id)
    .map((fields) => ({
      text: fields.event ?? "",
      event: JSON.parse(fields.event ?? "{}") as Record<string, unknown>,
    }));
}

describe("jobs past their deadline with no worker", () => {
  it("GET answers failed/'deadline exceeded' and writes what a worker's sweep writes", async () => {
    const id = await enqueue();
    await pastDeadline(id);
    const before = Number(await redis.hget(jobKey(id), "deadline"));

    expect(await getJob(id)).toEqual({ id, status: "failed", error: "deadline exceeded" });

    // The record: as worker/housekeeping.py's _fail (status, error, finished_at, processed + 1).
    const hash = await redis.hgetall(jobKey(id));
    expect(hash).toMatchObject({ status: "failed", error: "deadline exceeded", processed: "1" });
    expect(Number(hash.finished_at)).toBeGreaterThanOrEqual(before);
    expect(await redis.ttl(jobKey(id))).toBeGreaterThan(0);
    // It left the deadlines set: the workers now acknowledge its entry without computing it.
    expect(await redis.zscore(DEADLINES, id)).toBeNull();
    // One `failed` event, the worker's JSON (bus.event_json: id, type, status, ts, error), after `queued`.
    const written = await events(id);
    expect(written.map(({ event }) => event.type)).toEqual(["queued", "failed"]);
    const failed = written[1];
    expect(failed?.text).toBe(
      JSON.stringify({
        id,
        type: "failed",
        status: "failed",
        ts: Number(hash.finished_at),
        error: "deadline exceeded",
      }),
    );
    expectContract("job-event", failed?.event);

    // Read again (and swept again): nothing more is written.
    expect(await getJob(id)).toEqual({ id, status: "failed", error: "deadline exceeded" });
    expect(await redis.hget(jobKey(id), "processed")).toBe("1");
    expect((await events(id)).length).toBe(2);
  });

  it("a running job is failed too; a job done just before its deadline is never touched", async () => {
    const running = await enqueue();
    await workerStarts(redis, running);
    const done = await enqueue();
    await workerFinishes(redis, done, "done");
    const doneHash = await redis.hgetall(jobKey(done));
    await pastDeadline(done);
    await pastDeadline(running);

    expect(await getJob(running)).toEqual({ id: running, status: "failed", error: "deadline exceeded" });
    expect(await getJob(done)).toEqual({ id: done, status: "done", result: PREDICTION });
    expect(await redis.hgetall(jobKey(done))).toEqual(doneHash);
    expect((await events(done)).map(({ event }) => event.type)).toEqual(["queued", "done"]);
  });

  it("a job within its deadline costs GET no more than its HGETALL (no script, no TIME)", async () => {
    const id = await enqueue();
    const monitor = await redis.monitor();
    const commands: string[] = [];
    monitor.on("monitor", (_time: string, args: string[]) => commands.push(String(args[0]).toLowerCase()));
    try {
      expect(await getJob(id)).toEqual({ id, status: "queued" });
      await eventually(async () => commands.includes("hgetall"), 2_000, "the HGETALL");
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      monitor.disconnect();
    }
    expect(commands.filter((name) => name !== "zrangebyscore")).toEqual(["hgetall"]);
  });

  it("a watcher is told without any GET: its SSE stream ends with the failed event (the sweep)", async () => {
    const id = await enqueue();
    const sse = await openSse(`${gateway.url}/v1/jobs/${id}/events`, authed());
    try {
      expect((await sse.next())?.event).toBe("queued");
      // The deadline (1 s) plus at most one sweep interval (5 s).
      const failed = await sse.next(9_000);
      expect(failed?.event).toBe("failed");
      expect(failed?.data).toMatchObject({ id, status: "failed", error: "deadline exceeded" });
      await sse.ended;
      expect(await sse.next()).toBeNull();
    } finally {
      sse.close();
    }
    expect(await redis.hget(jobKey(id), "status")).toBe("failed");
  }, 15_000);

  it("a lost job (hash evicted) is never re-created: the sweep only drops it, GET answers 410", async () => {
    const id = await enqueue();
    await pastDeadline(id);
    // What maxmemory-policy volatile-* eviction does: job hashes are the only keys with a TTL.
    await redis.del(jobKey(id));
    // At most one sweep interval (5 s): the id leaves `deadlines`, no hash without owner or TTL appears.
    await eventually(async () => (await redis.zscore(DEADLINES, id)) === null, 9_000, "the sweep");
    expect(await redis.exists(jobKey(id))).toBe(0);
    expect((await events(id)).map(({ event }) => event.type)).toEqual(["queued"]);
    const res = await fetch(`${gateway.url}/v1/jobs/${id}`, { headers: authed() });
    expect(res.status).toBe(410);
    expect(await redis.exists(jobKey(id))).toBe(0);
  }, 15_000);
});
