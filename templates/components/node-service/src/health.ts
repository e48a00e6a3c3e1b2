import { Type } from "typebox";
import type { Config } from "./config.js";
import { ErrorResponse, HttpError, RETRY_AFTER_SECONDS } from "./errors.js";
import type { App } from "./types.js";

/**
 * A dependency probe for /readyz: resolve when the dependency answers, throw otherwise. /readyz is
 * public, so it shows the message of an HttpError (written for clients) and "unavailable" for any
 * other error, whose text goes to the log only.
 */
export interface ReadinessCheck {
  name: string;
  check: () => Promise<void>;
}

declare module "fastify" {
  interface FastifyInstance {
    /**
     * Checks run by GET /readyz. Plugins add their own at registration time:
     * `app.readinessChecks.push({ name: "redis", check: async () => { await redis.ping(); } })`.
     * The array is shared by every encapsulation context, so child plugins can push too.
     */
    readinessChecks: ReadinessCheck[];
  }
}

const CHECK_TIMEOUT_MS = 2000;

const HealthResponse = Type.Object({ status: Type.Literal("ok") }, { additionalProperties: false });
const ReadyResponse = Type.Object(
  {
    status: Type.Union([Type.Literal("ready"), Type.Literal("unavailable")]),
    checks: Type.Record(Type.String(), Type.String()),
  },
  { additionalProperties: false },
);

/** "ok", or what a client may read about the failure; details are logged. */
async function run(check: ReadinessCheck, log: App["log"]): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new HttpError(503, "timeout", `timed out after ${CHECK_TIMEOUT_MS} ms`)),
      CHECK_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([check.check(), timeout]);
    return "ok";
  } catch (error) {
    log.warn({ err: error, check: check.name }, "readiness check failed");
    return error instanceof HttpError ? error.message : "unavailable";
  } finally {
    clearTimeout(timer);
  }
}

/**
 * GET /healthz (liveness: the process serves HTTP) and GET /readyz (readiness: every check passes).
 * Probes need no API key, are never rate limited, and log their requests only at `probeLogLevel`.
 */
export function registerHealth(app: App, probeLogLevel: Config["LOG_LEVEL"]): void {
  app.decorate("readinessChecks", [] as ReadinessCheck[]);

  const publicProbe = { public: true, rateLimit: false } as const;

  app.get(
    "/healthz",
    { config: publicProbe, schema: { response: { 200: HealthResponse } }, logLevel: probeLogLevel },
    async () => ({ status: "ok" as const }),
  );

  app.get(
    "/readyz",
    {
      config: publicProbe,
      schema: { response: { 200: ReadyResponse, 503: ReadyResponse, 500: ErrorResponse } },
      logLevel: probeLogLevel,
    },
    async (request, reply) => {
      const results = await Promise.all(
        app.readinessChecks.map(async (check) => [check.name, await run(check, request.log)] as const),
      );
      const checks = Object.fromEntries(results);
      if (results.every(([, result]) => result === "ok")) return reply.send({ status: "ready" as const, checks });
      return reply
        .code(503)
        .header("retry-after", RETRY_AFTER_SECONDS)
        .send({ status: "unavailable" as const, checks });
    },
  );
}
