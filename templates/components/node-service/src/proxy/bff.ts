import { propagation } from "@opentelemetry/api";
import { Type } from "typebox";
import { Compile } from "typebox/compile";
import { ErrorResponse, HttpError, REQUEST_ID_HEADER } from "../errors.js";
import { traceContextOf } from "../observability/tracing.js";
import type { App } from "../types.js";
import { type Upstream, upstreamFailure } from "./upstream.js";

const JsonObject = Type.Record(Type.String(), Type.Unknown());
const UserCheck = Compile(JsonObject);
const OrdersCheck = Compile(Type.Array(JsonObject, { maxItems: 1000 }));

const SourceError = Type.Object(
  { source: Type.String(), code: Type.String(), message: Type.String() },
  { additionalProperties: false },
);

const Dashboard = Type.Object(
  {
    user: JsonObject,
    orders: Type.Union([Type.Array(JsonObject), Type.Null()]),
    partial: Type.Boolean(),
    errors: Type.Array(SourceError),
  },
  { additionalProperties: false },
);

type Outcome<T> = { ok: true; value: T } | { ok: false; error: HttpError };

async function settle<T>(
  work: Promise<unknown>,
  check: (value: unknown) => value is T,
  source: string,
): Promise<Outcome<T>> {
  try {
    const value = await work;
    if (!check(value))
      return {
        ok: false,
        error: new HttpError(502, "upstream_error", `The upstream ${source} has an unexpected shape`),
      };
    return { ok: true, value };
  } catch (error) {
    return { ok: false, error: upstreamFailure(error) };
  }
}

/**
 * Backend-for-frontend example: one round trip for a client screen that needs two upstream calls.
 * Both calls run in parallel. The user is essential: if it fails the whole request fails (404, 502
 * or 504). Orders are optional: if they fail the answer is still 200 with `orders: null`,
 * `partial: true` and the reason in `errors`, so the screen can render in a degraded state.
 */
export function registerBff(app: App, upstream: Upstream): void {
  app.get(
    "/bff/dashboard/:userId",
    {
      schema: {
        params: Type.Object(
          { userId: Type.String({ pattern: "^[A-Za-z0-9_-]{1,64}$" }) },
          { additionalProperties: false },
        ),
        response: { 200: Dashboard, "4xx": ErrorResponse, "5xx": ErrorResponse },
      },
    },
    async (request) => {
      const id = encodeURIComponent(request.params.userId);
      const headers: Record<string, string> = { [REQUEST_ID_HEADER]: request.id };
      // The request's span is the parent of both calls (`traceparent`, `tracestate`).
      propagation.inject(traceContextOf(request), headers);
      const get = (path: string) => upstream.json(path, headers, request.log);
      const [user, orders] = await Promise.all([
        settle(get(`/users/${id}`), (value) => UserCheck.Check(value), "user"),
        settle(get(`/users/${id}/orders`), (value) => OrdersCheck.Check(value), "orders"),
      ]);
      if (!user.ok) throw user.error;
      if (!orders.ok) request.log.warn({ err: orders.error }, "dashboard served without orders");
      return {
        user: user.value,
        orders: orders.ok ? orders.value : null,
        partial: !orders.ok,
        errors: orders.ok ? [] : [{ source: "orders", code: orders.error.code, message: orders.error.message }],
      };
    },
  );
}
