import { Writable } from "node:stream";
import pino from "pino";
import { errors } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { upstreamPath } from "../src/proxy/proxy.js";
import { retryAfterMs, Upstream, upstreamFailure } from "../src/proxy/upstream.js";
import { authed, type RunningApp, startApp } from "./support/app.js";
import { getRaw, postChunked, sendRaw } from "./support/http.js";
import { freePort } from "./support/redis.js";
import { startTestUpstream, type TestUpstream } from "./support/upstream.js";

let upstream: TestUpstream;
let gateway: RunningApp;

beforeAll(async () => {
  upstream = await startTestUpstream();
  gateway = await startApp({ UPSTREAM_URL: upstream.url, UPSTREAM_TIMEOUT_MS: "300", UPSTREAM_RETRIES: "2" });
});

afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
});

type Echo = { method: string; url: string; headers: Record<string, string>; body: string };

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

/** The echo of a request sent exactly as given (target, headers, body) through the gateway. */
async function echoRaw(options: Parameters<typeof sendRaw>[1], url = gateway.url): Promise<Echo> {
  const res = await sendRaw(url, { ...options, headers: authed(options.headers) });
  expect(res.status, res.body).toBe(200);
  return JSON.parse(res.body) as Echo;
}

describe("proxy /api/*", () => {
  it("forwards method, path, query, body and request id; never the API key", async () => {
    const res = await fetch(`${gateway.url}/api/echo/items?limit=2`, {
      method: "POST",
      headers: authed({ "content-type": "text/plain", "x-request-id": "proxy-1" }),
      body: "hello upstream",
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBe("proxy-1");
    const echo = (await res.json()) as Echo;
    expect(echo.method).toBe("POST");
    expect(echo.url).toBe("/echo/items?limit=2");
    expect(echo.body).toBe("hello upstream");
    expect(echo.headers["x-request-id"]).toBe("proxy-1");
    expect(echo.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(echo.headers["x-api-key"]).toBeUndefined();
  });

  it("requires an API key before anything reaches the upstream", async () => {
    const before = upstream.hits.get("GET /echo/secret") ?? 0;
    const res = await fetch(`${gateway.url}/api/echo/secret`);
    expect(res.status).toBe(401);
    expect(upstream.hits.get("GET /echo/secret") ?? 0).toBe(before);
  });

  it("keeps the edge's CORS, security and rate-limit headers over the upstream's, and hides what it runs", async () => {
    const res = await fetch(`${gateway.url}/api/loose-headers`, {
      headers: authed({ origin: "https://evil.example" }),
    });
    expect(res.status).toBe(200);
    // The origin is not on the allowlist: no CORS answer at all, whatever the upstream said.
    for (const name of [
      "access-control-allow-origin",
      "access-control-allow-credentials",
      "access-control-expose-headers",
    ]) {
      expect(res.headers.get(name), name).toBeNull();
    }
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    expect(res.headers.get("strict-transport-security")).toContain("max-age=31536000");
    expect(Number(res.headers.get("x-ratelimit-remaining"))).toBeLessThan(999999);
    expect(res.headers.get("x-powered-by")).toBeNull();
    expect(res.headers.get("server")).toBeNull();
    // The upstream's own headers still pass.
    expect(res.headers.get("cache-control")).toBe("max-age=60");
    expect(res.headers.get("x-upstream-version")).toBe("7");
    expect(res.headers.get("constructor")).toBe("a header named like a property of every object");
  });

  it("passes upstream statuses through", async () => {
    const res = await fetch(`${gateway.url}/api/nowhere`, { headers: authed() });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: "not found" });
  });

  it("retries an idempotent GET after a 503", async () => {
    const res = await fetch(`${gateway.url}/api/flaky`, { headers: authed() });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ attempt: 2 });
    expect(upstream.hits.get("GET /flaky")).toBe(2);
  });

  it("never retries a POST", async () => {
    const res = await fetch(`${gateway.url}/api/flaky`, { method: "POST", headers: authed(), body: "{}" });
    expect(res.status).toBe(503);
    expect(upstream.hits.get("POST /flaky")).toBe(1);
  });

  it("504 in the shared error shape when the upstream is too slow", async () => {
    const started = Date.now();
    const res = await fetch(`${gateway.url}/api/slow`, { headers: authed({ "x-request-id": "slow-1" }) });
    expect(res.status).toBe(504);
    expect(await res.json()).toEqual({
      error: { code: "upstream_timeout", message: expect.any(String), requestId: "slow-1" },
    });
    expect(Date.now() - started).toBeLessThan(1500);
    expect(upstream.hits.get("GET /slow")).toBe(1);
  });

  it("413 for bodies above the limit, before contacting the upstream", async () => {
    const res = await fetch(`${gateway.url}/api/echo/big`, {
      method: "POST",
      headers: authed({ "content-type": "application/octet-stream" }),
      body: Buffer.alloc(70_000),
    });
    expect(res.status).toBe(413);
    expect(upstream.hits.get("POST /echo/big")).toBeUndefined();
  });

  it("413 for a chunked body too (no Content-Length), before contacting the upstream", async () => {
    const res = await postChunked(
      `${gateway.url}/api/echo/chunked`,
      authed({ "content-type": "application/octet-stream" }),
      5_000_000,
    );
    expect(res.status).toBe(413);
    expect(upstream.hits.get("POST /echo/chunked")).toBeUndefined();
  });
});

