// The calls the gateway makes to its upstream, in its metrics, against a real local upstream: one
// observation per request by outcome (its retries included), the retries made, and the retries the
// budget or the deadline refused. Label values are bounded: never a path.
import { spawnSync } from "node:child_process";
import { errors } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Metrics, statusOutcome } from "../src/observability/metrics.js";
import { failureOutcome, Upstream } from "../src/proxy/upstream.js";
import { authed, type RunningApp, startApp } from "./support/app.js";
import { freePort } from "./support/redis.js";
import { startTestUpstream, type TestUpstream } from "./support/upstream.js";

let upstream: TestUpstream;
let gateway: RunningApp;

beforeAll(async () => {
  upstream = await startTestUpstream();
  gateway = await startApp({ UPSTREAM_URL: upstream.url, UPSTREAM_TIMEOUT_MS: "500", UPSTREAM_RETRIES: "2" });
});

afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
});

const requests = (method: string, outcome: string, name = "upstream") =>
  `http_client_request_duration_seconds_count{method="${method}",upstream="${name}",outcome="${outcome}"}`;
const retries = (reason: string, name = "upstream") => `upstream_retries_total{upstream="${name}",reason="${reason}"}`;
const denied = (reason: string, name = "upstream") =>
  `upstream_retries_denied_total{upstream="${name}",reason="${reason}"}`;

