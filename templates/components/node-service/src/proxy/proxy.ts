import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { HttpError, REQUEST_ID_HEADER } from "../errors.js";
import { isEdgeHeader } from "../plugins/security.js";
import type { Upstream } from "./upstream.js";

// RFC 9110 §7.6.1 hop-by-hop headers, plus what must not cross the gateway.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);
const NOT_FORWARDED = new Set([
  "host",
  "content-length",
  "x-api-key",
  REQUEST_ID_HEADER,
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
]);

function forwardedHeaders(request: FastifyRequest): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || NOT_FORWARDED.has(name)) continue;
    headers[name] = value;
  }
  const priorFor = request.headers["x-forwarded-for"];
  headers["x-forwarded-for"] = typeof priorFor === "string" ? `${priorFor}, ${request.ip}` : request.ip;
  headers["x-forwarded-host"] = request.host;
  headers["x-forwarded-proto"] = request.protocol;
  headers[REQUEST_ID_HEADER] = request.id;
  return headers;
}

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

const DOT_SEGMENT = new Set([".", ".."]);

/**
 * The path to request upstream for `rest` (the raw request target after the prefix, query included).
 * Dot segments are resolved like a browser would, whether sent raw or percent-encoded (`%2e%2E`), so
 * the upstream never sees one; null when the path would climb above the proxied root, hides a dot
 * segment behind an encoded or unusual separator (`..%2f`, `..%5c`, `..;`), or is not valid
 * percent-encoding. Other segments are forwarded exactly as sent.
 */
export function upstreamPath(rest: string): string | null {
  const queryAt = rest.indexOf("?");
  const path = queryAt === -1 ? rest : rest.slice(0, queryAt);
  const query = queryAt === -1 ? "" : rest.slice(queryAt);
  const segments = path.split("/").slice(1);
  const kept: string[] = [];
  for (const segment of segments) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return null;
    }
    if (decoded === "..") {
      if (kept.length === 0) return null;
      kept.pop();
    } else if (decoded !== ".") {
      if (decoded.split(/[/\\;]/).some((part) => DOT_SEGMENT.has(part))) return null;
      kept.push(segment);
    }
  }
  // "/a/b/.." is "/a/": a path ending in a dot segment names a directory.
  const last = segments.at(-1);
  if (last !== undefined && DOT_SEGMENT.has(decodeURIComponent(last))) kept.push("");
  return `/${kept.join("/")}${query}`;
}

/**
 * Pass-through proxy: `<prefix>/anything?query` → `UPSTREAM_URL/anything?query`, any method, body
 * passed on as bytes (still capped by BODY_LIMIT_BYTES), response streamed back. The gateway's
 * API key is checked here and never forwarded; the request id is.
 */
export const registerProxy: FastifyPluginAsync<{ upstream: Upstream; prefix: string }> = async (
  app,
  { upstream, prefix },
) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));

  app.route({
    method: METHODS,
    url: "/*",
    exposeHeadRoute: false,
    handler: async (request, reply) => {
      const rest = request.url.slice(prefix.length);
      const path = upstreamPath(rest.startsWith("/") ? rest : `/${rest}`);
      if (path === null) {
        throw new HttpError(400, "bad_request", "The path leaves the proxied API or hides a dot segment");
      }
      const body = Buffer.isBuffer(request.body) ? request.body : null;
      const response = await upstream.request({
        method: request.method,
        path,
        headers: forwardedHeaders(request),
        body,
      });
      for (const [name, value] of Object.entries(response.headers)) {
        if (value === undefined || HOP_BY_HOP.has(name) || name === REQUEST_ID_HEADER || isEdgeHeader(name)) continue;
        reply.header(name, value);
      }
      reply.code(response.statusCode);
      if (request.method === "HEAD" || response.statusCode === 204 || response.statusCode === 304) {
        await response.body.dump();
        return reply.send();
      }
      return reply.send(response.body);
    },
  });
};
