import type { IncomingHttpHeaders } from "node:http";
import type { FastifyBaseLogger } from "fastify";
import { type Dispatcher, Pool } from "undici";
import { HttpError, RETRY_AFTER_SECONDS } from "../errors.js";
import { type RetryReason, statusOutcome, type UpstreamCalls, type UpstreamOutcome } from "../observability/metrics.js";

export interface UpstreamOptions {
  /** Time allowed to connect, and then for response headers and for each body chunk. */
  timeoutMs: number;
  /** Extra attempts for idempotent methods after a connection failure or a 502/503/504 answer. */
  retries: number;
  /** Base backoff in ms; attempt n waits a random time up to base * 2^(n-1) (full jitter). */
  backoffMs?: number;
  /** No retry starts later than this long after the first attempt (default: timeoutMs). */
  deadlineMs?: number;
  /** Retries allowed per first attempt, over time (default 0.2: at most ~20% extra upstream load). */
  retryRatio?: number;
  /** Retries always allowed per second, so a quiet gateway still retries (default 5). */
  minRetriesPerSecond?: number;
  /** Where failures are logged when the request brings no logger of its own. */
  log?: FastifyBaseLogger;
  /**
   * Where the calls are counted (`app.metrics.upstreams.of(name)`): duration and outcome of each
   * request, retries made and refused. Without it nothing is recorded. The readiness probe is not
   * counted: `dependency_up` shows it.
   */
  metrics?: UpstreamCalls;
}

export interface UpstreamRequest {
  method: string;
  /** Path and query, relative to the upstream base URL, starting with "/". */
  path: string;
  headers?: Record<string, string | string[]>;
  body?: Buffer | string | null;
  /** The request's logger (request id, trace id): failures are logged here. */
  log?: FastifyBaseLogger;
}

export interface UpstreamResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData["body"];
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS"]);
const RETRY_STATUSES = new Set([502, 503, 504]);
const TIMEOUT_CODES = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);
const RETRYABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);
/** undici refused to send the request as given (a header or method it does not accept): never the upstream's fault. */
const REFUSED_CODES = new Set(["UND_ERR_INVALID_ARG", "UND_ERR_NOT_SUPPORTED"]);
/** No way to the upstream's host: its name does not resolve, or no route leads there. */
const UNREACHABLE_CODES = new Set(["ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN"]);

function errorCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === "string") return code;
  if (Array.isArray(errors) && errors.length > 0) return errorCode(errors[0]);
  return cause === undefined ? undefined : errorCode(cause);
}

/** What a log needs to tell why a call failed: class, code and message (never headers or bodies). */
export function describeFailure(error: unknown): { type: string; code?: string; message: string } {
  const code = errorCode(error);
  if (!(error instanceof Error))
    return { type: typeof error, ...(code === undefined ? {} : { code }), message: String(error) };
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return { type: error.name, ...(code === undefined ? {} : { code }), message: `${error.message}${cause}` };
}

/**
 * Map a client error to the gateway's answer: timeouts are 504, a refused connection 503 + Retry-After
 * (an outage), a request undici will not send as given 400 (the upstream never saw it), everything else 502.
 */
export function upstreamFailure(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  const code = errorCode(error);
  if (code !== undefined && TIMEOUT_CODES.has(code)) {
    return new HttpError(504, "upstream_timeout", "The upstream service did not answer in time");
  }
  if (code === "ECONNREFUSED") {
    return new HttpError(503, "upstream_unreachable", "The upstream service refused the connection, retry later", {
      "retry-after": RETRY_AFTER_SECONDS,
    });
  }
  if (code !== undefined && REFUSED_CODES.has(code)) {
    return new HttpError(400, "bad_request", "The request cannot be forwarded as sent");
  }
  return new HttpError(502, "upstream_error", "The upstream service failed to answer");
}

/** The `outcome` of a request that got no answer (see UPSTREAM_OUTCOMES). */
export function failureOutcome(error: unknown): UpstreamOutcome {
  const code = errorCode(error);
  if (code === undefined) return "error";
  if (TIMEOUT_CODES.has(code)) return "timeout";
  if (code === "ECONNREFUSED") return "refused";
  if (UNREACHABLE_CODES.has(code)) return "unreachable";
  if (REFUSED_CODES.has(code)) return "not_sent";
  return "error";
}

/** Retry-After (delta-seconds or an HTTP date) in ms; undefined when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === "") return undefined;
  if (/^\s*\d+\s*$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * A retry budget (as in Finagle and Envoy): each first attempt deposits `ratio` of a retry, time
 * deposits `minPerSecond`, each retry withdraws one. While the upstream fails every call, retries
 * add at most ~ratio to its load instead of multiplying it by 1 + UPSTREAM_RETRIES.
 */
export class RetryBudget {
  private balance: number;
  private updatedAt = Date.now();
  private readonly cap: number;

  constructor(
    private readonly ratio: number,
    private readonly minPerSecond: number,
  ) {
    this.cap = Math.max(10, minPerSecond * 10);
    this.balance = minPerSecond;
  }

  private refill(): void {
    const now = Date.now();
    this.balance = Math.min(this.cap, this.balance + ((now - this.updatedAt) / 1000) * this.minPerSecond);
    this.updatedAt = now;
  }

  deposit(): void {
    this.refill();
    this.balance = Math.min(this.cap, this.balance + this.ratio);
  }

