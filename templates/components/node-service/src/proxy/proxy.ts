import { propagation } from "@opentelemetry/api";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import { HttpError, REQUEST_ID_HEADER } from "../errors.js";
import { traceContextOf } from "../observability/tracing.js";
import { isEdgeHeader } from "../plugins/security.js";
import type { Upstream } from "./upstream.js";

// RFC 9110 §7.6.1: hop-by-hop headers (and every header the `Connection` header names) belong to
// one connection and are never forwarded, in either direction.
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
/**
 * What a client sends that must not cross the gateway as sent: its key, framing and `Expect`
 * (answered here: the body is read before forwarding), the trace context (the gateway's own is
 * injected), and what claims the client's identity or address (rebuilt from what the gateway trusts).
 */
const NOT_FORWARDED = new Set([
  "host",
  "content-length",
  "expect",
  "x-api-key",
  REQUEST_ID_HEADER,
  "traceparent",
  "tracestate",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-port",
  "x-forwarded-prefix",
  "x-real-ip",
  "x-client-ip",
  "true-client-ip",
  "x-cluster-client-ip",
  "x-original-url",
  "x-rewrite-url",
]);

/** The header names a `Connection` header lists (RFC 9110 §7.6.1), lower-cased. */
function connectionOptions(value: string | string[] | undefined): Set<string> {
  const names = new Set<string>();
  for (const line of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
    for (const name of line.split(",")) {
      const trimmed = name.trim().toLowerCase();
      if (trimmed !== "") names.add(trimmed);
    }
  }
  return names;
}

/** `headers` without the hop-by-hop ones: the standard set and those its `Connection` header names. */
export function endToEnd(
  headers: Record<string, string | string[] | undefined>,
): Array<[name: string, value: string | string[]]> {
  const named = connectionOptions(headers.connection);
  const kept: Array<[string, string | string[]]> = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    kept.push([name, value]);
  }
  return kept;
}

/** A host name, IPv4 or [IPv6] literal with an optional port: any other Host value is not forwarded. */
const HOST = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^#]*)/i;

/** The request target's path and query (origin-form as is, absolute-form's path: RFC 9112 §3.2.2) and its authority. */
export function requestTarget(url: string): { path: string; authority?: string } | null {
  if (url.startsWith("/")) return { path: url };
  const absolute = ABSOLUTE_FORM.exec(url);
  if (absolute === null) return null;
  const [, authority = "", rest = ""] = absolute;
  return { path: rest.startsWith("/") ? rest : `/${rest}`, authority };
}

/**
 * Who the client is, as far as the gateway can tell: the `X-Forwarded-*` headers are believed only
 * when the peer is a trusted proxy (TRUST_PROXY) that sent X-Forwarded-For: Fastify's `request.ips`
 * then holds the peer and the trusted hops, closest first. Otherwise the peer itself is the client
 * and its claims are dropped (Fastify's `request.protocol` and `request.host` would believe them
 * from any peer once TRUST_PROXY is set).
 */
function clientIdentity(request: FastifyRequest, authority: string | undefined) {
  const ips = request.ips ?? [request.ip];
  const peerTrusted = ips.length > 1;
  const encrypted = (request.raw.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
  const protocol = peerTrusted ? request.protocol : encrypted ? "https" : "http";
  // RFC 9112 §3.2.2: with an absolute-form target, its authority is the host asked for.
  const host = authority ?? (peerTrusted ? request.host : request.headers.host);
  return {
    forwardedFor: [...ips].reverse().join(", "),
    protocol: protocol === "https" ? "https" : "http",
    host: host !== undefined && HOST.test(host) ? host : undefined,
  };
}

function forwardedHeaders(request: FastifyRequest, authority: string | undefined): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of endToEnd(request.headers)) {
    if (!NOT_FORWARDED.has(name)) headers[name] = value;
  }
  const client = clientIdentity(request, authority);
  headers["x-forwarded-for"] = client.forwardedFor;
  if (client.host !== undefined) headers["x-forwarded-host"] = client.host;
  headers["x-forwarded-proto"] = client.protocol;
  headers[REQUEST_ID_HEADER] = request.id;
  // The gateway's span is the upstream's parent (`traceparent`, `tracestate`; `baggage` when set).
  propagation.inject(traceContextOf(request), headers);
  return headers;
}

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

const DOT_SEGMENT = new Set([".", ".."]);

/**
 * The path to request upstream for `rest` (the raw request target after the prefix, query included).
 * Dot segments are resolved like a browser would, whether sent raw or percent-encoded (`%2e%2E`), so
 * the upstream never sees one; null when the path would climb above the proxied root, hides a dot
 * segment behind an encoded or unusual separator (`..%2f`, `..%5c`, `..;`), or is not valid
 * percent-encoding. Empty segments at the start are dropped (`//evil.com/x` → `/evil.com/x`: never
 * a network-path reference); other segments are forwarded exactly as sent.
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
    } else if (decoded === "" && kept.length === 0) {
      // A leading "//" would make the upstream path a network-path reference (`//host/...`).
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
 * API key is checked here and never forwarded; hop-by-hop headers never cross, in either direction;
 * the request id, the gateway's trace context and the client's identity (X-Forwarded-*) are set here.
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
      // The path actually asked for: an absolute-form target (`GET http://host/api/x`) is routed by
      // its path, so its path is what is checked and forwarded (RFC 9112 §3.2.2).
      const target = requestTarget(request.url);
      if (target === null || !target.path.startsWith(`${prefix}/`)) {
        throw new HttpError(400, "bad_request", "The request target is not a path under the proxied API");
      }
      const path = upstreamPath(target.path.slice(prefix.length));
      if (path === null) {
        throw new HttpError(400, "bad_request", "The path leaves the proxied API or hides a dot segment");
      }
      const body = Buffer.isBuffer(request.body) ? request.body : null;
      const response = await upstream.request({
        method: request.method,
        path,
        headers: forwardedHeaders(request, target.authority),
        body,
        log: request.log,
      });
      for (const [name, value] of endToEnd(response.headers)) {
        if (name === REQUEST_ID_HEADER || isEdgeHeader(name)) continue;
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
