// Prometheus metrics (prom-client): RED metrics per route template and, where the jobs API is
// served, the producer side of the job bus; where an upstream is proxied, the calls made to it.
// Served by `serveMetrics` on a port of its own (METRICS_PORT, default 9464; 0 = off),
// never on the API port: Prometheus scrapes it without an API key, and the network policy opens
// only that port to the scraper. Counters start at zero with the process; rate() handles resets.
import { createServer, type Server } from "node:http";
import type { FastifyRequest, onRequestHookHandler, RouteOptions } from "fastify";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { App } from "../types.js";

/** What a Gauge reads at scrape time: each dependency's check, "ok" or what is wrong. */
export type DependencyReader = () => Promise<Record<string, string>>;

/** What a Gauge reads at scrape time: lag and pending entries of every partition. */
export type GroupReader = () => Promise<{ partition: number; lag: number; pending: number }[]>;

export class Metrics {
  readonly registry = new Registry();
  readonly requestDuration = new Histogram({
    name: "http_server_request_duration_seconds",
    help: "HTTP requests by method, route template and status code: count (rate, errors) and duration.",
    labelNames: ["method", "route", "status_code"] as const,
    registers: [this.registry],
  });
  #dependencies: DependencyReader | undefined;
  #jobs: JobMetrics | undefined;
  #upstreams: UpstreamMetrics | undefined;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Gauges named like counters: `promtool check metrics` rejects them (nodejs_active_resources
    // still counts the same handles and requests, by type).
    for (const name of [
      "nodejs_active_handles_total",
      "nodejs_active_requests_total",
      "nodejs_active_resources_total",
    ]) {
      this.registry.removeSingleMetric(name);
    }
    const dependencies = (): DependencyReader | undefined => this.#dependencies;
    // A dependency outage never makes the process unready (SPEC 7.2): it shows here, and in
    // /readyz?verbose, from the same checks, run when Prometheus scrapes.
    new Gauge({
      name: "dependency_up",
      help: "1 when a dependency (Redis, the ML service, an upstream) answers its check, 0 when not.",
      labelNames: ["dependency"] as const,
      registers: [this.registry],
      // With HTTP_PROCESSES > 1: 0 as soon as one server process cannot reach it.
      aggregator: "min",
      async collect() {
        const read = dependencies();
        if (read === undefined) return;
        const states = await read().catch(() => ({}));
        this.reset();
        for (const [name, state] of Object.entries(states)) {
          this.set({ dependency: name }, state === "ok" ? 1 : 0);
        }
      },
    });
  }

  /** `dependency_up`: the dependencies' checks, run through `read` at scrape time. */
  watchDependencies(read: DependencyReader): void {
    this.#dependencies = read;
  }

  /**
   * The producer side of the bus, registered by the process that serves the jobs API when it
   * starts (a service without one exports no bus series: a permanent zero reads as "no jobs").
   */
  get jobs(): JobMetrics {
    this.#jobs ??= new JobMetrics(this.registry);
    return this.#jobs;
  }

  /**
   * The client side of the calls to upstream services, registered by the process that mounts a
   * proxy (a service without one exports no `http_client_` or `upstream_` series).
   */
  get upstreams(): UpstreamMetrics {
    this.#upstreams ??= new UpstreamMetrics(this.registry);
    return this.#upstreams;
  }
}

/** The producer side of the job bus: jobs accepted and failed here, the streams' lag and pending. */
export class JobMetrics {
  readonly accepted: Counter;
  /** Jobs the gateway ended failed itself (reason deadline_exceeded); the workers count theirs. */
  readonly failed: Counter<"reason">;
  /** Every value of `failed`'s `reason` this process counts (the deadline sweep's). */
  static readonly failureReasons = ["deadline_exceeded"] as const;
  #groups: GroupReader | undefined;

