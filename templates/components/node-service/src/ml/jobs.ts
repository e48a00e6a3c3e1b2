// Producer side of the Redis Streams job bus (contracts/README.md, "Bus protocol"): per partition p,
// the job hash `{jobs:p}:job:<id>`, the job stream `{jobs:p}:predict` (group `ml-workers`), the events
// stream `{jobs:p}:events` and the deadlines `{jobs:p}:deadlines`, all written by one server-side
// script call (EVALSHA; ioredis falls back to EVAL on NOSCRIPT), atomic like the MULTI it replaces.
// The jobs of one partition accepted in the same turn of the event loop share that call.
import { createHash } from "node:crypto";
import { Cluster } from "ioredis";
import { Compile } from "typebox/compile";
import type { RedisClient } from "../redis.js";
import { BusLayout, JOB_TTL_SECONDS, JOBS_GROUP, type PartitionKeys } from "./bus.js";
import { RedisClock } from "./clock.js";
import { issuedTo, issueJobId, ownerId } from "./job-id.js";
import {
  JOB_STATUSES,
  type JobEvent,
  type JobStatus,
  type JobStatusValue,
  type PredictRequest,
  PredictResponse,
} from "./schemas.js";
import { DEADLINE_EXCEEDED, ENQUEUE, EXPIRE, RELEASE_IF_EQUAL, type Script } from "./scripts.js";

const checkResult = Compile(PredictResponse);
/** A measured backlog is reused for this long; past the limit it is always measured again. */
const BACKLOG_CACHE_MS = 1_000;
/** An idempotency key younger than this whose job does not exist yet belongs to a request in flight. */
const IDEMPOTENCY_IN_FLIGHT_MS = 10_000;
/** The error texts the workers store (contracts/README.md); anything else is shown as "job failed". */
const PUBLIC_ERRORS = new Set(["invalid payload", "model error", "deadline exceeded", "job failed", "job lost"]);
/** How often each gateway process fails the jobs past their deadline (as the workers' sweep does). */
export const DEADLINE_SWEEP_MS = 5_000;
/** The most jobs per partition one sweep fails (the next sweep takes the rest). */
const SWEEP_LIMIT = 100;
/** The error of the final event a watcher gets when its job vanished from Redis before finishing. */
export const JOB_LOST = "job lost";
/** Holds the BUS_PARTITIONS the bus was created with (see checkPartitions). */
const PARTITIONS_KEY = "bus:partitions";
/** The most jobs one script call writes (a busy turn of the event loop takes several calls). */
const MAX_BATCH = 64;

