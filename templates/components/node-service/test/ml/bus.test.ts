import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { BusLayout } from "../../src/ml/bus.js";
import { compareStreamIds } from "../../src/ml/events.js";
import { isClusterUrl, parseClusterUrl } from "../../src/redis.js";

describe("bus layout (contracts/README.md)", () => {
  it("puts every key of a partition under the hash tag {jobs:p}", () => {
    const keys = new BusLayout(4).partitions[2];
    expect(keys).toMatchObject({
      partition: 2,
      jobs: "{jobs:2}:predict",
      dead: "{jobs:2}:dead",
      events: "{jobs:2}:events",
      deadlines: "{jobs:2}:deadlines",
    });
    expect(keys?.job("abc")).toBe("{jobs:2}:job:abc");
  });

  // Expected values computed with Python: zlib.crc32(job_id.encode()) % n, as the worker does.
  it.each([
    ["0b6e4f0e-8d3c-4d8e-9a53-2f1f7f3f9c10", 4, 1],
    ["0b6e4f0e-8d3c-4d8e-9a53-2f1f7f3f9c10", 7, 6],
    ["00000000-0000-4000-8000-000000000000", 4, 3],
    ["00000000-0000-4000-8000-000000000000", 7, 1],
    ["ffffffff-ffff-4fff-bfff-ffffffffffff", 4, 2],
    ["héllo-✓", 4, 1],
  ])("partition of %s over %i partitions is %i (crc32 of the UTF-8 id)", (id, count, expected) => {
    expect(new BusLayout(count).of(id).partition).toBe(expected);
  });

  it("has one partition by default", () => {
    expect(new BusLayout(1).of("anything").jobs).toBe("{jobs:0}:predict");
    expect(() => new BusLayout(0)).toThrow(/BUS_PARTITIONS/);
  });

  it("orders stream ids numerically", () => {
    expect(compareStreamIds("9-0", "10-0")).toBe(-1);
    expect(compareStreamIds("10-2", "10-10")).toBe(-1);
    expect(compareStreamIds("10-1", "10-1")).toBe(0);
    expect(compareStreamIds("1700000000001-0", "1700000000000-5")).toBe(1);
  });
});

describe("Redis URLs", () => {
  it("reads seeds and credentials from redis+cluster:// URLs", () => {
    expect(isClusterUrl("redis+cluster://a:7000")).toBe(true);
    expect(isClusterUrl("rediss+cluster://a:7000")).toBe(true);
    expect(isClusterUrl("redis://a:6379")).toBe(false);
    expect(parseClusterUrl("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,redis-3")).toEqual({
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "10.0.0.2", port: 7001 },
        { host: "::1", port: 7002 },
        { host: "redis-3", port: 6379 },
      ],
      tls: false,
    });
    expect(parseClusterUrl("rediss+cluster://app:p%40ss@h:7000/")).toEqual({
      nodes: [{ host: "h", port: 7000 }],
      username: "app",
      password: "p@ss",
      tls: true,
    });
    expect(parseClusterUrl("redis+cluster://:secret@h:7000").password).toBe("secret");
    expect(() => parseClusterUrl("redis+cluster://h:port")).toThrow(/host:port/);
  });

  it("the gateway accepts a cluster REDIS_URL and documents its bus defaults", () => {
    const env = { API_KEYS: "client-key-0123456789abcdefghijklmnopqrstuv", ML_API_KEY: "ml-key" };
    const config = loadConfig({ ...env, REDIS_URL: "redis+cluster://127.0.0.1:7000,127.0.0.1:7001" });
    expect(config).toMatchObject({
      BUS_PARTITIONS: 1,
      JOBS_MAX_BACKLOG: 50_000,
      JOB_DEADLINE_MS: 300_000,
      EVENTS_RETENTION_MS: 600_000,
      WATCH_RECHECK_MS: 10_000,
    });
    expect(() => loadConfig({ ...env, REDIS_URL: "redis://h:1", BUS_PARTITIONS: "0" })).toThrow(/BUS_PARTITIONS/);
    expect(() =>
      loadConfig({ API_KEYS: "client-key-0123456789abcdefghijklmnopqrstuv", REDIS_URL: "redis://h:1" }),
    ).toThrow(/ML_API_KEY/);
  });
});
