import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { type StubServer, startStubServer } from "./http.js";

export interface TestUpstream extends StubServer {
  /** Requests seen, by "METHOD path". */
  hits: Map<string, number>;
  /** The headers of the last request, by "METHOD path". */
  seen: Map<string, IncomingHttpHeaders>;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

/**
 * An upstream for the proxy tests:
 * - /echo/*            echoes method, url, headers and body;
 * - /flaky             503 on the first call of each method, then 200;
 * - /slow              answers after 2 s (longer than the test timeout);
 * - /users/:id         a user (id "ghost" → 404);
 * - /users/:id/orders  a list of orders (id "no-orders" → 500);
 * - /loose-headers     200 with headers that would loosen the edge's policies, and two of its own;
 * - /hop-headers       200 with a header its `Connection` header names (hop-by-hop);
 * - /busy              503 with `Retry-After: 120`, every time;
 * - /down              503 without Retry-After, every time;
 * - /reset             drops the connection without answering.
 */
export async function startTestUpstream(): Promise<TestUpstream> {
  const hits = new Map<string, number>();
  const seen = new Map<string, IncomingHttpHeaders>();
  const server = await startStubServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://upstream");
    const key = `${req.method} ${url.pathname}`;
    const count = (hits.get(key) ?? 0) + 1;
    hits.set(key, count);
    seen.set(key, req.headers);
    if (url.pathname === "/reset") {
      req.socket.destroy();
      return;
    }
    void (async () => {
      const body = await readBody(req);
      if (url.pathname.startsWith("/echo")) {
        return json(res, 200, { method: req.method, url: req.url, headers: req.headers, body });
      }
      if (url.pathname === "/loose-headers") {
        res.writeHead(200, {
          "content-type": "application/json",
          "access-control-allow-origin": "*",
          "access-control-allow-credentials": "true",
          "access-control-expose-headers": "x-internal",
          "content-security-policy": "default-src *",
          "x-frame-options": "ALLOWALL",
          "strict-transport-security": "max-age=0",
          "x-ratelimit-remaining": "999999",
          "x-powered-by": "Express",
          server: "upstream/1.0",
          "cache-control": "max-age=60",
          "x-upstream-version": "7",
          constructor: "a header named like a property of every object",
        });
        return res.end("{}");
      }
      if (url.pathname === "/hop-headers") {
        res.writeHead(200, {
          "content-type": "application/json",
          connection: "keep-alive, x-upstream-hop",
          "x-upstream-hop": "for the gateway's connection only",
        });
        return res.end("{}");
      }
      if (url.pathname === "/busy") return json(res.setHeader("retry-after", "120"), 503, { error: "busy" });
      if (url.pathname === "/down") return json(res, 503, { error: "down" });
      if (url.pathname === "/flaky") {
        return count === 1 ? json(res, 503, { error: "warming up" }) : json(res, 200, { attempt: count });
      }
      if (url.pathname === "/slow") {
        const timer = setTimeout(() => json(res, 200, { late: true }), 2000);
        res.on("close", () => clearTimeout(timer));
        return;
      }
      const orders = /^\/users\/([^/]+)\/orders$/.exec(url.pathname);
      if (orders) {
        if (orders[1] === "no-orders") return json(res, 500, { error: "orders database down" });
        return json(res, 200, [
          { id: "o-1", total: 12.5 },
          { id: "o-2", total: 99 },
        ]);
      }
      const user = /^\/users\/([^/]+)$/.exec(url.pathname);
      if (user) {
        if (user[1] === "ghost") return json(res, 404, { error: "no such user" });
        return json(res, 200, { id: user[1], name: "Ada Lovelace" });
      }
      return json(res, 404, { error: "not found" });
    })();
  });
  return { ...server, hits, seen };
}
