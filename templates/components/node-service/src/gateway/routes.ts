// The public API of the gateway: synchronous inference, async jobs, job status and job events.
import { PassThrough } from "node:stream";
import { ErrorResponse, HttpError } from "../errors.js";
import type { App } from "../types.js";
import { type JobEventMessage, type JobEventsFollower, watchJob } from "./events.js";
import { BacklogFullError, type JobStore } from "./jobs.js";
import type { MlClient } from "./ml-client.js";
import { JobAccepted, JobParams, JobStatus, JobsHeaders, PredictRequest, PredictResponse } from "./schemas.js";

export interface GatewayDeps {
  ml: MlClient;
  store: JobStore;
  follower: JobEventsFollower;
  /** Open SSE streams, ended when the server shuts down. */
  streams: Set<PassThrough>;
}

const SSE_HEARTBEAT_MS = 15_000;
const RETRY_AFTER_SECONDS = 5;

/** One Server-Sent Event: `event:` is the event type, `data:` the job event, `id:` the stream entry. */
export function formatSse({ streamId, event }: JobEventMessage): string {
  const id = streamId === undefined ? "" : `id: ${streamId}\n`;
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n${id}\n`;
}

const jobNotFound = (id: string): HttpError => new HttpError(404, "not_found", `Job ${id} not found`);

export function registerGatewayRoutes(app: App, { ml, store, follower, streams }: GatewayDeps): void {
  app.post(
    "/v1/predict",
    {
      schema: {
        summary: "Synchronous inference, proxied to the ML service",
        body: PredictRequest,
        response: {
          200: PredictResponse,
          400: ErrorResponse,
          422: ErrorResponse,
          502: ErrorResponse,
          504: ErrorResponse,
        },
      },
    },
    async (request) => ml.predict(request.body, request.id),
  );

  app.post(
    "/v1/jobs",
    {
      schema: {
        summary: "Enqueue an asynchronous prediction job",
        body: PredictRequest,
        headers: JobsHeaders,
        response: { 202: JobAccepted, 400: ErrorResponse, 503: ErrorResponse },
      },
    },
    async (request, reply) => {
      let job: { id: string; created: boolean };
      try {
        job = await store.enqueue(request.body, {
          requestId: request.id,
          idempotencyKey: request.headers["idempotency-key"],
        });
      } catch (err) {
        if (err instanceof BacklogFullError) {
          request.log.warn({ backlog: err.backlog }, "job backlog full, shedding load");
          throw new HttpError(503, "backlog_full", "Too many queued jobs, retry later", {
            "retry-after": String(RETRY_AFTER_SECONDS),
          });
        }
        throw err;
      }
      if (!job.created) request.log.info({ jobId: job.id }, "idempotent replay of an earlier job");
      return reply.code(202).header("location", `/v1/jobs/${job.id}`).send({ id: job.id });
    },
  );

  app.get(
    "/v1/jobs/:id",
    {
      schema: {
        summary: "Job status and result",
        params: JobParams,
        response: { 200: JobStatus, 400: ErrorResponse, 404: ErrorResponse },
      },
    },
    async (request) => {
      const job = await store.get(request.params.id);
      if (!job) throw jobNotFound(request.params.id);
      return job;
    },
  );

  app.get(
    "/v1/jobs/:id/events",
    {
      schema: {
        summary: "Server-Sent Events: one event per status change, ending after done or failed",
        params: JobParams,
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const stream = new PassThrough();
      // Nothing is written once the stream has ended (job finished, or the server is shutting down).
      const write = (text: string): void => {
        if (!stream.writableEnded) stream.write(text);
      };
      const cancel = await watchJob(
        store,
        follower,
        id,
        (message) => write(formatSse(message)),
        () => stream.end(),
      );
      if (!cancel) throw jobNotFound(id);

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
