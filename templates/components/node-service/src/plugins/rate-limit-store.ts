import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from "@fastify/rate-limit";
import type { FastifyBaseLogger } from "fastify";
import type { RedisClient } from "../redis.js";

interface Count {
  current: number;
  ttl: number;
}

/**
 * One round trip: take ARGV[2] units of the window's budget and start the window on its first take
 * (fixed window). Returns the counter after the take and the window's time left.
 */
const TAKE = `local current = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {current, ttl}`;
const TAKE_COMMAND = "stackwiseRateLimitTake";
type WithTake = Record<typeof TAKE_COMMAND, (key: string, windowMs: number, units: number) => Promise<unknown>>;

/**
 * A process takes this share of a limit from Redis at a time (a lease) and counts the requests it
 * admits against it locally, so a busy key costs one Redis round trip per lease instead of one per
 * request. Limits below LEASE_DIVISOR are leased one unit at a time: counted exactly, as before.
 */
const LEASE_DIVISOR = 100;
const MAX_LEASE = 10_000;
const MAX_KEYS = 10_000;
/**
 * After a take fails (Redis down, or stalled until the command timeout), the store counts locally
 * without asking Redis for this long, so a stalled Redis costs one command timeout, not one per
 * request; then one take probes Redis in the background while requests go on counting locally.
 */
export const REDIS_COOL_DOWN_MS = 2_000;

/** Leases this process holds: requests `next..hi` of the window are its to admit. */
interface Lease {
  next: number;
  hi: number;
  resetAt: number;
  /** A take from Redis in flight: concurrent requests for the key wait for it instead of taking more. */
  pending?: Promise<boolean> | undefined;
}

/** Maps bounded in size: expired entries go first, then the oldest (a Map iterates in insertion order). */
function evict<T extends { resetAt: number }>(entries: Map<string, T>, now: number, maxKeys: number): void {
  if (entries.size < maxKeys) return;
  for (const [key, entry] of entries) if (entry.resetAt <= now) entries.delete(key);
  for (const key of entries.keys()) {
    if (entries.size < maxKeys) break;
    entries.delete(key);
  }
}

/** Counters of this process, used while Redis is unreachable; bounded in size. */
class LocalCounters {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();

  incr(key: string, timeWindow: number): Count {
    const now = Date.now();
    let window = this.windows.get(key);
    if (window === undefined || window.resetAt <= now) {
      evict(this.windows, now, MAX_KEYS);
      window = { count: 0, resetAt: now + timeWindow };
      this.windows.set(key, window);
    }
    window.count += 1;
    return { current: window.count, ttl: window.resetAt - now };
  }
}

/**
 * A @fastify/rate-limit store: counters live in Redis, shared by every instance; while Redis is
 * unreachable or slow, each instance counts on its own (logged once when it starts and when Redis
 * is back). An outage neither lifts the limits nor turns requests into errors, and a Redis that
 * stalls costs one command timeout, not one per request: after a failed take Redis is left alone
 * for `coolDownMs` (REDIS_COOL_DOWN_MS), then probed in the background.
 *
 * Each instance leases max/100 requests of a key's window at a time (at least 1, at most 10,000)
 * and admits them without asking Redis again. Across instances no more than `max` requests are
 * ever admitted per window; a caller spreading its requests over N instances may be refused up
 * to (N - 1) leases (about (N - 1)% of the limit) early, since a lease another instance holds is
 * not handed back. A key whose Redis counter already passed `max` is refused locally until its
 * window ends.
 */
