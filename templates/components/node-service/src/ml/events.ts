// Delivery of job events back to clients. Per gateway process, XREAD BLOCK loops on dedicated
// connections follow every partition's `{jobs:p}:events` stream and fan entries out in-process by job
// id. Events can be missed (trimmed by age, or written while Redis was unreachable): the follower
// detects such gaps and re-reads the watched jobs' hashes, and every watcher re-reads its job when
// nothing arrived for a while, so a client always ends with the job's final state.
// A process with no watcher reads nothing: its loops wait for the first one, then follow from the
// newest entry, and the watcher reads its job only after that (so no event falls in between).
import { EventEmitter } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyBaseLogger } from "fastify";
import { Compile } from "typebox/compile";
import { COMMAND_TIMEOUT_MS, type RedisClient, withDeadline } from "../redis.js";
import type { PartitionKeys } from "./bus.js";
import { type JobStore, lostEvent, publicError } from "./jobs.js";
import { JobEvent } from "./schemas.js";

const checkEvent = Compile(JobEvent);
const BLOCK_MS = 5_000;
const BATCH = 512;
const RETRY_MS = 1_000;
/** Longest a new watcher waits for the follower to start reading (a paused Redis never answers). */
const FOLLOWING_DEADLINE_MS = 2 * COMMAND_TIMEOUT_MS;

export interface JobEventMessage {
  /** Entry id in `{jobs:p}:events`; absent for a snapshot read from the job hash. */
  streamId?: string;
  event: JobEvent;
}
export type JobEventListener = (message: JobEventMessage) => void;

/** One blocking connection and the partitions it follows (all of them on a single node; one in a cluster). */
export interface EventsReader {
  client: RedisClient;
  partitions: readonly PartitionKeys[];
}

