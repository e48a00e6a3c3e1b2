import type { IncomingHttpHeaders } from "node:http";
import { type Dispatcher, Pool } from "undici";
import { HttpError, RETRY_AFTER_SECONDS } from "../errors.js";

export interface UpstreamOptions {
  /** Time allowed to connect, and then for response headers and for each body chunk. */
  timeoutMs: number;
  /** Extra attempts for idempotent methods after a connection failure or a 502/503/504 answer. */
  retries: number;
  /** Base backoff in ms; attempt n waits a random time up to base * 2^(n-1) (full jitter). */
  backoffMs?: number;
}

export interface UpstreamRequest {
  method: string;
  /** Path and query, relative to the upstream base URL, starting with "/". */
  path: string;
  headers?: Record<string, string | string[]>;
  body?: Buffer | string | null;
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

function errorCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === "string") return code;
  if (Array.isArray(errors) && errors.length > 0) return errorCode(errors[0]);
  return cause === undefined ? undefined : errorCode(cause);
}

/** Map a client error to the gateway's answer: timeouts are 504, a refused connection 503 + Retry-After (an outage), everything else 502. */
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
  return new HttpError(502, "upstream_error", "The upstream service failed to answer");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A pooled keep-alive HTTP client for one upstream, with timeouts and bounded retries.
 * Only GET, HEAD and OPTIONS are retried: repeating a POST could apply it twice.
 * Timeouts are not retried either: a slow upstream rarely gets faster under more load.
 */
export class Upstream {
  private readonly pool: Pool;
  private readonly basePath: string;
  private readonly backoffMs: number;

  constructor(
    baseUrl: string,
    private readonly options: UpstreamOptions,
  ) {
    const url = new URL(baseUrl);
    this.basePath = url.pathname.replace(/\/+$/, "");
    this.backoffMs = options.backoffMs ?? 50;
    this.pool = new Pool(url.origin, {
      connections: 128,
      connect: { timeout: options.timeoutMs },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 4_000,
    });
  }

  async request(request: UpstreamRequest): Promise<UpstreamResponse> {
    const method = request.method.toUpperCase();
    const attempts = IDEMPOTENT.has(method) ? this.options.retries + 1 : 1;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const response = await this.pool.request({
          method: method as Dispatcher.HttpMethod,
          path: `${this.basePath}${request.path}`,
          headers: request.headers ?? {},
          body: request.body ?? null,
        });
        if (attempt < attempts && RETRY_STATUSES.has(response.statusCode)) {
          await response.body.dump();
          await sleep(Math.random() * this.backoffMs * 2 ** (attempt - 1));
          continue;
        }
        return { statusCode: response.statusCode, headers: response.headers, body: response.body };
      } catch (error) {
        const code = errorCode(error);
        if (attempt < attempts && code !== undefined && RETRYABLE_CODES.has(code)) {
          await sleep(Math.random() * this.backoffMs * 2 ** (attempt - 1));
          continue;
        }
        throw upstreamFailure(error);
      }
    }
  }

  /** GET `path` and parse a JSON body; non-2xx answers become HttpErrors (404 passes through). */
  async json(path: string, headers: Record<string, string> = {}): Promise<unknown> {
    const response = await this.request({ method: "GET", path, headers: { accept: "application/json", ...headers } });
    if (response.statusCode === 404) {
      await response.body.dump();
      throw new HttpError(404, "not_found", `Upstream has no resource at ${path}`);
    }
    if (response.statusCode < 200 || response.statusCode >= 300) {
      await response.body.dump();
      throw new HttpError(502, "upstream_error", `Upstream answered ${response.statusCode} for ${path}`);
    }
    try {
      return await response.body.json();
    } catch (error) {
      const failure = upstreamFailure(error);
      throw failure.statusCode === 504
        ? failure
        : new HttpError(502, "upstream_error", `Upstream sent invalid JSON for ${path}`);
    }
  }

  /** Readiness: the upstream answers at all (any status below 500). */
  async probe(path: string): Promise<void> {
    const response = await this.request({ method: "GET", path });
    await response.body.dump();
    if (response.statusCode >= 500) throw new Error(`upstream answered ${response.statusCode}`);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
