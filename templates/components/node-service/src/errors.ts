import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Type } from "typebox";

/** Header carrying the request id: read from the client (when well formed), echoed, forwarded downstream. */
export const REQUEST_ID_HEADER = "x-request-id";

/** The one error shape every route answers with: `{"error": {"code", "message", "requestId"}}`. */
export const ErrorResponse = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.String(),
        message: Type.String(),
        requestId: Type.String(),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false, $id: "ErrorResponse" },
);

export interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

export function errorBody(request: FastifyRequest, code: string, message: string): ErrorBody {
  return { error: { code, message, requestId: request.id } };
}

/** Send the shared error shape with `status`. */
export function sendError(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  code: string,
  message: string,
): FastifyReply {
  return reply
    .code(status)
    .type("application/json; charset=utf-8")
    .send(errorBody(request, code, message));
}

/** Throw from a handler or hook; the error handler turns it into the shared shape. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

const CODES: Record<number, string> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  408: "request_timeout",
  413: "payload_too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
  500: "internal_error",
  502: "bad_gateway",
  503: "service_unavailable",
  504: "gateway_timeout",
};

function codeFor(status: number): string {
  return CODES[status] ?? (status >= 500 ? "internal_error" : "bad_request");
}

/** Seconds a client should wait before retrying when a backing service is down. */
export const RETRY_AFTER_SECONDS = "2";

const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);
const UNAVAILABLE_NAMES = new Set(["MaxRetriesPerRequestError", "ClusterAllFailedError"]);
// ioredis's own messages for a connection that is down or slow, and Redis replies meaning "not now".
const UNAVAILABLE_MESSAGES =
  /^(Command timed out|Connection is closed|Stream isn't writeable|Cluster isn't ready|None of startup nodes|(LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|BUSY) )/;

/** True when `error` says a backing service (Redis) is unreachable, timing out or not ready: retry later. */
export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const { code } = error as { code?: unknown };
  return (
    (typeof code === "string" && UNAVAILABLE_CODES.has(code)) ||
    UNAVAILABLE_NAMES.has(error.name) ||
    UNAVAILABLE_MESSAGES.test(error.message)
  );
}

/** 503 with Retry-After: a backing service is down; the message never carries its error text. */
export function unavailable(message = "A backing service is unavailable, retry shortly"): HttpError {
  return new HttpError(503, "service_unavailable", message, { "retry-after": RETRY_AFTER_SECONDS });
}

/**
 * Install the error and not-found handlers: no stack traces, no internal messages on 5xx, and a
 * backing service that is down (Redis unreachable or timing out) answers 503 with Retry-After.
 */
export function installErrorHandlers(app: FastifyInstance): void {
  const sendHttpError = (request: FastifyRequest, reply: FastifyReply, error: HttpError) =>
    sendError(request, reply.headers(error.headers), error.statusCode, error.code, error.message);

  // Every route's path as a pattern, with its methods: a known path asked with another method
  // answers 405 with `Allow` (RFC 9110 §15.5.6), not 404.
  const known: Array<{ pattern: RegExp; methods: Set<string> }> = [];
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    // The CORS preflight catch-all (`OPTIONS *`) says nothing about which paths exist.
    if (methods.every((m) => m === "OPTIONS")) return;
    const source = route.url
      .split("/")
      .map((segment) =>
        segment === "*" ? ".*" : segment.startsWith(":") ? "[^/]+" : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"),
      )
      .join("/");
    const pattern = new RegExp(`^${source}$`);
    const entry = known.find((k) => k.pattern.source === pattern.source);
    if (entry) for (const m of methods) entry.methods.add(m);
    else known.push({ pattern, methods: new Set(methods) });
  });
  const allowedFor = (request: FastifyRequest): string[] => {
    const path = request.url.split("?")[0] ?? "";
    const match = known.find((k) => k.pattern.test(path));
    return match ? [...match.methods].sort() : [];
  };
  const notFound = (request: FastifyRequest, reply: FastifyReply) => {
    const allow = allowedFor(request);
    if (allow.length > 0 && !allow.includes(request.method)) {
      return sendError(
        request,
        reply.header("allow", allow.join(", ")),
        405,
        "method_not_allowed",
        `Method ${request.method} is not allowed here; use ${allow.join(", ")}`,
      );
    }
    return sendError(
      request,
      reply,
      404,
      "not_found",
      `Route ${request.method} ${request.url.split("?")[0]} not found`,
    );
  };

  app.setErrorHandler((error: FastifyError | HttpError, request, reply) => {
    // A method no route has (QUERY, TRACE, …) can fail in body parsing before the not-found
    // handler runs: on a known path it is still 405.
    if (request.is404 && allowedFor(request).length > 0) return notFound(request, reply);
    if (error instanceof HttpError) {
      if (error.statusCode >= 500) request.log.warn({ err: error }, "request failed");
      return sendHttpError(request, reply, error);
    }
    if (isUnavailable(error)) {
      request.log.warn({ err: error }, "backing service unavailable");
      return sendHttpError(request, reply, unavailable());
    }
    if (error.validation) {
      return sendError(request, reply, 400, "validation_error", error.message);
    }
    const status = typeof error.statusCode === "number" && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500) {
      request.log.error({ err: error }, "unhandled error");
      return sendError(request, reply, status, codeFor(status), "Internal server error");
    }
    return sendError(request, reply, status, codeFor(status), error.message);
  });

  app.setNotFoundHandler((request, reply) => notFound(request, reply));
}
