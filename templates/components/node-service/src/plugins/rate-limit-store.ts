import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from "@fastify/rate-limit";
import type { FastifyBaseLogger } from "fastify";
import type { RedisClient } from "../redis.js";

interface Count {
  current: number;
  ttl: number;
}

// One round trip: count the request and start the window on its first one (fixed window).
const INCR = `local current = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {current, ttl}`;

/** Counters of this process, used while Redis is unreachable; bounded in size. */
class LocalCounters {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  constructor(private readonly maxKeys = 10_000) {}

  incr(key: string, timeWindow: number): Count {
    const now = Date.now();
    let window = this.windows.get(key);
    if (window === undefined || window.resetAt <= now) {
      this.evict(now);
      window = { count: 0, resetAt: now + timeWindow };
      this.windows.set(key, window);
    }
    window.count += 1;
    return { current: window.count, ttl: window.resetAt - now };
  }

  private evict(now: number): void {
    if (this.windows.size < this.maxKeys) return;
    for (const [key, window] of this.windows) if (window.resetAt <= now) this.windows.delete(key);
    // Still full: drop the oldest windows (a Map iterates in insertion order).
    for (const key of this.windows.keys()) {
      if (this.windows.size < this.maxKeys) break;
      this.windows.delete(key);
    }
  }
}

/**
 * A @fastify/rate-limit store: counters live in Redis, shared by every instance; while Redis is
 * unreachable or slow, each instance counts on its own (logged once when it starts and when Redis
 * is back). An outage neither lifts the limits nor turns requests into errors.
 */
export function resilientStore(redis: RedisClient, log: FastifyBaseLogger, prefix = "rl:"): FastifyRateLimitStoreCtor {
  const local = new LocalCounters();
  let degraded = false;

  class ResilientStore implements FastifyRateLimitStore {
    constructor(
      _options?: unknown,
      private readonly namespace = prefix,
    ) {}

    incr(key: string, callback: (error: Error | null, result?: Count) => void, timeWindow: number): void {
      const name = `${this.namespace}${key}`;
      redis
        .eval(INCR, 1, name, timeWindow)
        .then((reply) => {
          const [current, ttl] = reply as [number, number];
          if (degraded) {
            degraded = false;
            log.info("rate limit counters are shared through Redis again");
          }
          callback(null, { current, ttl });
        })
        .catch((error: unknown) => {
          if (!degraded) {
            degraded = true;
            log.warn({ err: error }, "Redis unavailable: rate limits are counted per instance until it returns");
          }
          callback(null, local.incr(name, timeWindow));
        });
    }

    /** A route with its own limits counts apart (the plugin passes the route as `routeInfo`). */
    child(routeOptions: unknown): FastifyRateLimitStore {
      const route = (routeOptions as { routeInfo?: { method?: unknown; url?: unknown } }).routeInfo;
      return new ResilientStore(undefined, `${this.namespace}${String(route?.method)}${String(route?.url)}-`);
    }
  }

  return ResilientStore;
}