describe("path traversal", () => {
  it("resolves dot segments, raw or percent-encoded, and refuses any that climb above the root", () => {
    expect(upstreamPath("/a/b?x=1")).toBe("/a/b?x=1");
    expect(upstreamPath("/a/./b/../c?x=../y")).toBe("/a/c?x=../y");
    expect(upstreamPath("/a/%2e%2E/b")).toBe("/b");
    expect(upstreamPath("/a/b/..")).toBe("/a/");
    expect(upstreamPath("/a%20b/%2F")).toBe("/a%20b/%2F");
    for (const climbing of ["/..", "/../x", "/%2e%2e/x", "/%2E./x", "/a/../../x", "/a/%2e%2e/%2e%2e/x"]) {
      expect(upstreamPath(climbing), climbing).toBeNull();
    }
    for (const hidden of ["/a/..%2f..%2fx", "/a/..%5Cx", "/a/..\\x", "/a/..;/x", "/a/%zz"]) {
      expect(upstreamPath(hidden), hidden).toBeNull();
    }
  });

  it("never forwards a path starting with // (a network-path reference upstream)", () => {
    expect(upstreamPath("//evil.com/x")).toBe("/evil.com/x");
    expect(upstreamPath("///evil.com/x?y=1")).toBe("/evil.com/x?y=1");
    expect(upstreamPath("/a/..//evil.com/x")).toBe("/evil.com/x");
    expect(upstreamPath("/a//b")).toBe("/a//b");
  });

  it("an absolute-form target is routed, checked and forwarded by its path (RFC 9112 §3.2.2)", async () => {
    const echo = await echoRaw({ path: "http://evil.com/api/echo/x?q=1" });
    expect(echo.url).toBe("/echo/x?q=1");
    // The target's authority is the host asked for (the Host header is ignored).
    expect(echo.headers["x-forwarded-host"]).toBe("evil.com");
    const before = [...upstream.hits.values()].reduce((sum, count) => sum + count, 0);
    for (const path of ["https://h:1/api/echo/../../b", "http://h/api/%2e%2e/admin", "http://h/api/../api/../admin"]) {
      const res = await getRaw(gateway.url, path, authed());
      expect(res.status, path).toBe(400);
    }
    expect([...upstream.hits.values()].reduce((sum, count) => sum + count, 0)).toBe(before);
  });

  it("/api//host/x reaches the upstream as /host/x", async () => {
    expect((await echoRaw({ path: "/api//echo/x" })).url).toBe("/echo/x");
  });

  it("400 over HTTP for ../ and %2e%2e escapes, and nothing reaches the upstream", async () => {
    const before = [...upstream.hits.values()].reduce((sum, count) => sum + count, 0);
    for (const path of [
      "/api/../admin",
      "/api/%2e%2e/admin",
      "/api/echo/%2E%2E/%2e%2e/admin",
      "/api/echo/..%2f..%2fadmin",
    ]) {
      const res = await getRaw(gateway.url, path, authed({ "x-request-id": "traversal-1" }));
      expect(res.status, path).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({ error: { code: "bad_request", requestId: "traversal-1" } });
    }
    expect([...upstream.hits.values()].reduce((sum, count) => sum + count, 0)).toBe(before);
  });

  it("forwards a path whose dot segments stay inside, resolved", async () => {
    const res = await getRaw(gateway.url, "/api/echo/skip/%2e%2e/./kept?q=1", authed());
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as Echo).url).toBe("/echo/kept?q=1");
  });
});

