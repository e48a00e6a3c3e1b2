import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { REQUEST_ID_HEADER } from "../errors.js";
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
      const path = rest.startsWith("/") ? rest : `/${rest}`;
      const body = Buffer.isBuffer(request.body) ? request.body : null;
      const response = await upstream.request({
        method: request.method,
        path,
        headers: forwardedHeaders(request),
        body,
      });
      for (const [name, value] of Object.entries(response.headers)) {
        if (value === undefined || HOP_BY_HOP.has(name) || name === REQUEST_ID_HEADER) continue;
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