/** Compares two stream ids ("ms-seq"). */
export function compareStreamIds(a: string, b: string): number {
  const [aMs = 0n, aSeq = 0n] = a.split("-").map(BigInt);
  const [bMs = 0n, bSeq = 0n] = b.split("-").map(BigInt);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

export class JobEventsFollower {
  readonly #emitter = new EventEmitter();
  /** Last entry id seen per partition; a partition missing here still has to resolve its start. */
  readonly #lastIds = new Map<number, string>();
  #running = false;
  #loops: Promise<void>[] = [];
  /** Readers whose connection was (re)established since their loop last looked: Redis may have restarted empty. */
  readonly #reconnected = new Set<EventsReader>();
  /** Subscriptions open now (several may watch one job). */
  #watchers = 0;
  /** Readers whose start is fixed since the last time they had no watcher to serve. */
  readonly #following = new Set<EventsReader>();
  /** Wakes the loops waiting for a first watcher. */
  #wake: (() => void) | undefined;
  #woken: Promise<void> | undefined;
  /** Callers of following() waiting for every reader to follow. */
  #waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor(
    private readonly readers: readonly EventsReader[],
    private readonly store: JobStore,
    private readonly log: FastifyBaseLogger,
  ) {
    this.#emitter.setMaxListeners(0);
    // A blocked XREAD may be retried on the new connection without an error reaching the loop:
    // every reconnection therefore re-reads the watched jobs (a job Redis lost ends "job lost").
    for (const reader of readers) reader.client.on("ready", () => this.#reconnected.add(reader));
  }

  /** Every reader connection is ready (for /readyz). */
  get ready(): boolean {
    return this.readers.every(({ client }) => client.status === "ready");
  }

  /**
   * Fixes each partition's start (its newest entry), then follows from there: never `$` again.
   * When Redis is unreachable now, the loops resolve their start once it answers.
   */
  async start(waitMs: number): Promise<void> {
    this.#running = true;
    const resolved = Promise.all(this.readers.map((reader) => this.#resolveStart(reader)));
    await withDeadline(resolved, waitMs).catch(() => undefined);
    this.#loops = this.readers.map((reader) => this.#follow(reader));
  }

  /** Ends the loops: disconnecting the dedicated connections aborts the blocking reads. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    this.#settle(new Error("the job events follower stopped"));
    for (const { client } of this.readers) client.disconnect();
    await Promise.all(this.#loops);
    this.#emitter.removeAllListeners();
  }

  /** Listens for a job's events; call following() before reading the job's state. */
  subscribe(jobId: string, listener: JobEventListener): () => void {
    this.#emitter.on(jobId, listener);
    this.#watchers += 1;
    this.#wake?.();
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      this.#watchers -= 1;
      this.#emitter.off(jobId, listener);
    };
  }

  /**
   * Resolves once every reader follows from a position taken no earlier than this call (at once
   * when they already do); rejects when Redis cannot be read. A watcher that subscribed, awaited
   * this and then read its job misses no event written after that read.
   */
  following(): Promise<void> {
    if (this.#following.size === this.readers.length) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #settle(error?: unknown): void {
    if (this.#waiters.length === 0) return;
    if (error === undefined && this.#following.size < this.readers.length) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const { resolve, reject } of waiters) {
      if (error === undefined) resolve();
      else reject(error);
    }
  }

  /** With no watcher, a reader forgets its position and waits for one (reading nobody's events costs CPU). */
  async #idle({ partitions }: EventsReader): Promise<void> {
    if (this.#watchers > 0) return;
    for (const keys of partitions) this.#lastIds.delete(keys.partition);
    this.#woken ??= new Promise<void>((resolve) => {
      this.#wake = () => {
        this.#wake = undefined;
        this.#woken = undefined;
        resolve();
      };
    });
    await this.#woken;
  }

  async #resolveStart({ client, partitions }: EventsReader): Promise<void> {
    for (const keys of partitions) {
      if (this.#lastIds.has(keys.partition)) continue;
      const newest = await client.xrevrange(keys.events, "+", "-", "COUNT", 1);
      this.#lastIds.set(keys.partition, newest[0]?.[0] ?? "0-0");
    }
  }

  async #follow(reader: EventsReader): Promise<void> {
    const { client, partitions } = reader;
    let recovering = false;
    while (this.#running) {
      try {
        if (this.#watchers === 0) {
          this.#following.delete(reader);
          await this.#idle(reader);
          if (!this.#running) return;
        }
        await this.#resolveStart(reader);
        this.#following.add(reader);
        this.#settle();
        if (this.#reconnected.delete(reader)) recovering = true;
        if (recovering) {
          // Events written while Redis could not be read may be gone: re-read every watched job.
          await Promise.all(partitions.map((keys) => this.#resync(keys)));
          recovering = false;
        }
        const ids = partitions.map((keys) => this.#lastIds.get(keys.partition) ?? "0-0");
        const reply = await client.xread(
          "COUNT",
          BATCH,
          "BLOCK",
          BLOCK_MS,
          "STREAMS",
          ...partitions.map((keys) => keys.events),
          ...ids,
        );
        for (const [stream, entries] of reply ?? []) {
          const keys = partitions.find((candidate) => candidate.events === stream);
          if (keys === undefined || entries.length === 0) continue;
          const previous = this.#lastIds.get(keys.partition) ?? "0-0";
          this.#lastIds.set(keys.partition, entries[entries.length - 1]?.[0] ?? previous);
          for (const [streamId, fields] of entries) this.#dispatch(streamId, fields);
          // Only watched jobs are re-read after a gap.
          if (this.#watchers > 0) await this.#detectGap(client, keys, previous);
        }
      } catch (err) {
        if (!this.#running) return;
        recovering = true;
        this.#following.delete(reader);
        this.#settle(err);
        this.log.warn({ err }, "job events follower cannot read Redis; retrying");
        await sleep(RETRY_MS);
      }
    }
  }

  /**
   * Entries after `previous` were trimmed before this process read them when the stream now starts
   * after `previous`: the watched jobs of the partition are re-read from their hashes.
   */
  async #detectGap(client: RedisClient, keys: PartitionKeys, previous: string): Promise<void> {
    const [first] = await client.xrange(keys.events, "-", "+", "COUNT", 1);
    if (first !== undefined && compareStreamIds(first[0], previous) > 0) {
      this.log.info({ stream: keys.events, lastSeen: previous, firstEntry: first[0] }, "job events gap; resyncing");
      await this.#resync(keys);
    }
  }

  /** Sends the current state of every job of the partition that a client is watching ("job lost" when gone). */
  async #resync(keys: PartitionKeys): Promise<void> {
    const watched = this.#emitter
      .eventNames()
      .filter((name): name is string => typeof name === "string")
      .filter((id) => this.store.layout.of(id).partition === keys.partition);
    await Promise.all(
      watched.map(async (id) => {
        const event = await this.store.snapshot(id);
        this.#emitter.emit(id, { event: event ?? lostEvent(id) });
      }),
    );
  }

  #dispatch(streamId: string, fields: string[]): void {
    let text: string | undefined;
    let jobId: string | undefined;
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (fields[i] === "event") text = fields[i + 1];
      else if (fields[i] === "id") jobId = fields[i + 1];
    }
    // Most entries are other jobs' (or other processes' watchers'): skipped before parsing.
    if (jobId !== undefined && this.#emitter.listenerCount(jobId) === 0) return;
    let event: unknown;
    try {
      event = JSON.parse(text ?? "");
    } catch {
      event = undefined;
    }
    if (!checkEvent.Check(event)) {
      this.log.warn({ streamId }, "ignoring a job events entry that is not a valid job event");
      return;
    }
    if (this.#emitter.listenerCount(event.id) === 0) return;
    if (event.error !== undefined) event.error = publicError(event.error);
    this.#emitter.emit(event.id, { streamId, event });
  }
}

const RANK = { queued: 0, running: 1, progress: 1, done: 2, failed: 2 } as const;

export interface WatchOptions {
  /** Re-read the job hash when no event arrived for this long. */
  recheckMs: number;
  log: FastifyBaseLogger;
}

/**
 * Follows one job for its owner: listens first, then reads the job hash and sends its current
 * state, then live events, each status once, ending after `done` or `failed`. Registering the
 * listener before the read closes the "finished before subscribe" race; re-reading the hash after
 * `recheckMs` without an event closes the "event missed" one. A job that disappears before a
 * terminal state ends the watch with a `failed` event, error "job lost".
 * Resolves to a cancel function, or what JobStore.lookup said when the caller cannot watch the job.
 */
export async function watchJob(
  store: JobStore,
  follower: JobEventsFollower,
  id: string,
  ownerKey: Buffer,
  send: JobEventListener,
  end: () => void,
  { recheckMs, log }: WatchOptions,
): Promise<(() => void) | "gone" | "unknown"> {
  let rank = -1;
  let finished = false;
  let ready = false;
  let timer: NodeJS.Timeout | undefined;
  const early: JobEventMessage[] = [];

  const finish = (): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    unsubscribe();
  };
  const deliver = (message: JobEventMessage): void => {
    const { type } = message.event;
    const r = RANK[type];
    // Events older than what the client has, or a repeat of its current status, carry nothing new.
    if (finished || r < rank || (r === rank && type !== "progress")) return;
    rank = r;
    send(message);
    if (type === "done" || type === "failed") {
      finish();
      end();
    }
  };
  const recheck = async (): Promise<void> => {
    try {
      const snapshot = await store.snapshot(id);
      if (finished) return;
      deliver({ event: snapshot ?? lostEvent(id) });
    } catch (err) {
      log.warn({ err, jobId: id }, "cannot re-read a watched job; trying again later");
    }
    arm();
  };
  function arm(): void {
    clearTimeout(timer);
    if (finished) return;
    timer = setTimeout(() => void recheck(), recheckMs);
    timer.unref();
  }
  const unsubscribe = follower.subscribe(id, (message) => {
    if (!ready) {
      early.push(message);
      return;
    }
    deliver(message);
    arm();
  });

  let lookup: Awaited<ReturnType<JobStore["lookup"]>>;
  try {
    // Bounded: a watcher that gives up unsubscribes (below) instead of waiting for Redis to return.
    await withDeadline(follower.following(), FOLLOWING_DEADLINE_MS);
    lookup = await store.lookup(id, ownerKey);
  } catch (err) {
    finish();
    throw err;
  }
  if (typeof lookup === "string") {
    finish();
    return lookup;
  }
  ready = true;
  deliver({ event: lookup.found });
  for (const message of early) deliver(message);
  arm();
  return finish;
}
