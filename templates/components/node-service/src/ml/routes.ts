// The public API of the gateway: synchronous inference, async jobs, job status and job events.
import { PassThrough, type Readable } from "node:stream";
import type { FastifyRequest } from "fastify";
import { Type } from "typebox";
import { ErrorResponse, HttpError, RETRY_AFTER_SECONDS, unavailable } from "../errors.js";
import { traceparentOf } from "../observability/tracing.js";
import { COMMAND_TIMEOUT_MS, withDeadline } from "../redis.js";
import type { App } from "../types.js";
import { type JobEventMessage, type JobEventsFollower, watchJob } from "./events.js";
import {
  BacklogFullError,
  IdempotencyConflictError,
  IdempotencyInFlightError,
  type JobStore,
  jobStatus,
  NotReplicatedError,
} from "./jobs.js";
import type { MlClient } from "./ml-client.js";
import { JobAccepted, JobParams, JobStatus, JobsHeaders, PredictRequest, PredictResponse } from "./schemas.js";

export interface GatewayDeps {
  ml: MlClient;
  store: JobStore;
  follower: JobEventsFollower;
  /** Open SSE streams, ended when the server shuts down. */
  streams: Set<PassThrough>;
  /** A watched job is re-read from Redis when no event arrived for this long. */
  watchRecheckMs: number;
}

const SSE_HEARTBEAT_MS = 15_000;
/** Longest a job route waits for Redis before answering 503 (covers a cluster with no node up). */
export const BUS_DEADLINE_MS = 2 * COMMAND_TIMEOUT_MS;

