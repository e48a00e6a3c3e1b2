import { randomUUID } from "node:crypto";
import type { FastifyBaseLogger } from "fastify";
import type { RedisClient } from "../redis.js";
import type { SocketMetrics } from "./metrics.js";

/** Something that can receive frames: a WebSocket connection. */
export interface RoomMember {
  readonly id: string;
  send(frame: string): void;
}

/** Frame delivered to every member of a room. */
export interface RoomMessage {
  type: "message";
  id: string;
  room: string;
  from: string;
  data: unknown;
  sentAt: string;
}

declare module "fastify" {
  interface FastifyInstance {
    /** Room membership and cross-instance fan-out (WebSocket rooms). */
    rooms: RoomHub;
  }
}

const CHANNEL_PREFIX = "rooms:";

/**
 * Rooms with fan-out across instances.
 *
 * Without Redis, messages reach the members connected to this process. With Redis, every
 * message goes through PUBLISH on `rooms:<room>`, and each instance SUBSCRIBEs (on a dedicated
 * connection) to the rooms its own clients have joined — so two instances behind a load balancer
 * deliver each other's messages, and an instance only receives traffic for rooms it serves.
 * Pub/sub is at-most-once: a client that is disconnected at publish time misses the message.
 * Counted: the messages this process publishes, and those that reach it (before the fan-out to
 * its members, each counted as a frame sent).
 */
export class RoomHub {
  private readonly rooms = new Map<string, Set<RoomMember>>();
  private readonly subscriptions = new Map<string, Promise<void>>();

  constructor(
    private readonly log: FastifyBaseLogger,
    private readonly redis: { publisher: RedisClient; subscriber: RedisClient } | null,
    private readonly metrics: SocketMetrics,
  ) {
    if (redis !== null) {
      redis.subscriber.on("error", (error) => log.warn({ err: error }, "redis subscriber error"));
      redis.subscriber.on("message", (channel: string, payload: string) => {
        if (channel.startsWith(CHANNEL_PREFIX)) this.deliver(channel.slice(CHANNEL_PREFIX.length), payload);
      });
    }
  }

  /** Resolves once the member will receive the room's messages (the subscription is active). */
  async join(room: string, member: RoomMember): Promise<void> {
    let members = this.rooms.get(room);
    if (members === undefined) {
      members = new Set();
      this.rooms.set(room, members);
    }
    members.add(member);
    if (this.redis === null) return;
    let subscribed = this.subscriptions.get(room);
    if (subscribed === undefined) {
      subscribed = this.redis.subscriber.subscribe(`${CHANNEL_PREFIX}${room}`).then(() => undefined);
      this.subscriptions.set(room, subscribed);
      subscribed.catch(() => this.subscriptions.delete(room));
    }
    try {
      await subscribed;
    } catch (error) {
      this.leave(room, member);
      throw error;
    }
  }

  leave(room: string, member: RoomMember): void {
    const members = this.rooms.get(room);
    if (members === undefined || !members.delete(member) || members.size > 0) return;
    this.rooms.delete(room);
    if (this.redis !== null && this.subscriptions.delete(room)) {
      this.redis.subscriber
        .unsubscribe(`${CHANNEL_PREFIX}${room}`)
        .catch((error: unknown) => this.log.warn({ err: error, room }, "unsubscribe failed"));
    }
  }

  /** Send `data` to every member of `room` on every instance; returns the message id. */
  async publish(room: string, data: unknown, from: string): Promise<string> {
    const message: RoomMessage = {
      type: "message",
      id: randomUUID(),
      room,
      from,
      data,
      sentAt: new Date().toISOString(),
    };
    const frame = JSON.stringify(message);
    if (this.redis === null) this.deliver(room, frame);
    else await this.redis.publisher.publish(`${CHANNEL_PREFIX}${room}`, frame);
    this.metrics.roomMessagesPublished.inc();
    return message.id;
  }

  /** Members of `room` connected to this instance. */
  localMembers(room: string): number {
    return this.rooms.get(room)?.size ?? 0;
  }

  /** Readiness of the subscriber connection (null without Redis). */
  subscriberStatus(): string | null {
    return this.redis === null ? null : this.redis.subscriber.status;
  }

  async close(): Promise<void> {
    this.rooms.clear();
    this.subscriptions.clear();
    if (this.redis === null) return;
    const { subscriber } = this.redis;
    // QUIT waits for Redis' answer, which a connection still reconnecting after an outage may never
    // give: shutdown waits for it one second at most, then drops the connection.
    const quit = subscriber.quit().then(
      () => true,
      () => false,
    );
    const late = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1_000).unref());
    if (!(await Promise.race([quit, late]))) subscriber.disconnect();
  }

  private deliver(room: string, frame: string): void {
    this.metrics.roomMessagesReceived.inc();
    const members = this.rooms.get(room);
    if (members === undefined) return;
    for (const member of members) member.send(frame);
  }
}
