import cors from "@fastify/cors";
import helmet from "@fastify/helmet";
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance } from "fastify";
import { type Config, csv } from "../config.js";
import { HttpError } from "../errors.js";
import type { RedisClient } from "../redis.js";

/**
 * Security headers, CORS allowlist and rate limiting. Register before any route:
 * the rate limiter attaches itself to routes as they are declared.
 */
export async function registerSecurity(app: FastifyInstance, config: Config, redis: RedisClient | null): Promise<void> {
  await app.register(helmet, {
    // A JSON API serves no documents: the strictest content security policy fits.
    contentSecurityPolicy: {
      useDefaults: false,
      directives: { defaultSrc: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"], frameAncestors: ["'none'"] },
    },
  });

  const origins = new Set(csv(config.CORS_ORIGINS));
  await app.register(cors, {
    // Deny by default: only listed origins get CORS headers; credentials are never allowed.
    origin: (origin, callback) => callback(null, origin !== undefined && origins.has(origin)),
    methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    allowedHeaders: ["content-type", "x-api-key", "x-request-id", "idempotency-key", "last-event-id"],
    exposedHeaders: ["x-request-id", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"],
    maxAge: 600,
  });

  await app.register(rateLimit, {
    global: true,
    max: config.RATE_LIMIT_MAX,
    timeWindow: config.RATE_LIMIT_WINDOW_MS,
    // Shared counters across instances when Redis is configured, in-memory otherwise.
    ...(redis === null ? {} : { redis, nameSpace: "rl:" }),
    // A Redis outage must not take the API down: fail open and log.
    skipOnError: true,
    // Authenticated callers get a budget per API key, everyone else per client IP.
    keyGenerator: (request) => (request.apiKeyId === null ? `ip:${request.ip}` : `key:${request.apiKeyId}`),
    errorResponseBuilder: (_request, context) =>
      new HttpError(429, "rate_limited", `Rate limit exceeded, retry in ${context.after}`, {
        "retry-after": String(Math.ceil(context.ttl / 1000)),
      }),
  });
}