describe("upstream down", () => {
  it("503 + Retry-After when the connection is refused, after bounded retries; /readyz?verbose says so, the process stays ready", async () => {
    const port = await freePort();
    const down = await startApp({ UPSTREAM_URL: `http://127.0.0.1:${port}`, UPSTREAM_RETRIES: "2" });
    try {
      const res = await fetch(`${down.url}/api/anything`, { headers: authed() });
      expect(res.status).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("upstream_unreachable");
      expect((await fetch(`${down.url}/readyz`)).status).toBe(200);
      const ready = await fetch(`${down.url}/readyz?verbose`);
      expect(ready.status).toBe(200);
      const body = (await ready.json()) as { checks: Record<string, string> };
      expect(body.checks.upstream).toMatch(/refused/);
    } finally {
      await down.close();
    }
  });
});

describe("backend-for-frontend /bff/dashboard/:userId", () => {
  it("merges two upstream calls", async () => {
    const res = await fetch(`${gateway.url}/bff/dashboard/42`, { headers: authed() });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      user: { id: "42", name: "Ada Lovelace" },
      orders: [
        { id: "o-1", total: 12.5 },
        { id: "o-2", total: 99 },
      ],
      partial: false,
      errors: [],
    });
  });

  it("degrades when the optional call fails", async () => {
    const res = await fetch(`${gateway.url}/bff/dashboard/no-orders`, { headers: authed() });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { orders: unknown; partial: boolean; errors: Array<{ source: string }> };
    expect(body.orders).toBeNull();
    expect(body.partial).toBe(true);
    expect(body.errors.map((error) => error.source)).toEqual(["orders"]);
  });

  it("fails when the essential call fails", async () => {
    const res = await fetch(`${gateway.url}/bff/dashboard/ghost`, { headers: authed() });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("not_found");
  });

  it("validates the path parameter", async () => {
    const res = await fetch(`${gateway.url}/bff/dashboard/a.b`, { headers: authed() });
    expect(res.status).toBe(400);
  });
});

