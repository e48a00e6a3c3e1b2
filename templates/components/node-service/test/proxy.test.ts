import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { upstreamPath } from "../src/proxy/proxy.js";
import { authed, type RunningApp, startApp } from "./support/app.js";
import { getRaw, postChunked } from "./support/http.js";
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
