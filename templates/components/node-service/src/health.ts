import { Type } from "typebox";
import type { Config } from "./config.js";
import { ErrorResponse, HttpError, RETRY_AFTER_SECONDS } from "./errors.js";
import type { App } from "./types.js";

/**
 * A dependency probe shown by `/readyz?verbose`: resolve when the dependency answers, throw
 * otherwise. /readyz is public, so it shows the message of an HttpError (written for clients) and
 * "unavailable" for any other error, whose text goes to the log only. A failing dependency never
 * makes the process unready: the routes that need it answer 503 + Retry-After themselves.
 */
export interface ReadinessCheck {
  name: string;
  check: () => Promise<void>;
}

declare module "fastify" {
  interface FastifyInstance {
    /**
     * Dependency checks shown by GET /readyz?verbose. Plugins add their own at registration time:
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
    status: Type.Union([Type.Literal("ready"), Type.Literal("draining")]),
    /** With ?verbose: each dependency, "ok" or what is wrong with it. */
    checks: Type.Optional(Type.Record(Type.String(), Type.String())),
  },
  { additionalProperties: false },
);
const ReadyQuery = Type.Object({ verbose: Type.Optional(Type.String({ maxLength: 16 })) });

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
 * GET /healthz (liveness: the process serves HTTP) and GET /readyz (readiness of this process: its
 * configuration loaded, it listens, it is not draining). A dependency outage (Redis, the ML service,
 * an upstream) never takes the process out of its load balancer: every route that does not need the
 * dependency keeps serving, and those that do answer 503 + Retry-After. `/readyz?verbose` adds each
 * dependency's state. Probes need no API key, are never rate limited, and log their requests only at
 * `probeLogLevel`.
 */
export function registerHealth(app: App, probeLogLevel: Config["LOG_LEVEL"]): void {
  app.decorate("readinessChecks", [] as ReadinessCheck[]);
  const dependencies = async (log: App["log"]): Promise<Record<string, string>> =>
    Object.fromEntries(
      await Promise.all(app.readinessChecks.map(async (check) => [check.name, await run(check, log)] as const)),
    );
  app.metrics.watchDependencies(() => dependencies(app.log));
  let draining = false;
  app.addHook("preClose", async () => {
    draining = true;
  });

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
      schema: { querystring: ReadyQuery, response: { 200: ReadyResponse, 503: ReadyResponse, 500: ErrorResponse } },
      logLevel: probeLogLevel,
    },
    async (request, reply) => {
      const checks = request.query.verbose === undefined ? undefined : await dependencies(request.log);
      const body = checks === undefined ? {} : { checks };
      if (!draining) return reply.send({ status: "ready" as const, ...body });
      return reply
        .code(503)
        .header("retry-after", RETRY_AFTER_SECONDS)
        .send({ status: "draining" as const, ...body });
    },
  );
}