/** One job waiting for its partition's next script call. */
interface PendingWrite {
  key: string;
  /** id, created_at, request_id, deadline, owner, payload, queued event, traceparent. */
  args: string[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** The queue of the job's partition is too far behind to accept more work (503). */
export class BacklogFullError extends Error {
  override name = "BacklogFullError";
  constructor(readonly backlog: number) {
    super(`job backlog ${backlog} is at the limit`);
  }
}

/** The job was written on its master but fewer replicas than JOBS_WAIT_REPLICAS confirmed it in time (503). */
export class NotReplicatedError extends Error {
  override name = "NotReplicatedError";
  constructor(readonly acknowledged: number) {
    super(`only ${acknowledged} replica(s) acknowledged the job in time`);
  }
}

/** The enqueue script answered that it did not write this job (a 503 that surely left nothing). */
class NotWrittenError extends Error {
  override name = "NotWrittenError";
  constructor(reason: string) {
    super(`the job was not written: ${reason}`);
  }
}

/** BUS_PARTITIONS differs from the partition count this Redis's bus was created with. */
export class PartitionCountError extends Error {
  override name = "PartitionCountError";
}

/** The Idempotency-Key was used before with another request body (422). */
export class IdempotencyConflictError extends Error {
  override name = "IdempotencyConflictError";
}

/** A request with the same Idempotency-Key is being enqueued right now (409). */
export class IdempotencyInFlightError extends Error {
  override name = "IdempotencyInFlightError";
  /** Whole seconds until the key is no longer in flight (a retry then gets the job, or creates it). */
  constructor(readonly retryAfterSeconds: number) {
    super("a request with this Idempotency-Key is in progress");
  }
}

export interface JobStoreOptions {
  partitions: number;
  /** Backpressure: lag + pending of a partition at which new jobs are refused. */
  maxBacklog: number;
  /** A job not finished this long after it was accepted ends failed ("deadline exceeded"). */
  deadlineMs: number;
  /** Events older than this are trimmed from the events streams. */
  eventsRetentionMs: number;
  /** Told the ids of the jobs this process failed past their deadline (logs, metrics). */
  onDeadlineExceeded?: (ids: readonly string[]) => void;
  /** Replicas that must have the job before it is acknowledged (WAIT); 0 = no wait. */
  waitReplicas?: number;
  /** Longest the WAIT may block. */
  waitTimeoutMs?: number;
}

export interface EnqueueOptions {
  requestId: string;
  /** sha256 of the caller's API key: the job's id is tagged with it and its hash records its owner. */
  ownerKey: Buffer;
  /** W3C trace context of the request, carried by the entry so the worker continues the trace. */
  traceparent?: string | undefined;
  /** The client's Idempotency-Key, scoped to its API key. */
  idempotencyKey?: string | undefined;
}

/** First 16 hex digits of sha256(API key): the idempotency scope of a caller. */
export function idempotencyScope(ownerKey: Buffer): string {
  return ownerKey.toString("hex").slice(0, 16);
}

/** What a caller may learn about a job id: its state, "gone" (issued to it, no longer in Redis), or "unknown". */
export type JobLookup = { found: JobEvent } | "gone" | "unknown";

/** The final event sent to a watcher whose job vanished before a terminal state. */
export function lostEvent(id: string): JobEvent {
  return { id, type: "failed", status: "failed", error: JOB_LOST, ts: Date.now() };
}

/** JSON with object keys sorted, so equal bodies hash equally whatever their key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

const sha256Hex = (text: string): string => createHash("sha256").update(text, "utf8").digest("hex");

interface MeasuredBacklog {
  value: number;
  at: number;
}

export class JobStore {
  readonly layout: BusLayout;
  readonly clock: RedisClock;
  readonly #backlogs = new Map<number, MeasuredBacklog>();
  /** A measurement in flight, by partition: the requests that arrive meanwhile wait for it. */
  readonly #measuring = new Map<number, Promise<MeasuredBacklog>>();
  /** Cluster only: the hash slot of each partition's tag, asked once (CLUSTER KEYSLOT). */
  readonly #slots = new Map<number, number>();
  /** Jobs accepted in this turn of the event loop, by partition: written together once it ends. */
  #pending = new Map<number, { keys: PartitionKeys; jobs: PendingWrite[] }>();
  #flushing = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: JobStoreOptions,
  ) {
    this.layout = new BusLayout(options.partitions);
    this.clock = new RedisClock(redis);
  }

  /**
   * Records BUS_PARTITIONS in Redis on first use (SET NX GET) and refuses another count: a gateway
   * that disagrees with the workers puts a job in a partition they do not read, and answers 410 for
   * its live jobs. The ML service and the workers check the same key (bus.check_partitions).
   */
  async checkPartitions(): Promise<void> {
    const count = String(this.options.partitions);
    const previous = await this.redis.set(PARTITIONS_KEY, count, "NX", "GET");
    if (previous !== null && previous !== count) {
      throw new PartitionCountError(
        `BUS_PARTITIONS=${count}, but the bus in this Redis has ${previous} partitions (key ${PARTITIONS_KEY}): ` +
          `set the same BUS_PARTITIONS on the gateway, the ML service and every worker (to change it: drain the bus, then SET ${PARTITIONS_KEY} <n>)`,
      );
    }
  }