/** One Server-Sent Event: `event:` is the event type, `data:` the job event, `id:` the stream entry. */
export function formatSse({ streamId, event }: JobEventMessage): string {
  const id = streamId === undefined ? "" : `id: ${streamId}\n`;
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n${id}\n`;
}

const jobNotFound = (id: string): HttpError => new HttpError(404, "not_found", `Job ${id} not found`);
const jobGone = (id: string): HttpError =>
  new HttpError(
    410,
    "job_lost",
    `Job ${id} was accepted but the job store no longer has it (lost, or expired 24 h after it was created); submit it again if you still need it`,
  );

/** The caller's key digest; auth has already answered 401 on routes that need a key. */
function ownerKey(request: FastifyRequest): Buffer {
  if (request.apiKeyDigest === null) throw new HttpError(401, "unauthorized", "Missing or invalid API key");
  return request.apiKeyDigest;
}

/**
 * Runs a job-bus operation with a deadline; Redis errors become 503 with Retry-After (never the
 * error text), HTTP errors pass through.
 * `discard` undoes the result of an operation that completes after its deadline passed.
 */
async function onBus<T>(request: FastifyRequest, operation: () => Promise<T>, discard?: (late: T) => void): Promise<T> {
  try {
    return await withDeadline(operation(), BUS_DEADLINE_MS, discard);
  } catch (err) {
    if (err instanceof HttpError) throw err;
    request.log.error({ err }, "job bus unavailable");
    throw unavailable("The job queue is unavailable, retry later");
  }
}

const { $id: _errorId, ...errorSchema } = ErrorResponse as typeof ErrorResponse & { $id?: string };
const RETRY_AFTER = { "Retry-After": { type: "integer", minimum: 1, description: "Seconds to wait before retrying" } };
/** The shared error body, described (with its response headers) for the OpenAPI document. */
const described = (description: string, headers?: Record<string, unknown>) => ({
  ...errorSchema,
  description,
  ...(headers === undefined ? {} : { headers }),
});
/** What every API-key route can answer besides its own statuses. */
const COMMON_ERRORS = {
  400: described("Invalid request (validation_error)"),
  401: described("Missing or invalid API key", {
    "WWW-Authenticate": { type: "string", description: 'ApiKey header="X-API-Key"' },
  }),
  429: described("Rate limit exceeded", RETRY_AFTER),
  500: described("Unexpected error (no details are disclosed)"),
};
const BODY_ERRORS = {
  413: described("Request body larger than BODY_LIMIT_BYTES"),
  415: described("Content-Type is not application/json"),
};
const busDown = described(
  "Redis unreachable, backlog full, not confirmed by a replica in time, or shutting down",
  RETRY_AFTER,
);

export function registerMlRoutes(app: App, { ml, store, follower, streams, watchRecheckMs }: GatewayDeps): void {
  app.post(
    "/v1/predict",
    {
      schema: {
        summary: "Synchronous inference, proxied to the ML service",
        body: PredictRequest,
        response: {
          200: { ...PredictResponse, description: "The model's prediction" },
          ...COMMON_ERRORS,
          ...BODY_ERRORS,
          422: described("The ML service rejected the features"),
          502: described("The ML service failed or sent an invalid answer"),
          503: described("The ML service is unreachable, or shutting down", RETRY_AFTER),
          504: described("The ML service did not answer within ML_TIMEOUT_MS"),
        },
      },
    },
    async (request) => ml.predict(request.body, request.id, traceparentOf(request)),
  );

  app.post(
    "/v1/jobs",
    {
      schema: {
        summary: "Enqueue an asynchronous prediction job",
        description:
          "With an Idempotency-Key (scoped to your API key, kept 24 h) a repeated request with the same body " +
          "returns the first job; the same key with another body answers 422.",
        body: PredictRequest,
        headers: JobsHeaders,
        response: {
          202: {
            ...JobAccepted,
            description: "Job accepted",
            headers: { Location: { type: "string", description: "/v1/jobs/{id} of the job" } },
          },
          ...COMMON_ERRORS,
          ...BODY_ERRORS,
          409: described(
            "A request with the same Idempotency-Key is still in progress; Retry-After is the time left until " +
              "the key leaves its in-flight window (at most 10 s)",
            RETRY_AFTER,
          ),
          422: described("Idempotency-Key already used with another request body"),
          503: described(
            "Redis unreachable or too slow (service_unavailable), backlog full (backlog_full), not confirmed " +
              "by a replica in time (not_replicated), or shutting down. Except for backlog_full the job may " +
              "still have been queued (a write can land after the gateway stopped waiting): retry with the " +
              "same Idempotency-Key, which returns that job instead of enqueuing a second one",
            RETRY_AFTER,
          ),
        },
      },
    },
    async (request, reply) => {
      const owner = ownerKey(request);
      const job = await onBus(request, async () => {
        try {
          return await store.enqueue(request.body, {
            requestId: request.id,
            ownerKey: owner,
            traceparent: traceparentOf(request),
            idempotencyKey: request.headers["idempotency-key"],
          });
        } catch (err) {
          if (err instanceof BacklogFullError) {
            request.log.warn({ backlog: err.backlog }, "job backlog full, shedding load");
            throw new HttpError(503, "backlog_full", "Too many queued jobs, retry later", {
              "retry-after": RETRY_AFTER_SECONDS,
            });
          }
          if (err instanceof NotReplicatedError) {
            request.log.warn({ acknowledged: err.acknowledged }, "job not confirmed by a replica in time");
            throw new HttpError(503, "not_replicated", "The job could not be confirmed durable in time, retry later", {
              "retry-after": RETRY_AFTER_SECONDS,
            });
          }
          if (err instanceof IdempotencyConflictError) {
            throw new HttpError(422, "idempotency_conflict", "Idempotency-Key was already used with another body");
          }
          if (err instanceof IdempotencyInFlightError) {
            throw new HttpError(409, "idempotency_in_progress", "A request with this Idempotency-Key is in progress", {
              "retry-after": String(err.retryAfterSeconds),
            });
          }
          throw err;
        }
      });
      if (job.created) app.metrics.jobs.accepted.inc();
      else request.log.info({ jobId: job.id }, "idempotent replay of an earlier job");
      return reply.code(202).header("location", `/v1/jobs/${job.id}`).send({ id: job.id });
    },
  );

  app.get(
    "/v1/jobs/:id",
    {
      schema: {
        summary: "Job status and result",
        params: JobParams,
        response: {
          200: { ...JobStatus, description: "The job's status, and its result or error once finished" },
          ...COMMON_ERRORS,
          404: described("No such job for this API key (unknown, or another key's)"),
          410: described(
            "The job was accepted for this API key but the job store no longer has it: lost (e.g. Redis " +
              "restarted empty) or expired 24 h after it was created (an id does not say when it was issued)",
          ),
          503: busDown,
        },
      },
    },
    async (request) => {
      const { id } = request.params;
      const lookup = await onBus(request, () => store.lookup(id, ownerKey(request)));
      if (lookup === "unknown") throw jobNotFound(id);
      if (lookup === "gone") throw jobGone(id);
      return jobStatus(lookup.found);
    },
  );

  app.get(
    "/v1/jobs/:id/events",
    {
      schema: {
        summary: "Server-Sent Events: one event per status change, ending after done or failed",
        description:
          "Each event is `event: <type>` and `data: <job event JSON>` (contracts/job-event.schema.json); live " +
          "events carry `id: <stream entry id>`. The first event is the job's current state, so a client that " +
          "reconnects gets what it missed as that state. A job lost by the job store ends with a `failed` event " +
          'whose error is "job lost".',
        params: JobParams,
        response: {
          200: Type.Unsafe<Readable>({
            description: "An event stream that ends after the done or failed event",
            // One schema per event, as SSE clients (and schemathesis) read them.
            content: {
              "text/event-stream": {
                schema: Type.Object({
                  event: Type.String(),
                  data: Type.String({ description: "a job event (contracts/job-event.schema.json) as JSON" }),
                  id: Type.Optional(Type.String()),
                  retry: Type.Optional(Type.Integer()),
                }),
              },
            },
          }),
          ...COMMON_ERRORS,
          404: described("No such job for this API key"),
          410: described(
            "The job was accepted for this API key but the job store no longer has it (lost, or expired after 24 h)",
          ),
          503: busDown,
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const owner = ownerKey(request);
      const stream = new PassThrough();
      // Nothing is written once the stream has ended (job finished, or the server is shutting down).
      const write = (text: string): void => {
        if (!stream.writableEnded) stream.write(text);
      };
      const cancel = await onBus(
        request,
        () =>
          watchJob(
            store,
            follower,
            id,
            owner,
            (message) => write(formatSse(message)),
            () => stream.end(),
            { recheckMs: watchRecheckMs, log: request.log },
          ),
        (late) => (typeof late === "function" ? late() : undefined),
      );
      if (cancel === "unknown") throw jobNotFound(id);
      if (cancel === "gone") throw jobGone(id);

      streams.add(stream);
      const heartbeat = setInterval(() => write(": keep-alive\n\n"), SSE_HEARTBEAT_MS);
      const cleanup = (): void => {
        clearInterval(heartbeat);
        cancel();
        streams.delete(stream);
      };
      stream.once("close", cleanup);
      // The client went away before the job finished: stop following it.
      reply.raw.once("close", () => stream.destroy());

      return reply
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache, no-transform")
        .header("x-accel-buffering", "no")
        .send(stream);
    },
  );
}