/** The value of one series (`name{labels}`, labels in the order exposed); undefined when absent. */
async function value(metrics: Metrics, series: string): Promise<number | undefined> {
  const text = await metrics.registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Every client request observed, whatever its labels. */
async function observed(metrics: Metrics): Promise<number> {
  const text = await metrics.registry.metrics();
  return text
    .split("\n")
    .filter((line) => line.startsWith("http_client_request_duration_seconds_count{"))
    .reduce((sum, line) => sum + Number(line.split(" ")[1]), 0);
}

const get = (path: string, init: RequestInit = {}) => fetch(`${gateway.url}${path}`, { headers: authed(), ...init });

describe("upstream metrics of the proxy", () => {
  it("export the retry counters at 0 from the start, and no request before the first call", async () => {
    const { metrics } = gateway.app;
    for (const reason of ["status", "connection"]) expect(await value(metrics, retries(reason))).toBe(0);
    for (const reason of ["budget", "deadline"]) expect(await value(metrics, denied(reason))).toBe(0);
    expect(await observed(metrics)).toBe(0);
  });

  it("count a success as 2xx, by method and upstream, never by path", async () => {
    const res = await get("/api/echo/items/42?token=secret");
    expect(res.status).toBe(200);
    await res.body?.cancel();
    expect(await value(gateway.app.metrics, requests("GET", "2xx"))).toBe(1);
    const text = await gateway.app.metrics.registry.metrics();
    expect(text).toMatch(
      /^http_client_request_duration_seconds_bucket\{le="\+Inf",method="GET",upstream="upstream",outcome="2xx"\} 1$/m,
    );
    for (const leak of ["/echo", "42", "secret"]) {
      expect(text.split("\n").filter((line) => /^(http_client_|upstream_)/.test(line) && line.includes(leak))).toEqual(
        [],
      );
    }
  });

  it("count the upstream's 4xx as 4xx", async () => {
    expect((await get("/api/nowhere")).status).toBe(404);
    expect(await value(gateway.app.metrics, requests("GET", "4xx"))).toBe(1);
  });

  it("observe a request once, retries included, and count its retries", async () => {
    const before = upstream.hits.get("GET /down") ?? 0;
    expect((await get("/api/down")).status).toBe(503);
    // Three attempts (UPSTREAM_RETRIES=2), one logical request.
    expect((upstream.hits.get("GET /down") ?? 0) - before).toBe(3);
    expect(await value(gateway.app.metrics, requests("GET", "5xx"))).toBe(1);
    expect(await value(gateway.app.metrics, retries("status"))).toBe(2);
  });

  it("count a 503 retried into a 200 as 2xx, its retry as made", async () => {
    expect((await get("/api/flaky")).status).toBe(200);
    expect(await value(gateway.app.metrics, requests("GET", "2xx"))).toBe(2);
    expect(await value(gateway.app.metrics, retries("status"))).toBe(3);
  });

  it("count a POST's 5xx as 5xx, not retried and no retry refused", async () => {
    expect((await get("/api/down", { method: "POST", body: "{}" })).status).toBe(503);
    expect(await value(gateway.app.metrics, requests("POST", "5xx"))).toBe(1);
    expect(await value(gateway.app.metrics, retries("status"))).toBe(3);
    expect(await value(gateway.app.metrics, denied("budget"))).toBe(0);
    expect(await value(gateway.app.metrics, denied("deadline"))).toBe(0);
  });

  it("count a timeout as timeout (timeouts are not retried)", async () => {
    expect((await get("/api/slow")).status).toBe(504);
    expect(await value(gateway.app.metrics, requests("GET", "timeout"))).toBe(1);
    expect(await value(gateway.app.metrics, retries("connection"))).toBe(0);
  });

  it("count a retry the deadline refuses (Retry-After past it) as denied", async () => {
    expect((await get("/api/busy")).status).toBe(503);
    expect(await value(gateway.app.metrics, denied("deadline"))).toBe(1);
    expect(await value(gateway.app.metrics, requests("GET", "5xx"))).toBe(2);
  });

  it("do not count the readiness probe: dependency_up is its series", async () => {
    const before = await observed(gateway.app.metrics);
    expect((await fetch(`${gateway.url}/readyz?verbose`)).status).toBe(200);
    expect(await observed(gateway.app.metrics)).toBe(before);
  });

  it("pass promtool check metrics", async (context) => {
    const text = await gateway.app.metrics.registry.metrics();
    const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    if (check.error !== undefined) context.skip();
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
  });
});

describe("upstream metrics without an upstream", () => {
  it("count a refused connection as refused, after its retries", async () => {
    const down = await startApp({ UPSTREAM_URL: `http://127.0.0.1:${await freePort()}`, UPSTREAM_RETRIES: "2" });
    try {
      expect((await fetch(`${down.url}/api/anything`, { headers: authed() })).status).toBe(503);
      expect(await value(down.app.metrics, requests("GET", "refused"))).toBe(1);
      expect(await value(down.app.metrics, retries("connection"))).toBe(2);
      expect(await observed(down.app.metrics)).toBe(1);
    } finally {
      await down.close();
    }
  });
});

describe("an Upstream given its metrics", () => {
  it("counts a retry the spent budget refuses as denied", async () => {
    const metrics = new Metrics();
    // No reserve and no deposit: the budget refuses the first retry.
    const client = new Upstream(upstream.url, {
      timeoutMs: 2_000,
      retries: 2,
      backoffMs: 1,
      retryRatio: 0,
      minRetriesPerSecond: 0,
      metrics: metrics.upstreams.of("orders"),
    });
    try {
      const before = upstream.hits.get("GET /down") ?? 0;
      const response = await client.request({ method: "GET", path: "/down" });
      await response.body.dump();
      expect(response.statusCode).toBe(503);
      expect((upstream.hits.get("GET /down") ?? 0) - before).toBe(1);
      expect(await value(metrics, denied("budget", "orders"))).toBe(1);
      expect(await value(metrics, retries("status", "orders"))).toBe(0);
      expect(await value(metrics, requests("GET", "5xx", "orders"))).toBe(1);
    } finally {
      await client.close();
    }
  });

  it("labels a method outside the known set _OTHER", async () => {
    const metrics = new Metrics();
    const client = new Upstream(upstream.url, { timeoutMs: 2_000, retries: 0, metrics: metrics.upstreams.of("echo") });
    try {
      const response = await client.request({ method: "PURGE", path: "/echo/x" });
      await response.body.dump();
      expect(await value(metrics, requests("_OTHER", "2xx", "echo"))).toBe(1);
      expect(await metrics.registry.metrics()).not.toContain('method="PURGE"');
    } finally {
      await client.close();
    }
  });

  it("records nothing without metrics", async () => {
    const client = new Upstream(upstream.url, { timeoutMs: 2_000, retries: 0 });
    try {
      const response = await client.request({ method: "GET", path: "/echo/x" });
      await response.body.dump();
      expect(response.statusCode).toBe(200);
    } finally {
      await client.close();
    }
  });
});

describe("outcomes", () => {
  it("a status is its class; a failure is what kept the answer away", () => {
    expect([200, 204, 301, 404, 429, 500, 503, 99, 600].map(statusOutcome)).toEqual([
      "2xx",
      "2xx",
      "3xx",
      "4xx",
      "4xx",
      "5xx",
      "5xx",
      "error",
      "error",
    ]);
    const coded = (code: string) => Object.assign(new Error(code), { code });
    expect(failureOutcome(new errors.HeadersTimeoutError())).toBe("timeout");
    expect(failureOutcome(new errors.ConnectTimeoutError())).toBe("timeout");
    expect(failureOutcome(new TypeError("fetch failed", { cause: coded("ECONNREFUSED") }))).toBe("refused");
    expect(failureOutcome(coded("ENOTFOUND"))).toBe("unreachable");
    expect(failureOutcome(coded("EHOSTUNREACH"))).toBe("unreachable");
    expect(failureOutcome(new errors.NotSupportedError("expect header not supported"))).toBe("not_sent");
    expect(failureOutcome(new errors.SocketError("other side closed"))).toBe("error");
    expect(failureOutcome("something else")).toBe("error");
  });
});
