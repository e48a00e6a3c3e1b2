// Producer side of the Redis Streams job bus (see the README's "Job bus" section):
// job hash `job:{id}`, work stream `jobs:predict` (group `ml-workers`), events stream `jobs:events`.
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { Compile } from "typebox/compile";
import {
  JOB_STATUSES,
  type JobEvent,
  type JobStatus,
  type JobStatusValue,
  type PredictRequest,
  PredictResponse,
} from "./schemas.js";

export const JOBS_STREAM = "jobs:predict";
export const JOBS_GROUP = "ml-workers";
export const EVENTS_STREAM = "jobs:events";
export const JOBS_MAXLEN = 100_000;
export const EVENTS_MAXLEN = 10_000;
export const JOB_TTL_SECONDS = 86_400;

export const jobKey = (id: string): string => `job:${id}`;
const idemKey = (key: string): string => `idem:${key}`;
const checkResult = Compile(PredictResponse);

/** Raised when the queue is too far behind to accept more work. */
export class BacklogFullError extends Error {
  constructor(readonly backlog: number) {
    super(`job backlog ${backlog} is over the limit`);
    this.name = "BacklogFullError";
  }
}

export interface EnqueueOptions {
  requestId: string;
  idempotencyKey?: string | undefined;
}

export class JobStore {
  constructor(
    private readonly redis: Redis,
    private readonly maxBacklog: number,
  ) {}

  /** Creates the consumer group at id 0 (so jobs added before it existed are not skipped). */
  async ensureGroup(): Promise<void> {
    try {
      await this.redis.xgroup("CREATE", JOBS_STREAM, JOBS_GROUP, "0", "MKSTREAM");
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith("BUSYGROUP"))) throw err;
    }
  }

  /** Entries not yet delivered to the group (lag) plus entries delivered but not acknowledged. */
  async backlog(): Promise<number> {
    let groups: unknown[][];
    try {
      groups = (await this.redis.xinfo("GROUPS", JOBS_STREAM)) as unknown[][];
    } catch (err) {
      // The stream was deleted (FLUSHDB, an operator): recreate it with its group, nothing is waiting.
      if (!(err instanceof Error && err.message.includes("no such key"))) throw err;
      await this.ensureGroup();
      return 0;
    }
    for (const fields of groups) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < fields.length; i += 2) info.set(String(fields[i]), fields[i + 1]);
      if (info.get("name") !== JOBS_GROUP) continue;
      const pending = Number(info.get("pending") ?? 0);
      const lag = info.get("lag");
      // lag is nil when Redis cannot compute it (entries trimmed or deleted): the length bounds it.
      const undelivered = lag === null || lag === undefined ? await this.redis.xlen(JOBS_STREAM) : Number(lag);
      return pending + undelivered;
    }
    // The group was destroyed under us: recreate it at 0, so everything in the stream is waiting.
    await this.ensureGroup();
    return this.redis.xlen(JOBS_STREAM);
  }

  /**
   * Enqueues a prediction job. With an idempotency key, a repeated call returns the first job's id
   * and enqueues nothing. Throws BacklogFullError when the workers are too far behind.
   */
  async enqueue(request: PredictRequest, options: EnqueueOptions): Promise<{ id: string; created: boolean }> {
    const backlog = await this.backlog();
    if (backlog > this.maxBacklog) throw new BacklogFullError(backlog);

    const id = randomUUID();
    const key = options.idempotencyKey;
    if (key !== undefined) {
      const previous = await this.redis.set(idemKey(key), id, "EX", JOB_TTL_SECONDS, "NX", "GET");
      if (previous !== null) return { id: previous, created: false };
    }

    const now = Date.now();
    const createdAt = String(now);
    const requestId = options.requestId.slice(0, 128);
    const queued: JobEvent = { id, type: "queued", status: "queued", ts: now };
    try {
      const replies = await this.redis
        .multi()
        .hset(jobKey(id), { status: "queued", created_at: createdAt, request_id: requestId })
        .expire(jobKey(id), JOB_TTL_SECONDS)
        .xadd(
          JOBS_STREAM,
          "MAXLEN",
          "~",
          JOBS_MAXLEN,
          "*",
          "v",
          "1",
          "job_id",
          id,
          "type",
          "predict",
          "payload",
          JSON.stringify(request),
          "created_at",
          createdAt,
          "request_id",
          requestId,
        )
        .xadd(EVENTS_STREAM, "MAXLEN", "~", EVENTS_MAXLEN, "*", "id", id, "event", JSON.stringify(queued))
        .exec();
      const failed = replies?.find(([err]) => err !== null)?.[0];
      if (!replies || failed) throw failed ?? new Error("job transaction aborted");
    } catch (err) {
      // Do not leave the idempotency key pointing at a job that was never written.
      if (key !== undefined) await this.#releaseIdempotencyKey(key, id);
      throw err;
    }
    return { id, created: true };
  }

  /** The job as GET /v1/jobs/{id} shows it, or null when unknown or expired. */
  async get(id: string): Promise<JobStatus | null> {
    const hash = await this.redis.hgetall(jobKey(id));
    const status = parseStatus(hash.status);
    if (!status) return null;
    const job: JobStatus = { id, status };
    const result = parseResult(hash.result);
    if (result) job.result = result;
    if (hash.error) job.error = hash.error;
    return job;
  }

  /** The job's current state as a job event (what a late subscriber is sent first). */
  async snapshot(id: string): Promise<JobEvent | null> {
    const hash = await this.redis.hgetall(jobKey(id));
    const status = parseStatus(hash.status);
    if (!status) return null;
    const stamp = status === "queued" ? hash.created_at : status === "running" ? hash.started_at : hash.finished_at;
    const ts = Number(stamp);
    const event: JobEvent = {
      id,
      type: status,
      status,
      ts: Number.isSafeInteger(ts) && ts >= 0 ? ts : Date.now(),
    };
    const result = parseResult(hash.result);
    if (result) event.result = result;
    if (hash.error) event.error = hash.error;
    return event;
  }

  async #releaseIdempotencyKey(key: string, id: string): Promise<void> {
    try {
      if ((await this.redis.get(idemKey(key))) === id) await this.redis.del(idemKey(key));
    } catch {
      // Redis is failing already; the key expires on its own.
    }
  }
}

function parseStatus(value: string | undefined): JobStatusValue | undefined {
  return JOB_STATUSES.find((status) => status === value);
}

function parseResult(text: string | undefined): PredictResponse | undefined {
  if (!text) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return checkResult.Check(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
