import type { IncomingMessage, ServerResponse } from "node:http";
import cors from "@fastify/cors";
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance } from "fastify";
import helmet, { type HelmetOptions } from "helmet";
import { type Config, csv } from "../config.js";
import { HttpError } from "../errors.js";
import type { RedisClient } from "../redis.js";
import { resilientStore } from "./rate-limit-store.js";

export const HELMET_OPTIONS: HelmetOptions = {
  // A JSON API serves no documents: the strictest content security policy fits.
  contentSecurityPolicy: {
    useDefaults: false,
    directives: { defaultSrc: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"], frameAncestors: ["'none'"] },
  },
  // What frame-ancestors 'none' says, for browsers that only read X-Frame-Options (helmet's default
  // is SAMEORIGIN, which would contradict it there); OWASP's REST cheat sheet asks for DENY.
  xFrameOptions: { action: "deny" },
};

/**
 * The headers helmet sets with `options`, computed once by running helmet's own middleware on a
 * response that records them. With no per-request option (no CSP nonce) they are the same on every
 * response, so the hot path copies a ready object instead of running helmet per request (as
 * @fastify/helmet does, rebuilding the middleware from its options each time).
 */
export function helmetHeaders(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: unknown) {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (error?: unknown) => {
    if (error !== undefined && error !== null) throw error;
  });
  return headers;
}

/** The headers of every response, computed once. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = helmetHeaders(HELMET_OPTIONS);

/**
 * Response headers that belong to this edge: its CORS answer, security headers and rate-limit
 * state, and what would name the software behind it. A proxied upstream's are dropped, so it can
 * neither loosen the edge's policies (`access-control-allow-origin: *`, a weaker CSP) nor reveal
 * itself (`x-powered-by`).
 */
export function isEdgeHeader(name: string): boolean {
  return (
    name.startsWith("access-control-") ||
    name.startsWith("x-ratelimit-") ||
    Object.hasOwn(SECURITY_HEADERS, name) ||
    name === "x-powered-by" ||
    name === "server"
  );
}

/**
 * Security headers, CORS allowlist and rate limiting. Register before any route:
 * the rate limiter attaches itself to routes as they are declared.
 */
export async function registerSecurity(app: FastifyInstance, config: Config, redis: RedisClient | null): Promise<void> {
  // Every response, 404s and refusals included (onRequest runs before routing decides anything).
  app.addHook("onRequest", (_request, reply, done) => {
    reply.headers(SECURITY_HEADERS);
    done();
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
    // Counters shared by every instance through Redis when it is configured (counted per instance
    // while Redis is down), in this process otherwise.
    ...(redis === null ? {} : { store: resilientStore(redis, app.log) }),
    // Authenticated callers get a budget per API key, everyone else per client IP.
    keyGenerator: (request) => (request.apiKeyId === null ? `ip:${request.ip}` : `key:${request.apiKeyId}`),
    errorResponseBuilder: (_request, context) =>
      new HttpError(429, "rate_limited", `Rate limit exceeded, retry in ${context.after}`, {
        "retry-after": String(Math.ceil(context.ttl / 1000)),
      }),
  });
}
