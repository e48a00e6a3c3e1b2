// The jobs a gateway process accepts in one turn of the event loop share one script call (one
// round trip, one script run); each job is still written whole and answered on its own.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ownerId } from "../../src/ml/job-id.js";
import { JobStore } from "../../src/ml/jobs.js";
import { connectRedis, type RedisClient } from "../../src/redis.js";
import { type RedisServer, startRedis } from "../support/redis.js";
import { fieldMap } from "./helpers.js";

const IRIS = { features: [5.1, 3.5, 1.4, 0.2] };
const owner = createHash("sha256").update("batch-test-key-0123456789abcdefghij").digest();

let server: RedisServer;
let redis: RedisClient;

beforeAll(async () => {
  server = await startRedis();
  // Auto-pipelined, as the gateway's client is.
  redis = connectRedis(server.url, { autoPipelining: true });
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

const store = (): JobStore =>
  new JobStore(redis, { partitions: 1, maxBacklog: 100_000, deadlineMs: 60_000, eventsRetentionMs: 60_000 });

/** Script runs so far (EVALSHA, and EVAL after NOSCRIPT). */
async function scriptRuns(): Promise<number> {
  const info = await redis.info("commandstats");
  const calls = (name: string): number => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
  return calls("evalsha") + calls("eval");
}

/** Every part of an enqueued job: hash (owner, TTL), deadline, stream entry, queued event. */
async function expectWhole(ids: string[]): Promise<void> {
  const streamed = new Set((await redis.xrange("{jobs:0}:predict", "-", "+")).map(([, f]) => fieldMap(f).job_id));
  const events = new Set((await redis.xrange("{jobs:0}:events", "-", "+")).map(([, f]) => fieldMap(f).id));
  for (const id of ids) {
    const hash = await redis.hgetall(`{jobs:0}:job:${id}`);
    expect(hash).toMatchObject({ status: "queued", owner: ownerId(owner) });
    expect(await redis.ttl(`{jobs:0}:job:${id}`)).toBeGreaterThan(0);
    expect(await redis.zscore("{jobs:0}:deadlines", id)).toBe(hash.deadline);
    expect(streamed.has(id)).toBe(true);
    expect(events.has(id)).toBe(true);
  }
}

describe("enqueues of one turn of the event loop", () => {
  it("share one script call, and every job is written whole", async () => {
    const jobs = store();
    await jobs.ensureGroups();
    await jobs.enqueue(IRIS, { requestId: "warm-up", ownerKey: owner });
    const before = await scriptRuns();
    const accepted = await Promise.all(
      Array.from({ length: 20 }, (_, i) => jobs.enqueue(IRIS, { requestId: `r-${i}`, ownerKey: owner })),
    );
    expect((await scriptRuns()) - before).toBe(1);
    const ids = accepted.map(({ id }) => id);
    expect(new Set(ids).size).toBe(20);
    await expectWhole(ids);
  });

  it("take several calls past the most one call writes", async () => {
    const jobs = store();
    const before = await scriptRuns();
    const accepted = await Promise.all(
      Array.from({ length: 300 }, (_, i) => jobs.enqueue(IRIS, { requestId: `big-${i}`, ownerKey: owner })),
    );
    // 64 × 4 + 44 (the clock's and the backlog's reads are not scripts).
    expect((await scriptRuns()) - before).toBe(5);
    await expectWhole(accepted.map(({ id }) => id));
  });

  it("of any size ride an auto-pipeline another command opened in the same turn", async () => {
    const jobs = store();
    await jobs.enqueue(IRIS, { requestId: "warm-up", ownerKey: owner });
    for (const size of [7, 33, 64]) {
      const [, ...accepted] = await Promise.all([
        redis.ping(),
        ...Array.from({ length: size }, (_, i) => jobs.enqueue(IRIS, { requestId: `p-${size}-${i}`, ownerKey: owner })),
      ]);
      await expectWhole(accepted.map((job) => (job as { id: string }).id));
    }
  });

  it("fail together when their call fails, and later jobs are written again", async () => {
    const jobs = store();
    await jobs.enqueue(IRIS, { requestId: "before", ownerKey: owner });
    // A call Redis refuses: no write is taken while fewer replicas than min-replicas-to-write are up.
    await redis.config("SET", "min-replicas-to-write", "1");
    try {
      const refused = await Promise.allSettled(
        Array.from({ length: 5 }, (_, i) => jobs.enqueue(IRIS, { requestId: `refused-${i}`, ownerKey: owner })),
      );
      expect(refused.map(({ status }) => status)).toEqual(Array(5).fill("rejected"));
    } finally {
      await redis.config("SET", "min-replicas-to-write", "0");
    }
    const { id } = await jobs.enqueue(IRIS, { requestId: "after", ownerKey: owner });
    await expectWhole([id]);
  });
});
