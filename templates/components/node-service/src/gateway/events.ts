// Delivery of job events back to clients. One XREAD BLOCK loop per gateway process follows
// `jobs:events` on a dedicated connection and fans entries out in-process by job id.
import { EventEmitter } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyBaseLogger } from "fastify";
import type { Redis } from "ioredis";
import { Compile } from "typebox/compile";
import { EVENTS_STREAM, type JobStore } from "./jobs.js";
import { JobEvent } from "./schemas.js";

const checkEvent = Compile(JobEvent);
const BLOCK_MS = 5_000;
const BATCH = 512;

export interface JobEventMessage {
  /** Entry id in `jobs:events`; absent for the snapshot read from the job hash. */
  streamId?: string;
  event: JobEvent;
}
export type JobEventListener = (message: JobEventMessage) => void;

export class JobEventsFollower {
  readonly #emitter = new EventEmitter();
  #lastId = "0-0";
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly log: FastifyBaseLogger,
  ) {
    this.#emitter.setMaxListeners(0);
  }

  /** Resolves the start id once (the newest entry), then follows from there: never `$` again. */
  async start(): Promise<void> {
    const newest = await this.redis.xrevrange(EVENTS_STREAM, "+", "-", "COUNT", 1);
    this.#lastId = newest[0]?.[0] ?? "0-0";
    this.#running = true;
    this.#loop = this.#follow();
  }

  /** Ends the loop: disconnecting the dedicated connection aborts the blocking read. */
  async stop(): Promise<void> {
    this.#running = false;
    this.redis.disconnect();
    await this.#loop;
    this.#emitter.removeAllListeners();
  }

  subscribe(jobId: string, listener: JobEventListener): () => void {
    this.#emitter.on(jobId, listener);
    return () => {
      this.#emitter.off(jobId, listener);
    };
  }

  async #follow(): Promise<void> {
    while (this.#running) {
      try {
        const reply = await this.redis.xread("COUNT", BATCH, "BLOCK", BLOCK_MS, "STREAMS", EVENTS_STREAM, this.#lastId);
        for (const [, entries] of reply ?? []) {
          for (const [streamId, fields] of entries) {
            this.#lastId = streamId;
            this.#dispatch(streamId, fields);
          }
        }
      } catch (err) {
        if (!this.#running) return;
        this.log.error({ err }, "jobs:events follower failed; retrying");
        await sleep(1_000);
      }
    }
  }

  #dispatch(streamId: string, fields: string[]): void {
    let text: string | undefined;
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "event") text = fields[i + 1];
    let event: unknown;
    try {
      event = JSON.parse(text ?? "");
    } catch {
      event = undefined;
    }
    if (!checkEvent.Check(event)) {
      this.log.warn({ streamId }, "ignoring a jobs:events entry that is not a valid job event");
      return;
    }
    if (this.#emitter.listenerCount(event.id) > 0) this.#emitter.emit(event.id, { streamId, event });
  }
}

const RANK = { queued: 0, running: 1, progress: 1, done: 2, failed: 2 } as const;

/**
 * Follows one job for a client: listens first, then reads the job hash and sends its current
 * state, then live events, each status once, ending after `done` or `failed`. Registering the
 * listener before the read closes the "finished before subscribe" race.
 * Resolves to a cancel function, or null when the job is unknown.
 */
export async function watchJob(
  store: JobStore,
  follower: JobEventsFollower,
  id: string,
  send: JobEventListener,
  end: () => void,
): Promise<(() => void) | null> {
  let rank = -1;
  let finished = false;
  let ready = false;
  const early: JobEventMessage[] = [];

  const deliver = (message: JobEventMessage): void => {
    const { type } = message.event;
    const r = RANK[type];
    // Events older than what the client has, or a repeat of its current status, carry nothing new.
    if (finished || r < rank || (r === rank && type !== "progress")) return;
    rank = r;
    send(message);
    if (type === "done" || type === "failed") {
      cancel();
      end();
    }
  };
  const unsubscribe = follower.subscribe(id, (message) => {
    if (ready) deliver(message);
    else early.push(message);
  });
  const cancel = (): void => {
    finished = true;
    unsubscribe();
  };

  let snapshot: JobEvent | null;
  try {
    snapshot = await store.snapshot(id);
  } catch (err) {
    cancel();
    throw err;
  }
  if (!snapshot) {
    cancel();
    return null;
  }
  ready = true;
  deliver({ event: snapshot });
  for (const message of early) deliver(message);
  return cancel;
}
