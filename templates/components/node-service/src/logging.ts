import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { FastifyServerOptions } from "fastify";
import type { Config } from "./config.js";
import { REQUEST_ID_HEADER } from "./errors.js";

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Reuse the caller's `x-request-id` when it is well formed, otherwise make one. */
export function genReqId(req: IncomingMessage): string {
  const incoming = req.headers[REQUEST_ID_HEADER];
  const value = Array.isArray(incoming) ? incoming[0] : incoming;
  return value !== undefined && SAFE_REQUEST_ID.test(value) ? value : randomUUID();
}

/** Never log credentials passed in the query string (WebSocket clients may use `?api_key=`). */
export function redactUrl(url: string): string {
  return url.replace(/([?&]api_key=)[^&#]*/gi, "$1[Redacted]");
}

/** pino options: JSON lines, request id on every line, credentials redacted. */
export function loggerOptions(config: Config): NonNullable<FastifyServerOptions["logger"]> {
  return {
    level: config.LOG_LEVEL,
    redact: {
      paths: [
        "req.headers.authorization",
        'req.headers["x-api-key"]',
        "req.headers.cookie",
        'res.headers["set-cookie"]',
      ],
      censor: "[Redacted]",
    },
    serializers: {
      req(request: { method: string; url: string; ip?: string; headers: Record<string, unknown> }) {
        return {
          method: request.method,
          url: redactUrl(request.url),
          ip: request.ip,
          headers: request.headers,
        };
      },
    },
  };
}