  /** Takes one retry from the budget; false when it is spent. */
  withdraw(): boolean {
    this.refill();
    if (this.balance < 1) return false;
    this.balance -= 1;
    return true;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A pooled keep-alive HTTP client for one upstream, with timeouts and bounded retries.
 * Only GET, HEAD and OPTIONS are retried: repeating a POST could apply it twice. Timeouts are not
 * retried either: a slow upstream rarely gets faster under more load. A retry waits the upstream's
 * Retry-After when it sends one (no retry when that ends past the deadline), starts within
 * `deadlineMs` of the first attempt, and needs the retry budget's consent. With `options.metrics`
 * each request is observed once, when it returns or fails (its attempts and waits included).
 */
export class Upstream {
  private readonly pool: Pool;
  private readonly basePath: string;
  private readonly backoffMs: number;
  private readonly deadlineMs: number;
  private readonly budget: RetryBudget;

  constructor(
    baseUrl: string,
    private readonly options: UpstreamOptions,
  ) {
    const url = new URL(baseUrl);
    this.basePath = url.pathname.replace(/\/+$/, "");
    this.backoffMs = options.backoffMs ?? 50;
    this.deadlineMs = options.deadlineMs ?? options.timeoutMs;
    this.budget = new RetryBudget(options.retryRatio ?? 0.2, options.minRetriesPerSecond ?? 5);
    this.pool = new Pool(url.origin, {
      connections: 128,
      connect: { timeout: options.timeoutMs },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 4_000,
    });
  }

  /**
   * How long to wait before attempt `attempt + 1`, or null when no retry fits (deadline, budget);
   * counted in `metrics`, as made or as refused.
   */
  private retryDelay(
    metrics: UpstreamCalls | undefined,
    reason: RetryReason,
    attempt: number,
    deadline: number,
    retryAfter?: number,
  ): number | null {
    const backoff = Math.random() * this.backoffMs * 2 ** (attempt - 1);
    const wait = Math.max(backoff, retryAfter ?? 0);
    if (Date.now() + wait >= deadline) {
      metrics?.denied("deadline");
      return null;
    }
    if (!this.budget.withdraw()) {
      metrics?.denied("budget");
      return null;
    }
    metrics?.retried(reason);
    return wait;
  }

  request(request: UpstreamRequest): Promise<UpstreamResponse> {
    return this.send(request, this.options.metrics);
  }

  private async send(request: UpstreamRequest, metrics: UpstreamCalls | undefined): Promise<UpstreamResponse> {
    const method = request.method.toUpperCase();
    const attempts = IDEMPOTENT.has(method) ? this.options.retries + 1 : 1;
    const started = performance.now();
    const deadline = Date.now() + this.deadlineMs;
    const log = request.log ?? this.options.log;
    this.budget.deposit();
    for (let attempt = 1; ; attempt += 1) {
      try {
        const response = await this.pool.request({
          method: method as Dispatcher.HttpMethod,
          path: `${this.basePath}${request.path}`,
          headers: request.headers ?? {},
          body: request.body ?? null,
        });
        if (attempt < attempts && RETRY_STATUSES.has(response.statusCode)) {
          const retryAfter = retryAfterMs(response.headers["retry-after"]);
          const wait = this.retryDelay(metrics, "status", attempt, deadline, retryAfter);
          if (wait !== null) {
            await response.body.dump();
            await sleep(wait);
            continue;
          }
        }
        metrics?.requested(method, statusOutcome(response.statusCode), (performance.now() - started) / 1000);
        return { statusCode: response.statusCode, headers: response.headers, body: response.body };
      } catch (error) {
        const code = errorCode(error);
        if (attempt < attempts && code !== undefined && RETRYABLE_CODES.has(code)) {
          const wait = this.retryDelay(metrics, "connection", attempt, deadline);
          if (wait !== null) {
            await sleep(wait);
            continue;
          }
        }
        metrics?.requested(method, failureOutcome(error), (performance.now() - started) / 1000);
        const failure = upstreamFailure(error);
        // The answer says little (no internal detail reaches the client): the log says why.
        log?.warn(
          { upstream: { method, path: request.path.split("?")[0], attempts: attempt, error: describeFailure(error) } },
          failure.statusCode === 400 ? "request not forwarded upstream" : "upstream request failed",
        );
        throw failure;
      }
    }
  }

  /**
   * GET `path` and parse a JSON body; non-2xx answers become HttpErrors (404 passes through). The
   * path is logged, never put in the error: the client does not learn the upstream's layout.
   */
  async json(path: string, headers: Record<string, string> = {}, log?: FastifyBaseLogger): Promise<unknown> {
    const response = await this.request({
      method: "GET",
      path,
      headers: { accept: "application/json", ...headers },
      ...(log === undefined ? {} : { log }),
    });
    const logged = log ?? this.options.log;
    if (response.statusCode === 404) {
      await response.body.dump();
      logged?.info({ upstream: { path, statusCode: 404 } }, "upstream has no such resource");
      throw new HttpError(404, "not_found", "The upstream service has no such resource");
    }
    if (response.statusCode < 200 || response.statusCode >= 300) {
      await response.body.dump();
      logged?.warn({ upstream: { path, statusCode: response.statusCode } }, "upstream answered with an error");
      throw new HttpError(502, "upstream_error", `The upstream service answered ${response.statusCode}`);
    }
    try {
      return await response.body.json();
    } catch (error) {
      const failure = upstreamFailure(error);
      logged?.warn({ upstream: { path, error: describeFailure(error) } }, "upstream sent an unreadable body");
      throw failure.statusCode === 504
        ? failure
        : new HttpError(502, "upstream_error", "The upstream service sent invalid JSON");
    }
  }

  /**
   * Readiness: the upstream answers at all (any status below 500). Not counted in the request
   * metrics: it runs at every scrape, and `dependency_up` is its series.
   */
  async probe(path: string): Promise<void> {
    const response = await this.send({ method: "GET", path }, undefined);
    await response.body.dump();
    if (response.statusCode >= 500) throw new Error(`upstream answered ${response.statusCode}`);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
