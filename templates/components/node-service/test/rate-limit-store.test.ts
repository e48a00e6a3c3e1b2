import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { resilientStore } from "../src/plugins/rate-limit-store.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { startRelay } from "./support/relay.js";

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
const take = (store: Store, max: number, windowMs = WINDOW_MS) =>
  new Promise<number>((resolve, reject) =>
    store.incr("key:k", (err, result) => (err ? reject(err) : resolve(result?.current ?? 0)), windowMs, max),
  );
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until Redis has dropped the key (its window ended there). */
async function windowEnded(key = "rl:key:k"): Promise<void> {
  while ((await redis.pttl(key)) !== -2) await sleep(5);
}

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

  it("leases of a limit between 100 and 10,000 are max/100, rounded down", async () => {
    for (const [max, lease] of [
      [150, 1],
      [250, 2],
      [1_000_000, 10_000],
    ] as const) {
      await redis.flushdb();
      expect(await take(instance(), max)).toBe(1);
      expect(await redis.get("rl:key:k")).toBe(String(lease));
    }
  });

  it("a new window starts over: refused at max, admitted again once the window ends", async () => {
    const [a, b] = [instance(), instance()];
    const windowMs = 300;
    const first = [];
    for (const store of [a, b, a, b]) first.push(await take(store, 3, windowMs));
    expect(first).toEqual([1, 2, 3, 4]);
    await windowEnded();
    expect(await take(a, 3, windowMs)).toBe(1);
    expect(await take(b, 3, windowMs)).toBe(2);
  });

  it("across window rollovers, instances hammering one key admit at most max per Redis window", async () => {
    const [max, windowMs] = [200, 250];
    // Where Redis' windows end, as its replies to the takes say (reply time + time left: never
    // before the true end), and when each request was admitted.
    const redisEnds: number[] = [];
    const admittedAt: number[] = [];
    const stores = [0, 1, 2].map(() => {
      const client = new Redis(server.url);
      clients.push(client);
      const recorded = new Proxy(client, {
        get(target, property, receiver) {
          const value = Reflect.get(target, property, receiver);
          if (property !== "stackwiseRateLimitTake" || typeof value !== "function") return value;
          return async (...args: unknown[]) => {
            const reply = (await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)) as number[];
            redisEnds.push(Date.now() + Number(reply[1]));
            return reply;
          };
        },
      });
      return new (resilientStore(recorded, log))({});
    });
    const started = Date.now();
    while (Date.now() - started < 1_300) {
      await Promise.all(
        Array.from(
          { length: 30 },
          (_, i) =>
            new Promise<void>((resolve, reject) =>
              (stores[i % 3] as Store).incr(
                "key:k",
                (err, result) => {
                  if (err || result === undefined) return reject(err);
                  if (result.current <= max) admittedAt.push(Date.now());
                  resolve();
                },
                windowMs,
                max,
              ),
            ),
        ),
      );
      await sleep(5);
    }
    // One end per Redis window: every take's estimate is at or after the true end, the earliest is
    // the closest (the takes of one window agree within milliseconds).
    const ends: number[] = [];
    for (const end of [...redisEnds].sort((a, b) => a - b)) {
      if (ends.length === 0 || end - (ends.at(-1) as number) >= windowMs / 2) ends.push(end);
    }
    const perWindow = ends.map(() => 0);
    for (const at of admittedAt) {
      const window = ends.findIndex((end) => at < end);
      expect(window, "admitted after every window Redis knows of ended").toBeGreaterThanOrEqual(0);
      perWindow[window] = (perWindow[window] as number) + 1;
    }
    expect(ends.length).toBeGreaterThanOrEqual(3);
    for (const admitted of perWindow) expect(admitted).toBeLessThanOrEqual(max);
    // The budget was used, not merely refused: a full window admitted most of it.
    expect(Math.max(...perWindow)).toBeGreaterThanOrEqual(max - 3 * 2);
  });

  it("a lease ends with the Redis window, even when the reply was slow (no spill into the next window)", async () => {
    // The reply to the take arrives 250 ms after Redis started the window: counting the lease's
    // time from the reply would keep it alive 250 ms into the next window, where other instances
    // already take the whole new budget.
    const client = new Redis(server.url);
    clients.push(client);
    const slow = new Proxy(client, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property !== "stackwiseRateLimitTake" || typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          const reply = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          await sleep(250);
          return reply;
        };
      },
    });
    const store = new (resilientStore(slow, log))({});
    const windowMs = 600;
    expect(await take(store, 1_000, windowMs)).toBe(1);
    await windowEnded();
    // The old lease (2..10) is gone with its window: this takes a new one from Redis.
    expect(await take(store, 1_000, windowMs)).toBe(1);
    expect(await redis.get("rl:key:k")).toBe("10");
  });

  it("Redis gone mid-lease: the lease is used up, then counted locally (still limited), shared again once back", async () => {
    const own = await startRedis();
    try {
      const client = new Redis(own.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false });
      clients.push(client);
      await new Promise((resolve) => client.once("ready", resolve));
      const store = new (resilientStore(client, log))({});
      // A lease of 10 (max 1000): 1..3 now, Redis has handed out 10.
      for (const expected of [1, 2, 3]) expect(await take(store, 1_000)).toBe(expected);
      await own.stop();
      // The rest of the lease, then this process's own count from 1: never an error, never unlimited.
      const during = [];
      for (let i = 0; i < 9; i += 1) during.push(await take(store, 1_000));
      expect(during).toEqual([4, 5, 6, 7, 8, 9, 10, 1, 2]);
      const local = [];
      for (let i = 0; i < 4; i += 1) local.push(await take(store, 3));
      expect(local).toEqual([3, 4, 5, 6]);
      await own.restart();
      const deadline = Date.now() + 10_000;
      while (client.status !== "ready") {
        if (Date.now() > deadline) throw new Error(`client did not reconnect (${client.status})`);
        await sleep(50);
      }
      // Back: counted in (the fresh) Redis again.
      expect(await take(store, 1_000)).toBe(1);
      const check = new Redis(own.url);
      clients.push(check);
      expect(await check.get("rl:key:k")).toBe("10");
    } finally {
      // Its clients would go on reconnecting to the stopped server while the next tests run.
      for (const client of clients.splice(0)) client.disconnect();
      await own.stop();
    }
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

  it("a stalled Redis costs one command timeout, not one per request; probed again after the cool-down", async () => {
    const relay = await startRelay(server.url);
    const client = new Redis(relay.url, { commandTimeout: 300, maxRetriesPerRequest: 0, enableOfflineQueue: false });
    clients.push(client);
    try {
      await new Promise((resolve) => client.once("ready", resolve));
      const coolDownMs = 400;
      const store = new (resilientStore(client, log, "rl:", coolDownMs))({});
      expect(await take(store, 3)).toBe(1);
      relay.pause();
      let started = Date.now();
      // Waits for the command timeout once, then counts locally (the Redis count is not known here).
      expect(await take(store, 3)).toBe(1);
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      for (const expected of [2, 3, 4]) {
        started = Date.now();
        expect(await take(store, 3)).toBe(expected);
        expect(Date.now() - started).toBeLessThan(50);
      }
      relay.restore();
      // After the cool-down one take probes Redis in the background (this request is not held up
      // either); once it has answered, requests are counted in Redis again.
      await sleep(coolDownMs + 50);
      const before = Number(await redis.get("rl:key:k"));
      started = Date.now();
      expect(await take(store, 3)).toBe(5);
      expect(Date.now() - started).toBeLessThan(50);
      const deadline = Date.now() + 2_000;
      while (Number(await redis.get("rl:key:k")) < before + 1) {
        if (Date.now() > deadline) throw new Error("no probe reached Redis");
        await sleep(10);
      }
      await sleep(20);
      // The unit the probe took in Redis is this request's count.
      expect(await take(store, 3)).toBe(before + 1);
    } finally {
      client.disconnect();
      relay.restore();
      await relay.close();
    }
  });
});
