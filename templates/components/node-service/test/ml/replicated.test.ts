// JOBS_WAIT_REPLICAS: a job is acknowledged (202) only once a replica has it — the first request,
// and a retry with the same Idempotency-Key alike (the retry of a 503 used to get a 202 at once).
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobStore, NotReplicatedError, PartitionCountError } from "../../src/ml/jobs.js";
import { connectRedis, type RedisClient } from "../../src/redis.js";
import { type RedisServer, startRedis } from "../support/redis.js";

const IRIS = { features: [5.1, 3.5, 1.4, 0.2] };
const owner = createHash("sha256").update("replicated-test-key-0123456789abcdef").digest();

let server: RedisServer;
let redis: RedisClient;

beforeAll(async () => {
  server = await startRedis();
  redis = connectRedis(server.url);
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

const store = (waitReplicas: number): JobStore =>
  new JobStore(redis, {
    partitions: 1,
    maxBacklog: 1_000,
    deadlineMs: 60_000,
    eventsRetentionMs: 60_000,
    waitReplicas,
    waitTimeoutMs: 50,
  });

describe("JOBS_WAIT_REPLICAS on a Redis without replicas", () => {
  it("refuses the job and its idempotent retry alike: neither is acknowledged", async () => {
    const jobs = store(1);
    await jobs.ensureGroups();
    const options = { requestId: "r-1", ownerKey: owner, idempotencyKey: "order-1" };
    await expect(jobs.enqueue(IRIS, options)).rejects.toBeInstanceOf(NotReplicatedError);
    // The job was written (it may run), so the key stays; the retry is not acknowledged either.
    await expect(jobs.enqueue(IRIS, options)).rejects.toBeInstanceOf(NotReplicatedError);
    expect(await redis.xlen("{jobs:0}:predict")).toBe(1);
  });

  it("without the wait, the retry returns the first job", async () => {
    const jobs = store(0);
    const options = { requestId: "r-2", ownerKey: owner, idempotencyKey: "order-2" };
    const first = await jobs.enqueue(IRIS, options);
    const again = await jobs.enqueue(IRIS, options);
    expect(again).toEqual({ id: first.id, created: false });
  });
});

describe("a 503 does not mean the job was not queued", () => {
  it("a write whose answer is lost keeps the Idempotency-Key: the retry returns that job, none is added", async () => {
    const jobs = store(0);
    await jobs.ensureGroups();
    const before = await redis.xlen("{jobs:0}:predict");
    // The enqueue script runs, then its answer is lost (a timeout, a dropped connection, a failover).
    const evalsha = redis.evalsha.bind(redis);
    const lossy = async (...args: Parameters<typeof evalsha>) => {
      await evalsha(...args);
      throw new Error("Command timed out");
    };
    Object.assign(redis, { evalsha: lossy });
    const options = { requestId: "r-3", ownerKey: owner, idempotencyKey: "order-3" };
    try {
      await expect(jobs.enqueue(IRIS, options)).rejects.toThrow("Command timed out");
    } finally {
      Object.assign(redis, { evalsha });
    }
    expect(await redis.xlen("{jobs:0}:predict")).toBe(before + 1);
    const retried = await jobs.enqueue(IRIS, options);
    expect(retried.created).toBe(false);
    expect(await redis.exists(`{jobs:0}:job:${retried.id}`)).toBe(1);
    expect(await redis.xlen("{jobs:0}:predict")).toBe(before + 1);
  });
});

describe("BUS_PARTITIONS is checked against Redis at start", () => {
  it("the first process records it; one with another count is refused with a clear error", async () => {
    await redis.del("bus:partitions");
    await store(0).checkPartitions();
    expect(await redis.get("bus:partitions")).toBe("1");
    await store(0).checkPartitions(); // the same count: fine
    const other = new JobStore(redis, { partitions: 4, maxBacklog: 1, deadlineMs: 1, eventsRetentionMs: 1 });
    await expect(other.checkPartitions()).rejects.toBeInstanceOf(PartitionCountError);
    await expect(other.checkPartitions()).rejects.toThrow(/BUS_PARTITIONS=4.*has 1 partitions/);
    expect(await redis.get("bus:partitions")).toBe("1");
  });
});