export function resilientStore(
  redis: RedisClient,
  log: FastifyBaseLogger,
  prefix = "rl:",
  coolDownMs = REDIS_COOL_DOWN_MS,
): FastifyRateLimitStoreCtor {
  const local = new LocalCounters();
  const leases = new Map<string, Lease>();
  redis.defineCommand(TAKE_COMMAND, { numberOfKeys: 1, lua: TAKE });
  let degraded = false;
  /**
   * Circuit breaker: 0 while Redis is asked as usual; after a failed take, the time until which it
   * is not asked. After that, one take probes it in the background and closes the breaker when it
   * succeeds; a (re)established connection closes it at once.
   */
  let skipUntil = 0;
  let probing = false;
  redis.on("ready", () => {
    skipUntil = 0;
  });

  function failed(error: unknown): void {
    skipUntil = Date.now() + coolDownMs;
    if (!degraded) {
      degraded = true;
      log.warn({ err: error }, "Redis unavailable: rate limits are counted per instance until it returns");
    }
  }

  /** True while the breaker keeps this request away from Redis; starts the probe once the cool-down is over. */
  function skipRedis(name: string, timeWindow: number, max: number): boolean {
    if (skipUntil === 0) return false;
    if (probing || Date.now() < skipUntil) return true;
    probing = true;
    renew(name, timeWindow, max).then(
      () => {
        probing = false;
        skipUntil = 0;
      },
      (error: unknown) => {
        probing = false;
        failed(error);
      },
    );
    return true;
  }

  /** Takes a lease from Redis for `name`; on failure the caller falls back to local counting. */
  async function renew(name: string, timeWindow: number, max: number): Promise<void> {
    const units = Math.min(MAX_LEASE, Math.max(1, Math.floor(max / LEASE_DIVISOR)));
    // The lease ends when Redis ends the window: its time left counts from before the take was
    // sent (Redis measured it later), never from the reply, which would carry the lease the
    // reply's delay into the next window.
    const sentAt = Date.now();
    const reply = await (redis as unknown as WithTake)[TAKE_COMMAND](name, timeWindow, units);
    const [hi, ttl] = reply as [number, number];
    evict(leases, Date.now(), MAX_KEYS);
    leases.set(name, { next: hi - units + 1, hi, resetAt: sentAt + ttl });
    if (degraded) {
      degraded = false;
      log.info("rate limit counters are shared through Redis again");
    }
  }

  /** The count of this request from the lease held for `name`, or undefined when a new lease is needed. */
  function fromLease(name: string, max: number): Count | undefined {
    const lease = leases.get(name);
    if (lease === undefined || lease.pending !== undefined) return undefined;
    const now = Date.now();
    if (lease.resetAt <= now) return undefined;
    const ttl = lease.resetAt - now;
    if (lease.next <= lease.hi) return { current: lease.next++, ttl };
    // The whole window's budget is taken (here or elsewhere): over the limit until the window ends.
    if (lease.hi >= max) return { current: Math.max(lease.hi, max) + 1, ttl };
    return undefined;
  }

  function count(name: string, timeWindow: number, max: number, callback: (error: null, result: Count) => void): void {
    const counted = fromLease(name, max);
    if (counted !== undefined) {
      callback(null, counted);
      return;
    }
    if (skipRedis(name, timeWindow, max)) {
      callback(null, local.incr(name, timeWindow));
      return;
    }
    const lease = leases.get(name);
    const retry = (renewed: boolean) => {
      if (renewed) count(name, timeWindow, max, callback);
      else callback(null, local.incr(name, timeWindow));
    };
    if (lease?.pending !== undefined) {
      void lease.pending.then(retry);
      return;
    }
    const pending = renew(name, timeWindow, max).then(
      () => true,
      (error: unknown) => {
        if (leases.get(name)?.pending === pending) leases.delete(name);
        failed(error);
        return false;
      },
    );
    // Concurrent requests for the key wait for this take (renew replaces the entry when it lands).
    if (lease !== undefined) lease.pending = pending;
    else leases.set(name, { next: 1, hi: 0, resetAt: 0, pending });
    void pending.then(retry);
  }

  class ResilientStore implements FastifyRateLimitStore {
    constructor(
      _options?: unknown,
      private readonly namespace = prefix,
    ) {}

    incr(key: string, callback: (error: Error | null, result?: Count) => void, timeWindow: number, max: number): void {
      count(`${this.namespace}${key}`, timeWindow, max, callback);
    }

    /** A route with its own limits counts apart (the plugin passes the route as `routeInfo`). */
    child(routeOptions: unknown): FastifyRateLimitStore {
      const route = (routeOptions as { routeInfo?: { method?: unknown; url?: unknown } }).routeInfo;
      return new ResilientStore(undefined, `${this.namespace}${String(route?.method)}${String(route?.url)}-`);
    }
  }

  return ResilientStore;
}