describe("what crosses the gateway", () => {
  it("a body sent with Expect: 100-continue (curl -T, large --data-binary) is forwarded, Expect is not", async () => {
    const body = "x".repeat(20_000);
    const echo = await echoRaw({
      method: "PUT",
      path: "/api/echo/upload",
      headers: { expect: "100-continue", "content-type": "application/octet-stream" },
      body,
    });
    expect(echo.body).toBe(body);
    expect(echo.headers.expect).toBeUndefined();
  });

  it("drops hop-by-hop headers, and every header Connection names, in both directions", async () => {
    const echo = await echoRaw({
      path: "/api/echo/hop",
      headers: {
        connection: "keep-alive, X-Secret-Hop",
        "x-secret-hop": "for the gateway only",
        "keep-alive": "timeout=5",
        te: "trailers",
        "proxy-connection": "keep-alive",
        "x-end-to-end": "kept",
      },
    });
    for (const name of ["x-secret-hop", "keep-alive", "te", "proxy-connection"]) {
      expect(echo.headers[name], name).toBeUndefined();
    }
    expect(echo.headers["x-end-to-end"]).toBe("kept");
    const res = await sendRaw(gateway.url, { path: "/api/hop-headers", headers: authed() });
    expect(res.status).toBe(200);
    expect(res.headers["x-upstream-hop"]).toBeUndefined();
  });

  it("TRUST_PROXY empty: the client's address claims are dropped, X-Forwarded-* rebuilt from the connection", async () => {
    const echo = await echoRaw({
      path: "/api/echo/who",
      headers: {
        "x-forwarded-for": "6.6.6.6",
        "x-forwarded-host": "evil.example",
        "x-forwarded-proto": "https",
        "x-real-ip": "6.6.6.6",
        forwarded: "for=6.6.6.6;proto=https",
        "true-client-ip": "6.6.6.6",
      },
    });
    expect(echo.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(echo.headers["x-forwarded-host"]).toBe(new URL(gateway.url).host);
    expect(echo.headers["x-forwarded-proto"]).toBe("http");
    for (const name of ["x-real-ip", "forwarded", "true-client-ip"]) expect(echo.headers[name], name).toBeUndefined();
  });

  it("X-Forwarded-* from a trusted proxy are kept (with the peer appended), from anyone else dropped", async () => {
    const claims = {
      "x-forwarded-for": "6.6.6.6",
      "x-forwarded-host": "public.example",
      "x-forwarded-proto": "https",
    };
    const trusting = await startApp({ UPSTREAM_URL: upstream.url, TRUST_PROXY: "127.0.0.1" });
    const elsewhere = await startApp({ UPSTREAM_URL: upstream.url, TRUST_PROXY: "10.0.0.1" });
    try {
      const trusted = await echoRaw({ path: "/api/echo/who", headers: claims }, trusting.url);
      expect(trusted.headers["x-forwarded-for"]).toBe("6.6.6.6, 127.0.0.1");
      expect(trusted.headers["x-forwarded-host"]).toBe("public.example");
      expect(trusted.headers["x-forwarded-proto"]).toBe("https");
      // The peer (127.0.0.1) is not the trusted proxy: none of its claims is believed.
      const untrusted = await echoRaw({ path: "/api/echo/who", headers: claims }, elsewhere.url);
      expect(untrusted.headers["x-forwarded-for"]).toBe("127.0.0.1");
      expect(untrusted.headers["x-forwarded-host"]).toBe(new URL(elsewhere.url).host);
      expect(untrusted.headers["x-forwarded-proto"]).toBe("http");
    } finally {
      await trusting.close();
      await elsewhere.close();
    }
  });

  it("continues the caller's trace: the upstream's parent is the gateway's span, not the caller's", async () => {
    const echo = await echoRaw({
      path: "/api/echo/traced",
      headers: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01`, tracestate: "vendor=1" },
    });
    const [, traceId, parent] = TRACEPARENT.exec(echo.headers.traceparent ?? "") ?? [];
    expect(traceId).toBe(TRACE_ID);
    expect(parent).toMatch(/^[0-9a-f]{16}$/);
    expect(parent).not.toBe(CALLER_SPAN);
    expect(echo.headers.tracestate).toBe("vendor=1");
  });

  it("starts a trace the upstream continues when the caller sends none", async () => {
    const echo = await echoRaw({ path: "/api/echo/untraced" });
    expect(echo.headers.traceparent).toMatch(TRACEPARENT);
    expect(echo.headers.traceparent).not.toContain("0".repeat(32));
  });

  it("the backend-for-frontend calls continue the caller's trace too", async () => {
    const res = await fetch(`${gateway.url}/bff/dashboard/42`, {
      headers: authed({ traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01` }),
    });
    expect(res.status).toBe(200);
    for (const path of ["GET /users/42", "GET /users/42/orders"]) {
      const [, traceId, parent] = TRACEPARENT.exec(String(upstream.seen.get(path)?.traceparent)) ?? [];
      expect(traceId, path).toBe(TRACE_ID);
      expect(parent, path).not.toBe(CALLER_SPAN);
    }
  });
});