  constructor(registry: Registry) {
    this.accepted = new Counter({
      name: "bus_jobs_accepted_total",
      help: "Jobs written to the bus by this producer.",
      registers: [registry],
    });
    this.failed = new Counter({
      name: "bus_jobs_failed_total",
      help: "Jobs this process ended failed, by reason.",
      labelNames: ["reason"] as const,
      registers: [registry],
    });
    // A labelled series appears at its first increment, already at 1, and increase() over a window
    // that starts with it sees nothing: exported at 0 from the start, the first failure counts.
    for (const reason of JobMetrics.failureReasons) this.failed.inc({ reason }, 0);
    const reader = (): GroupReader | undefined => this.#groups;
    // Read from Redis when Prometheus scrapes (XINFO GROUPS per partition), so they are fresh.
    new Gauge({
      name: "bus_stream_lag",
      help: "Entries of a job stream not yet delivered to the group.",
      labelNames: ["partition"] as const,
      registers: [registry],
      // Every server process reads the same streams: with HTTP_PROCESSES > 1, one answer, not a sum.
      aggregator: "first",
      async collect() {
        const read = reader();
        if (read === undefined) return;
        this.reset();
        for (const group of await read().catch(() => [])) {
          this.set({ partition: String(group.partition) }, group.lag);
        }
      },
    });
    new Gauge({
      name: "bus_stream_pending",
      help: "Entries delivered to a worker and not acknowledged yet.",
      labelNames: ["partition"] as const,
      registers: [registry],
      // Every server process reads the same streams: with HTTP_PROCESSES > 1, one answer, not a sum.
      aggregator: "first",
      async collect() {
        const read = reader();
        if (read === undefined) return;
        this.reset();
        for (const group of await read().catch(() => [])) {
          this.set({ partition: String(group.partition) }, group.pending);
        }
      },
    });
  }

  /** Lag and pending gauges read through `read` at scrape time. */
  watchGroups(read: GroupReader): void {
    this.#groups = read;
  }
}

/**
 * `outcome` of a call to an upstream: the class of its final status, or why no answer came.
 * - `2xx` … `5xx`: the answer after the last attempt (a 503 retried into a 200 is a `2xx`);
 * - `timeout`: no connection, or no answer headers, within the upstream's timeout;
 * - `refused`: the connection was refused (nothing listens: the upstream is down or restarting);
 * - `unreachable`: its name does not resolve, or no route leads to its host;
 * - `not_sent`: the HTTP client refused the request as given (the caller's 400, never the upstream's fault);
 * - `error`: anything else (a connection reset or closed before the answer, an unreadable answer).
 */
export const UPSTREAM_OUTCOMES = [
  "2xx",
  "3xx",
  "4xx",
  "5xx",
  "timeout",
  "refused",
  "unreachable",
  "not_sent",
  "error",
] as const;
export type UpstreamOutcome = (typeof UPSTREAM_OUTCOMES)[number];

/** Why a retry was made (`upstream_retries_total{reason}`): a 502/503/504 answer, or a connection failure. */
export const RETRY_REASONS = ["status", "connection"] as const;
export type RetryReason = (typeof RETRY_REASONS)[number];

/** Why a retry was refused (`upstream_retries_denied_total{reason}`): the retry budget was spent, or it would start past the deadline. */
export const RETRY_DENIALS = ["budget", "deadline"] as const;
export type RetryDenial = (typeof RETRY_DENIALS)[number];

/** The `method` label's values; any other method is `_OTHER` (OpenTelemetry's convention). */
const CLIENT_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** A status code's `outcome`: its class (anything outside 200-599 is no answer HTTP defines: `error`). */
export function statusOutcome(statusCode: number): UpstreamOutcome {
  if (statusCode >= 200 && statusCode < 300) return "2xx";
  if (statusCode >= 300 && statusCode < 400) return "3xx";
  if (statusCode >= 400 && statusCode < 500) return "4xx";
  if (statusCode >= 500 && statusCode < 600) return "5xx";
  return "error";
}