  /** Creates every partition's consumer group at id 0 (jobs added before it existed are not skipped). */
  async ensureGroups(): Promise<void> {
    await Promise.all(this.layout.partitions.map((keys) => this.#ensureGroup(keys)));
  }

  async #ensureGroup(keys: PartitionKeys): Promise<void> {
    try {
      await this.redis.xgroup("CREATE", keys.jobs, JOBS_GROUP, "0", "MKSTREAM");
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith("BUSYGROUP"))) throw err;
    }
  }

  /** Entries of a partition not yet delivered to the group (lag) plus those delivered but not acknowledged. */
  async backlog(keys: PartitionKeys): Promise<number> {
    let groups: unknown[][];
    try {
      groups = (await this.redis.xinfo("GROUPS", keys.jobs)) as unknown[][];
    } catch (err) {
      // The stream was deleted (FLUSHDB, an operator): recreate it with its group, nothing is waiting.
      if (!(err instanceof Error && err.message.includes("no such key"))) throw err;
      await this.#ensureGroup(keys);
      return 0;
    }
    for (const fields of groups) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < fields.length; i += 2) info.set(String(fields[i]), fields[i + 1]);
      if (info.get("name") !== JOBS_GROUP) continue;
      const pending = Number(info.get("pending") ?? 0);
      const lag = info.get("lag");
      // lag is nil when Redis cannot compute it (entries deleted inside the range): the length bounds it.
      const undelivered = lag === null || lag === undefined ? await this.redis.xlen(keys.jobs) : Number(lag);
      return pending + undelivered;
    }
    // The group was destroyed under us: recreate it at 0, so everything in the stream is waiting.
    await this.#ensureGroup(keys);
    return this.redis.xlen(keys.jobs);
  }

  /** Lag and pending entries of the group on every partition (the metrics' gauges). */
  async groups(): Promise<{ partition: number; lag: number; pending: number }[]> {
    const read = async (keys: PartitionKeys) => {
      const groups = (await this.redis.xinfo("GROUPS", keys.jobs).catch(() => [])) as unknown[][];
      for (const fields of groups) {
        const info = new Map<string, unknown>();
        for (let i = 0; i + 1 < fields.length; i += 2) info.set(String(fields[i]), fields[i + 1]);
        if (info.get("name") !== JOBS_GROUP) continue;
        return [
          { partition: keys.partition, lag: Number(info.get("lag") ?? 0), pending: Number(info.get("pending") ?? 0) },
        ];
      }
      return [];
    };
    return (await Promise.all(this.layout.partitions.map(read))).flat();
  }

  /**
   * The backlog measured at most BACKLOG_CACHE_MS ago plus what this process added since; when
   * that estimate reaches the limit it is measured again, so a refusal is always based on Redis.
   * One measurement per partition at a time: the requests of a burst that arrive while it is in
   * flight wait for it and are admitted one by one against it (each measuring for itself, they
   * all read the same old backlog and all admitted themselves, far past the limit).
   */
  async #admit(keys: PartitionKeys): Promise<void> {
    if (this.#admitCached(keys)) return;
    let measuring = this.#measuring.get(keys.partition);
    if (measuring === undefined) {
      const at = Date.now();
      measuring = this.backlog(keys)
        .then((value) => {
          const measured = { value, at };
          this.#backlogs.set(keys.partition, measured);
          return measured;
        })
        .finally(() => this.#measuring.delete(keys.partition));
      this.#measuring.set(keys.partition, measuring);
    }
    const measured = await measuring;
    if (measured.value >= this.options.maxBacklog) throw new BacklogFullError(measured.value);
    measured.value += 1;
  }

  /** Admits the job from the cached estimate (true), or says it must be measured (false). */
  #admitCached(keys: PartitionKeys): boolean {
    const measured = this.#backlogs.get(keys.partition);
    if (measured === undefined || Date.now() - measured.at > BACKLOG_CACHE_MS) return false;
    if (measured.value >= this.options.maxBacklog) return false;
    measured.value += 1;
    return true;
  }

  /**
   * Enqueues a prediction job. With an idempotency key, a repeated call with the same body returns
   * the first job's id and enqueues nothing; another body throws IdempotencyConflictError.
   * Throws BacklogFullError when the job's partition is too far behind.
   */
  async enqueue(request: PredictRequest, options: EnqueueOptions): Promise<{ id: string; created: boolean }> {
    const id = issueJobId(options.ownerKey);
    const keys = this.layout.of(id);
    // Before the idempotency key is taken: a Redis that cannot answer TIME leaves nothing behind.
    // (The hot path awaits nothing it does not need: each await is a promise and a microtask.)
    const now = this.clock.cached() ?? (await this.clock.now());
    const idemKey =
      options.idempotencyKey === undefined
        ? undefined
        : `idem:${idempotencyScope(options.ownerKey)}:${options.idempotencyKey}`;
    // Only a request with an Idempotency-Key pays for hashing its canonical body.
    const idemValue = idemKey === undefined ? "" : `${id} ${sha256Hex(canonicalJson(request))}`;
    if (idemKey !== undefined) {
      const earlier = await this.#claimIdempotencyKey(idemKey, idemValue);
      if (earlier !== undefined) {
        // The first request may have been refused (503) because no replica confirmed the job: a
        // retry is acknowledged only once one has, like the first request would have been.
        await this.#replicated(this.layout.of(earlier), { probe: true });
        return { id: earlier, created: false };
      }
    }

    const createdAt = String(now);
    const deadline = now + this.options.deadlineMs;
    const requestId = options.requestId.slice(0, 128);
    const queued: JobEvent = { id, type: "queued", status: "queued", ts: now };
    let sent = false;
    try {
      if (!this.#admitCached(keys)) await this.#admit(keys);
      sent = true;
      await this.#write(keys, keys.job(id), [
        id,
        createdAt,
        requestId,
        String(deadline),
        ownerId(options.ownerKey),
        JSON.stringify(request),
        JSON.stringify(queued),
        options.traceparent ?? "",
      ]);
      if ((this.options.waitReplicas ?? 0) > 0) await this.#replicated(keys);
    } catch (err) {
      // Written but not confirmed by a replica: the job exists and may run, so the idempotency
      // key stays (a retry with it returns this job) and the caller is told 503.
      if (err instanceof NotReplicatedError) throw err;
      // Do not leave the idempotency key pointing at a job that was never written. A write that got
      // no answer (timeout, connection lost) may still land: the key stays, so a retry with it
      // returns that job, or (409 until the in-flight window ends) takes the key over if it never did.
      const written = sent && !(err instanceof NotWrittenError);
      if (idemKey !== undefined && !written) await this.#release(idemKey, idemValue).catch(() => undefined);
      throw err;
    }
    return { id, created: true };
  }

  /**
   * Queues a job for its partition's next script call, made once this turn of the event loop ends
   * (setImmediate): concurrent requests share a round trip. Resolves once the script reports this
   * job written; rejects with the error that stopped this job in the script, or with the call's own
   * error (Redis unreachable, no reply in time: then the jobs may still land, as a single write could).
   */
  #write(keys: PartitionKeys, key: string, args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      let batch = this.#pending.get(keys.partition);
      if (batch === undefined) {
        batch = { keys, jobs: [] };
        this.#pending.set(keys.partition, batch);
      }
      batch.jobs.push({ key, args, resolve, reject });
      if (!this.#flushing) {
        this.#flushing = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const pending = this.#pending;
    this.#pending = new Map();
    this.#flushing = false;
    for (const { keys, jobs } of pending.values()) {
      for (let start = 0; start < jobs.length; start += MAX_BATCH) {
        this.#send(keys, jobs.slice(start, start + MAX_BATCH));
      }
    }
  }

  #send(keys: PartitionKeys, jobs: PendingWrite[]): void {
    // Events are trimmed by Redis' clock: the first job's created_at (Redis time) minus the retention.
    const minId = String(Math.max(0, Number(jobs[0]?.args[1]) - this.options.eventsRetentionMs));
    const argv: string[] = [];
    for (const job of jobs) argv.push(job.key);
    argv.push(keys.deadlines, keys.jobs, keys.events, String(JOB_TTL_SECONDS), minId);
    for (const job of jobs) for (const arg of job.args) argv.push(arg);
    this.#run(ENQUEUE, jobs.length + 3, argv).then(
      (reply) => {
        const written = Array.isArray(reply) ? reply : [];
        jobs.forEach((job, i) => {
          if (written[i] === 1) job.resolve();
          else job.reject(new NotWrittenError(String(written[i] ?? "no reply")));
        });
      },
      (error: unknown) => {
        for (const job of jobs) job.reject(error);
      },
    );
  }

  /** EVALSHA, then EVAL when this Redis does not have the script (restarted, failed over, new node). */
  async #run({ text, sha }: Script, numberOfKeys: number, args: string[]): Promise<unknown> {
    try {
      return await this.redis.evalsha(sha, numberOfKeys, ...args);
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith("NOSCRIPT"))) throw err;
      return this.redis.eval(text, numberOfKeys, ...args);
    }
  }

  /**
   * Fails the jobs among `ids` (one partition) still unfinished past their deadline by `now` (Redis
   * time), in one script call (EXPIRE_SCRIPT); returns per job whether this call failed it, and
   * with `hashes` its hash after the call.
   */
  async #expire(
    keys: PartitionKeys,
    ids: readonly string[],
    now: number,
    hashes: boolean,
  ): Promise<{ id: string; failed: boolean; hash: Record<string, string> }[]> {
    const argv = [keys.deadlines, keys.events];
    for (const id of ids) argv.push(keys.job(id));
    const minId = String(Math.max(0, now - this.options.eventsRetentionMs));
    argv.push(String(now), minId, hashes ? "1" : "0");
    for (const id of ids) {
      const failed: JobEvent = { id, type: "failed", status: "failed", ts: now, error: DEADLINE_EXCEEDED };
      argv.push(id, JSON.stringify(failed));
    }
    const reply = await this.#run(EXPIRE, ids.length + 2, argv);
    const rows = Array.isArray(reply) ? (reply as unknown[]) : [];
    const results = ids.map((id, i) => {
      const [failed, flat] = Array.isArray(rows[i]) ? (rows[i] as unknown[]) : [];
      const hash: Record<string, string> = {};
      if (Array.isArray(flat)) for (let j = 0; j + 1 < flat.length; j += 2) hash[String(flat[j])] = String(flat[j + 1]);
      return { id, failed: failed === 1, hash };
    });
    const expired = results.filter(({ failed }) => failed).map(({ id }) => id);
    if (expired.length > 0) this.options.onDeadlineExceeded?.(expired);
    return results;
  }

  /**
   * The job's hash, failed first when it is still queued or running past its deadline (compared
   * with the cached Redis clock: a job within its deadline costs no round trip).
   */
  async #current(id: string, hash: Record<string, string>): Promise<Record<string, string>> {
    if ((hash.status !== "queued" && hash.status !== "running") || !hash.deadline) return hash;
    const deadline = Number(hash.deadline);
    const now = this.clock.cached() ?? (await this.clock.now());
    if (!(deadline <= now)) return hash;
    const [result] = await this.#expire(this.layout.of(id), [id], now, true);
    // Empty: the hash vanished meanwhile (gone); otherwise as the script left it (failed, or done first).
    return result?.hash ?? hash;
  }

  /**
   * Fails, per partition, up to SWEEP_LIMIT jobs past their deadline (oldest first), as the
   * workers' sweep does, so watchers are told even when no worker runs; returns their ids.
   */
  async sweepDeadlines(): Promise<string[]> {
    const now = this.clock.cached() ?? (await this.clock.now());
    const swept = await Promise.all(
      this.layout.partitions.map(async (keys) => {
        const ids = await this.redis.zrangebyscore(keys.deadlines, "-inf", now, "LIMIT", 0, SWEEP_LIMIT);
        if (ids.length === 0) return [];
        const results = await this.#expire(keys, ids, now, false);
        return results.filter(({ failed }) => failed).map(({ id }) => id);
      }),
    );
    return swept.flat();
  }

  /**
   * With JOBS_WAIT_REPLICAS > 0: WAIT on the connection that ran the transaction (a single node's,
   * or in a cluster the connection to the master of the partition's slot), so a master that dies
   * after the 202 cannot take the job with it. Throws NotReplicatedError when too few confirm.
   * With `probe`, for a job another request wrote (perhaps through another connection or gateway),
   * this connection first writes a short-lived key in the partition's slot: WAIT covers a
   * connection's own writes only, and that one comes after the job's in the master's replication
   * stream, so a replica that confirms it has the job too.
   */
  async #replicated(keys: PartitionKeys, { probe = false } = {}): Promise<void> {
    const wanted = this.options.waitReplicas ?? 0;
    if (wanted === 0) return;
    const timeout = this.options.waitTimeoutMs ?? 500;
    let node = this.redis;
    if (this.redis instanceof Cluster) {
      let slot = this.#slots.get(keys.partition);
      if (slot === undefined) {
        slot = Number(await this.redis.cluster("KEYSLOT", keys.jobs));
        this.#slots.set(keys.partition, slot);
      }
      const address = this.redis.slots[slot]?.[0];
      const master = this.redis.nodes("master").find(({ options }) => `${options.host}:${options.port}` === address);
      if (master === undefined) throw new NotReplicatedError(0);
      node = master;
    }
    if (probe) await node.set(`${keys.jobs}:replica-probe`, "1", "PX", 1_000);
    const acknowledged = Number(await node.wait(wanted, timeout));
    if (acknowledged < wanted) throw new NotReplicatedError(acknowledged);
  }

  /**
   * Takes the idempotency key for this request (returns undefined), or returns the id of the job an
   * earlier request with the same key and body created. A key left behind by a request whose job was
   * never written (its clean-up failed too) is taken over once it is no longer in flight.
   */
  async #claimIdempotencyKey(key: string, value: string): Promise<string | undefined> {
    const bodyHash = value.slice(value.indexOf(" ") + 1);
    let inFlightMs = IDEMPOTENCY_IN_FLIGHT_MS;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const previous = await this.redis.set(key, value, "EX", JOB_TTL_SECONDS, "NX", "GET");
      if (previous === null) return undefined;
      const [earlierId = "", earlierHash] = previous.split(" ");
      if (earlierHash !== bodyHash) throw new IdempotencyConflictError("Idempotency-Key reused with another body");
      if ((await this.redis.exists(this.layout.of(earlierId).job(earlierId))) === 1) return earlierId;
      const age = JOB_TTL_SECONDS * 1000 - (await this.redis.pttl(key));
      inFlightMs = IDEMPOTENCY_IN_FLIGHT_MS - age;
      if (inFlightMs > 0) break;
      await this.#release(key, previous);
    }
    // Retry-After: until the key stops being in flight (rounded up), when a retry surely resolves it.
    throw new IdempotencyInFlightError(Math.max(1, Math.ceil(inFlightMs / 1000)));
  }

  async #release(key: string, value: string): Promise<void> {
    await this.redis.eval(RELEASE_IF_EQUAL, 1, key, value);
  }

  /**
   * The job as its owner may see it. An id not issued to this caller is "unknown" without asking
   * Redis, so another key's job and an id that never existed answer alike (404); an id issued to
   * this caller that Redis no longer has is "gone" (410). A job still queued or running past its
   * deadline is failed first ("deadline exceeded"), as a worker would.
   */
  async lookup(id: string, ownerKey: Buffer): Promise<JobLookup> {
    if (!issuedTo(id, ownerKey)) return "unknown";
    const hash = await this.redis.hgetall(this.layout.of(id).job(id));
    const event = toEvent(id, hash);
    if (event === null) return "gone";
    // The tag already binds the id to the key; the recorded owner is checked as well.
    if (hash.owner !== ownerId(ownerKey)) return "unknown";
    if (event.status !== "queued" && event.status !== "running") return { found: event };
    const current = await this.#current(id, hash);
    if (current === hash) return { found: event };
    const after = toEvent(id, current);
    return after === null ? "gone" : { found: after };
  }

  /**
   * The job's current state as a job event (what a resynchronised subscriber is sent), or null when
   * gone; failed first when past its deadline, like lookup.
   */
  async snapshot(id: string): Promise<JobEvent | null> {
    const hash = await this.redis.hgetall(this.layout.of(id).job(id));
    return toEvent(id, await this.#current(id, hash));
  }
}

/** GET /v1/jobs/{id}'s body for a job in the state `event`. */
export function jobStatus(event: JobEvent): JobStatus {
  const job: JobStatus = { id: event.id, status: event.status };
  if (event.result) job.result = event.result;
  if (event.error !== undefined) job.error = event.error;
  return job;
}

function toEvent(id: string, hash: Record<string, string>): JobEvent | null {
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
  if (status === "failed") event.error = publicError(hash.error);
  return event;
}

/** The error a client may see: one of the workers' short public messages, never exception text. */
export function publicError(stored: string | undefined): string {
  return stored !== undefined && PUBLIC_ERRORS.has(stored) ? stored : "job failed";
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
