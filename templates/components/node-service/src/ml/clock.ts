// Redis' clock for the job store (./jobs.ts): what another host compares must not come from this one.
import type { RedisClient } from "../redis.js";

/** How often the offset between this host's clock and Redis' (TIME) is measured again. */
const CLOCK_REFRESH_MS = 30_000;

/**
 * Milliseconds since the epoch by Redis' clock (TIME): what the gateway stamps on jobs (created_at,
 * deadline, the queued event) and the events trimming horizon, so they compare with the workers'
 * times, which come from Redis too, whatever each host's clock says. The offset to this host's
 * clock is measured (half the round trip corrected) at most every CLOCK_REFRESH_MS, not per job.
 */
export class RedisClock {
  #offset = 0;
  #measuredAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly redis: RedisClient) {}

  async now(): Promise<number> {
    const cached = this.cached();
    if (cached !== undefined) return cached;
    await this.#measure();
    return Date.now() + this.#offset;
  }

  /** Redis' time from the offset measured last, or undefined when it is due to be measured again. */
  cached(): number | undefined {
    return performance.now() - this.#measuredAt > CLOCK_REFRESH_MS ? undefined : Date.now() + this.#offset;
  }

  async #measure(): Promise<void> {
    const before = Date.now();
    const [seconds, micros] = await this.redis.time();
    const after = Date.now();
    const redisMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    this.#offset = redisMs - Math.round((before + after) / 2);
    this.#measuredAt = performance.now();
  }
}