describe("upstream failures", () => {
  it("a request undici will not send is the client's 400, not the upstream's 502", () => {
    const refused = upstreamFailure(new errors.NotSupportedError("expect header not supported"));
    expect([refused.statusCode, refused.code]).toEqual([400, "bad_request"]);
    const invalid = upstreamFailure(new errors.InvalidArgumentError("invalid connection header"));
    expect(invalid.statusCode).toBe(400);
  });

  it("logs why an upstream call failed (class, code, message) at warn; the client gets a bare 502", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino(
      { level: "info" },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
          done();
        },
      }),
    );
    const client = new Upstream(upstream.url, { timeoutMs: 300, retries: 0, log });
    try {
      const failure = await client.request({ method: "GET", path: "/reset?token=secret" }).catch((error) => error);
      expect(failure).toMatchObject({ statusCode: 502, code: "upstream_error" });
      const line = lines.find((entry) => entry.msg === "upstream request failed");
      expect(line?.level).toBe(40);
      expect(line?.upstream).toMatchObject({
        method: "GET",
        path: "/reset",
        error: { type: expect.any(String), code: "UND_ERR_SOCKET", message: expect.any(String) },
      });
      expect(JSON.stringify(line)).not.toContain("secret");
    } finally {
      await client.close();
    }
  });

  it("no retry when the upstream's Retry-After ends past the deadline; its 503 and Retry-After pass through", async () => {
    const res = await fetch(`${gateway.url}/api/busy`, { headers: authed() });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("120");
    expect(upstream.hits.get("GET /busy")).toBe(1);
  });

  it("reads Retry-After as seconds or as a date", () => {
    expect(retryAfterMs("3")).toBe(3000);
    expect(retryAfterMs(new Date(Date.now() + 10_000).toUTCString())).toBeGreaterThan(8_000);
    expect(retryAfterMs("soon")).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
  });

  it("retries come out of a budget: a failing upstream gets ~20% more calls, not 1 + UPSTREAM_RETRIES times as many", async () => {
    const client = new Upstream(upstream.url, { timeoutMs: 2_000, retries: 2, backoffMs: 1 });
    try {
      const before = upstream.hits.get("GET /down") ?? 0;
      const statuses = await Promise.all(
        Array.from({ length: 60 }, async () => {
          const response = await client.request({ method: "GET", path: "/down" });
          await response.body.dump();
          return response.statusCode;
        }),
      );
      expect(new Set(statuses)).toEqual(new Set([503]));
      const calls = (upstream.hits.get("GET /down") ?? 0) - before;
      // 60 first attempts, plus the budget's reserve (5) and 20% of them (12), and a little refill.
      expect(calls).toBeGreaterThanOrEqual(60);
      expect(calls).toBeLessThanOrEqual(85);
    } finally {
      await client.close();
    }
  });
});

describe("backend-for-frontend errors", () => {
  it("name no upstream path: that stays in the log", async () => {
    const partial = await fetch(`${gateway.url}/bff/dashboard/no-orders`, { headers: authed() });
    const body = (await partial.json()) as { errors: Array<{ message: string }> };
    expect(body.errors[0]?.message).not.toContain("/users");
    const missing = await fetch(`${gateway.url}/bff/dashboard/ghost`, { headers: authed() });
    const error = ((await missing.json()) as { error: { message: string } }).error;
    expect(error.message).not.toContain("/users");
    expect(error.message).not.toContain("ghost");
  });
});