/**
 * The calls to upstream services: OpenTelemetry's `http.client.request.duration`, one observation
 * per logical request (its retries and their waits included), and the retries made and refused.
 * Every label value comes from a set known in advance (an upstream's name, given by the code, a
 * method, an outcome, a reason); never a path, an id or a key.
 */
export class UpstreamMetrics {
  readonly duration: Histogram<"method" | "upstream" | "outcome">;
  readonly retries: Counter<"upstream" | "reason">;
  readonly retriesDenied: Counter<"upstream" | "reason">;
  readonly #calls = new Map<string, UpstreamCalls>();

  constructor(registry: Registry) {
    this.duration = new Histogram({
      name: "http_client_request_duration_seconds",
      help: `Requests to upstreams by method, upstream and outcome (${UPSTREAM_OUTCOMES.join(", ")}), retries included: count and duration until the answer's headers or the failure.`,
      labelNames: ["method", "upstream", "outcome"] as const,
      registers: [registry],
    });
    this.retries = new Counter({
      name: "upstream_retries_total",
      help: `Retries of requests to upstreams, by upstream and reason: ${RETRY_REASONS.join(", ")}.`,
      labelNames: ["upstream", "reason"] as const,
      registers: [registry],
    });
    this.retriesDenied = new Counter({
      name: "upstream_retries_denied_total",
      help: `Retries a request to an upstream qualified for and did not get, by upstream and reason: ${RETRY_DENIALS.join(", ")}.`,
      labelNames: ["upstream", "reason"] as const,
      registers: [registry],
    });
  }

  /**
   * The series of the upstream named `upstream` (a name the code gives it, like its readiness
   * check's), its counters exported at 0 from the start: a labelled series born at its first
   * increment, already at 1, is invisible to increase() over a window that starts with it.
   */
  of(upstream: string): UpstreamCalls {
    let calls = this.#calls.get(upstream);
    if (calls === undefined) {
      calls = new UpstreamCalls(this, upstream);
      this.#calls.set(upstream, calls);
    }
    return calls;
  }
}

type Observe = (seconds: number) => void;
type Increment = () => void;

/**
 * What one upstream's client (`Upstream`, ../proxy/upstream.ts) records. The label sets are made
 * once (each histogram child at its first use), so a request allocates none.
 */
export class UpstreamCalls {
  readonly #metrics: UpstreamMetrics;
  readonly #upstream: string;
  /** Histogram children by method label, then outcome. */
  readonly #observers = new Map<string, Map<UpstreamOutcome, Observe>>();
  readonly #retried: Record<RetryReason, Increment>;
  readonly #denied: Record<RetryDenial, Increment>;

  constructor(metrics: UpstreamMetrics, upstream: string) {
    this.#metrics = metrics;
    this.#upstream = upstream;
    const counter = (family: Counter<"upstream" | "reason">, reason: string): Increment => {
      family.inc({ upstream, reason }, 0);
      const child = family.labels({ upstream, reason });
      return () => child.inc();
    };
    this.#retried = {
      status: counter(metrics.retries, "status"),
      connection: counter(metrics.retries, "connection"),
    };
    this.#denied = {
      budget: counter(metrics.retriesDenied, "budget"),
      deadline: counter(metrics.retriesDenied, "deadline"),
    };
  }

  /** One logical request, `seconds` from its first attempt to its answer's headers or its failure. */
  requested(method: string, outcome: UpstreamOutcome, seconds: number): void {
    const label = CLIENT_METHODS.has(method) ? method : "_OTHER";
    let byOutcome = this.#observers.get(label);
    if (byOutcome === undefined) {
      byOutcome = new Map();
      this.#observers.set(label, byOutcome);
    }
    let observe = byOutcome.get(outcome);
    if (observe === undefined) {
      const child = this.#metrics.duration.labels({ method: label, upstream: this.#upstream, outcome });
      observe = (value) => child.observe(value);
      byOutcome.set(outcome, observe);
    }
    observe(seconds);
  }

  /** A retry is about to be made. */
  retried(reason: RetryReason): void {
    this.#retried[reason]();
  }

  /** A retry the request qualified for was refused. */
  denied(reason: RetryDenial): void {
    this.#denied[reason]();
  }
}

