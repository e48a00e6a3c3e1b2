// HTTP client for the internal ML service: one keep-alive undici Pool, bounded timeouts,
// and a fixed mapping of upstream failures to gateway statuses (4xx validation → same, 5xx → 502,
// timeout → 504, unreachable → 503 + Retry-After).
import { Compile } from "typebox/compile";
import { Pool } from "undici";
import { HttpError, unavailable } from "../errors.js";
import { type PredictRequest, PredictResponse } from "./schemas.js";

const checkPredictResponse = Compile(PredictResponse);
const TIMEOUT_CODES = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);
/** Nothing listens (or the name does not resolve): an outage, answered 503 + Retry-After. */
const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

export interface MlClientOptions {
  url: string;
  apiKey?: string | undefined;
  timeoutMs: number;
  connections?: number;
}

export class MlClient {
  readonly #pool: Pool;
  readonly #basePath: string;
  readonly #apiKey: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: MlClientOptions) {
    const url = new URL(options.url);
    this.#basePath = url.pathname.replace(/\/+$/, "");
    this.#apiKey = options.apiKey;
    this.#timeoutMs = options.timeoutMs;
    this.#pool = new Pool(url.origin, {
      connections: options.connections ?? 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connectTimeout: options.timeoutMs,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  /** `traceparent`: the request's trace, continued by the ML service's span. */
  async predict(body: PredictRequest, requestId: string, traceparent?: string): Promise<PredictResponse> {
    const { status, payload } = await this.#call("POST", "/predict", requestId, body, traceparent);
    if (status === 400 || status === 422) {
      const { code, message } = upstreamError(payload);
      throw new HttpError(status, code, message);
    }
    if (status < 200 || status >= 300) {
      throw new HttpError(502, "bad_gateway", `The ML service answered ${status}`);
    }
    if (!checkPredictResponse.Check(payload)) {
      throw new HttpError(502, "bad_gateway", "The ML service sent an invalid response");
    }
    return payload;
  }

  /** Resolves when the ML service is ready (its /readyz answers 2xx: model loaded, Redis reachable). */
  async ready(requestId: string): Promise<void> {
    const { status } = await this.#call("GET", "/readyz", requestId);
    if (status < 200 || status >= 300) {
      throw new HttpError(502, "bad_gateway", `ML /readyz answered ${status}`);
    }
  }

  close(): Promise<void> {
    return this.#pool.close();
  }

  async #call(
    method: "GET" | "POST",
    path: string,
    requestId: string,
    body?: unknown,
    traceparent?: string,
  ): Promise<{ status: number; payload: unknown }> {
    const headers: Record<string, string> = { accept: "application/json", "x-request-id": requestId };
    if (traceparent !== undefined) headers.traceparent = traceparent;
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.#apiKey) headers["x-api-key"] = this.#apiKey;
    try {
      const res = await this.#pool.request({
        method,
        path: this.#basePath + path,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        // One deadline for the whole exchange; the pool's own timeouts are coarser (≈0.5 s ticks).
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      const text = await res.body.text();
      let payload: unknown = null;
      if (text.length > 0) {
        try {
          payload = JSON.parse(text);
        } catch {
          payload = null;
        }
      }
      return { status: res.statusCode, payload };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if ((typeof code === "string" && TIMEOUT_CODES.has(code)) || (err as Error).name === "TimeoutError") {
        throw new HttpError(504, "gateway_timeout", "The ML service did not answer in time");
      }
      if (typeof code === "string" && UNREACHABLE_CODES.has(code)) {
        throw unavailable("The ML service is unreachable, retry later");
      }
      throw new HttpError(502, "bad_gateway", "The ML service failed to answer");
    }
  }
}

/** The code and message of an ML 400/422 answer (the shared error shape, or FastAPI's `detail`). */
function upstreamError(payload: unknown): { code: string; message: string } {
  const fallback = { code: "validation_error", message: "The ML service rejected the request" };
  if (typeof payload !== "object" || payload === null) return fallback;
  const { error, detail } = payload as { error?: { code?: unknown; message?: unknown }; detail?: unknown };
  if (typeof error?.message === "string") {
    return { code: typeof error.code === "string" ? error.code : fallback.code, message: error.message };
  }
  if (typeof detail === "string") return { code: fallback.code, message: detail };
  if (Array.isArray(detail)) {
    const first = detail[0] as { loc?: unknown; msg?: unknown } | undefined;
    if (typeof first?.msg === "string") {
      const where = Array.isArray(first.loc) ? `${first.loc.join(".")}: ` : "";
      return { code: fallback.code, message: `${where}${first.msg}` };
    }
  }
  return fallback;
}
