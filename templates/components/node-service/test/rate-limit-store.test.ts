import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { resilientStore } from "../src/plugins/rate-limit-store.js";
import { type RedisServer, startRedis } from "./support/redis.js";

// The Redis-backed rate-limit store on its own: leases of a key's budget, shared by instances.

let server: RedisServer;
let redis: Redis;
const clients: Redis[] = [];
const WINDOW_MS = 60_000;
const log = pino({ level: "silent" });

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.url);
});

afterAll(async () => {
  for (const client of clients) client.disconnect();
  redis?.disconnect();
  await server?.stop();
});

beforeEach(async () => {
  await redis.flushdb();
});

/** A store as one gateway instance has it (its own connection, its own leases). */
function instance() {
  const client = new Redis(server.url);
  clients.push(client);
  const Store = resilientStore(client, log);
  return new Store({});
}

type Store = ReturnType<typeof instance>;
const take = (store: Store, max: number) =>
  new Promise<number>((resolve, reject) =>
    store.incr("key:k", (err, result) => (err ? reject(err) : resolve(result?.current ?? 0)), WINDOW_MS, max),
  );

describe("rate limit store", () => {
  it("counts a busy key with one Redis round trip per lease (max/100), each request once", async () => {
    const store = instance();
    const counts = await Promise.all(Array.from({ length: 25 }, () => take(store, 1_000)));
    expect([...counts].sort((a, b) => a - b)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    // Leases of 10: three taken from Redis for 25 requests, started the window with its TTL.
    expect(await redis.get("rl:key:k")).toBe("30");
    expect(await redis.pttl("rl:key:k")).toBeGreaterThan(WINDOW_MS - 5_000);
  });

  it("limits below 100 are counted exactly, one unit at a time", async () => {
    const [a, b] = [instance(), instance()];
    const counts = [];
    for (const store of [a, b, a, b]) counts.push(await take(store, 3));
    expect(counts).toEqual([1, 2, 3, 4]);
    expect(await redis.get("rl:key:k")).toBe("4");
  });

  it("never admits more than max per window across instances, hammered concurrently", async () => {
    const stores = [instance(), instance(), instance()];
    const max = 500;
    const counts = await Promise.all(Array.from({ length: 900 }, (_, i) => take(stores[i % 3] as Store, max)));
    const admitted = counts.filter((current) => current <= max).length;
    expect(admitted).toBeLessThanOrEqual(max);
    // At most one lease (5) per other instance is left unused.
    expect(admitted).toBeGreaterThanOrEqual(max - 2 * 5);
    // Once the budget is gone, an instance refuses without asking Redis again.
    const before = await redis.get("rl:key:k");
    for (const store of stores) expect(await take(store, max)).toBeGreaterThan(max);
    expect(await redis.get("rl:key:k")).toBe(before);
  });

  it("falls back to counting in the process when Redis does not answer", async () => {
    const client = new Redis(server.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false });
    clients.push(client);
    await new Promise((resolve) => client.once("ready", resolve));
    const store = new (resilientStore(client, log))({});
    expect(await take(store, 3)).toBe(1);
    expect(await redis.get("rl:key:k")).toBe("1");
    await client.quit();
    // No Redis: counted locally, still limited (never unlimited, never an error).
    const local = [];
    for (let i = 0; i < 4; i += 1) local.push(await take(store, 3));
    expect(local).toEqual([1, 2, 3, 4]);
  });
});