declare module "fastify" {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

/**
 * Decorates `app.metrics` and observes every response by its route template (404s: "unmatched").
 * A successful WebSocket upgrade hijacks its reply, so no onResponse runs for it: it is observed as
 * status 101 when the socket's handler starts, its duration from the request to the upgrade.
 */
export function registerMetrics(app: App): Metrics {
  const metrics = new Metrics();
  app.decorate("metrics", metrics);
  app.addHook("onResponse", (request, reply, done) => {
    metrics.requestDuration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? "unmatched",
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
    done();
  });
  app.addHook("onRoute", (route) => observeUpgrades(route, metrics));
  return metrics;
}

/** Handler of a `websocket: true` route (@fastify/websocket calls it with the socket once upgraded). */
type SocketHandler = (this: unknown, socket: unknown, request: FastifyRequest) => unknown;

/** Wraps a WebSocket route (registered after this hook, as every route is) to observe its upgrades. */
function observeUpgrades(route: RouteOptions, metrics: Metrics): void {
  if ((route as { websocket?: unknown }).websocket !== true) return;
  const started = new WeakMap<FastifyRequest, number>();
  const own: onRequestHookHandler = (request, _reply, done) => {
    started.set(request, performance.now());
    done();
  };
  const hooks = route.onRequest;
  route.onRequest = hooks === undefined ? [own] : [own, ...(Array.isArray(hooks) ? hooks : [hooks])];
  const handler = route.handler as unknown as SocketHandler;
  const upgraded: SocketHandler = function (socket, request) {
    const since = started.get(request) ?? performance.now();
    const labels = { method: request.method, route: request.routeOptions.url ?? route.url, status_code: "101" };
    metrics.requestDuration.observe(labels, (performance.now() - since) / 1000);
    return handler.call(this, socket, request);
  };
  route.handler = upgraded as unknown as RouteOptions["handler"];
}

/**
 * Listens on host:port; a port taken by another process of this machine (a second local instance)
 * is replaced by any free one (in Kubernetes every pod has the port to itself). Returns the URL.
 */
export async function listenForScrapes(
  server: Server,
  host: string,
  port: number,
  onTaken: () => void,
): Promise<string> {
  const listen = (wanted: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(wanted, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  try {
    await listen(port);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    onTaken();
    await listen(0);
  }
  const address = server.address();
  return `http://${host}:${address !== null && typeof address !== "string" ? address.port : port}/metrics`;
}

/** GET /metrics on host:port (0: nothing); the server is closed with the app. */
export async function serveMetrics(app: App, host: string, port: number): Promise<Server | undefined> {
  if (port === 0) return undefined;
  const server = createServer((req, res) => {
    if (req.method !== "GET" || req.url?.split("?")[0] !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    app.metrics.registry
      .metrics()
      .then((body) => res.writeHead(200, { "content-type": app.metrics.registry.contentType }).end(body))
      .catch((err: unknown) => {
        app.log.error({ err }, "metrics collection failed");
        res.writeHead(500).end();
      });
  });
  const url = await listenForScrapes(server, host, port, () =>
    app.log.warn({ wanted: port }, "metrics port taken, using another"),
  );
  app.addHook("onClose", async () => {
    const closed = new Promise((resolve) => server.close(resolve));
    server.closeAllConnections(); // a scraper's keep-alive connection must not hold the shutdown
    await closed;
  });
  app.log.info({ metrics: url }, "metrics listening");
  return server;
}
