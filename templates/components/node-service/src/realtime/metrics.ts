// WebSocket metrics (prom-client), registered by the processes that serve WebSockets only (see
// registerSocketMetrics in ../app.ts): connections open, opened and closed by reason, frames
// received, sent, rejected and refused by type or reason, and the rooms' fan-out. Every label takes
// values from a set known in advance (a route template, a frame type, a reason), each exported at 0
// from the start; never a room, a key id or a job id.
import { Counter, Gauge, type Registry } from "prom-client";
import type { App } from "../types.js";

/** Why a connection ended, as the server saw it (`websocket_connections_closed_total{reason}`). */
export const CLOSE_REASONS = [
  /** The client sent a close frame (whatever its code). */
  "client_closed",
  /** The connection ended without a close frame (1006: network, crashed client). */
  "connection_lost",
  /** No pong to the previous ping (WS_HEARTBEAT_MS): terminated. */
  "heartbeat_timeout",
  /** Unsent backlog past the limit: closed 1013. */
  "slow_consumer",
  /** Kept sending past its budget (WS_RATE_LIMIT_MAX): closed 1008. */
  "rate_limited",
  /** A frame above WS_MAX_PAYLOAD_BYTES: closed 1009. */
  "too_large",
  /** A frame the WebSocket protocol forbids (bad UTF-8, reserved bits, ...): closed by `ws`. */
  "protocol_error",
  /** The server is shutting down: closed 1001. */
  "server_shutdown",
  /** Its API key already had WS_MAX_CONNECTIONS_PER_KEY open on the route: closed 1013 at once. */
  "too_many_connections",
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/** Why a client frame was dropped unread (`websocket_messages_rejected_total{reason}`). */
export const REJECT_REASONS = ["too_large", "rate_limited", "binary", "invalid"] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** The frame types and refusals of one WebSocket route: its metrics' label values. */
export interface RouteFrames<Received extends string, Sent extends string, Refused extends string> {
  /** `type` of the frames a client may send. */
  received: readonly Received[];
  /** `type` of the frames the server sends. */
  sent: readonly Sent[];
  /** `code` of the error frames that refuse a valid frame. */
  refused: readonly Refused[];
}

export class SocketMetrics {
  readonly active: Gauge<"route">;
  readonly opened: Counter<"route">;
  readonly closed: Counter<"route" | "reason">;
  readonly received: Counter<"route" | "type">;
  readonly sent: Counter<"route" | "type">;
  readonly rejected: Counter<"route" | "reason">;
  readonly refused: Counter<"route" | "reason">;
  readonly roomMessagesPublished: Counter;
  readonly roomMessagesReceived: Counter;
  #shuttingDown = false;

  constructor(registry: Registry) {
    const registers = [registry];
    this.active = new Gauge({
      name: "websocket_connections_active",
      help: "WebSocket connections open now, by route.",
      labelNames: ["route"] as const,
      registers,
    });
    this.opened = new Counter({
      name: "websocket_connections_opened_total",
      help: "WebSocket connections opened (upgrades that reached the route), by route.",
      labelNames: ["route"] as const,
      registers,
    });
    this.closed = new Counter({
      name: "websocket_connections_closed_total",
      help: `WebSocket connections ended, by route and reason: ${CLOSE_REASONS.join(", ")}.`,
      labelNames: ["route", "reason"] as const,
      registers,
    });
    this.received = new Counter({
      name: "websocket_messages_received_total",
      help: "Valid frames read from clients, by route and frame type.",
      labelNames: ["route", "type"] as const,
      registers,
    });
    this.sent = new Counter({
      name: "websocket_messages_sent_total",
      help: "Frames sent to clients, by route and frame type.",
      labelNames: ["route", "type"] as const,
      registers,
    });
    this.rejected = new Counter({
      name: "websocket_messages_rejected_total",
      help: `Client frames dropped unread, by route and reason: ${REJECT_REASONS.join(", ")}.`,
      labelNames: ["route", "reason"] as const,
      registers,
    });
    this.refused = new Counter({
      name: "websocket_requests_refused_total",
      help: "Valid client frames answered with an error frame, by route and reason (its code).",
      labelNames: ["route", "reason"] as const,
      registers,
    });
    this.roomMessagesPublished = new Counter({
      name: "websocket_room_messages_published_total",
      help: "Room messages this process published (Redis PUBLISH; delivered here without Redis).",
      registers,
    });
    this.roomMessagesReceived = new Counter({
      name: "websocket_room_messages_received_total",
      help: "Room messages that reached this process (Redis pub/sub), before the fan-out to members.",
      registers,
    });
  }

  /**
   * The metrics of the WebSocket route `route` (its template, as in the HTTP metrics), every series
   * of its label values exported at 0: a labelled series born at its first increment, already at 1,
   * is invisible to increase() over a window that starts with it.
   */
  route<Received extends string, Sent extends string, Refused extends string>(
    route: string,
    frames: RouteFrames<Received, Sent, Refused>,
  ): SocketRoute<Received, Sent, Refused> {
    this.active.set({ route }, 0);
    this.opened.inc({ route }, 0);
    for (const reason of CLOSE_REASONS) this.closed.inc({ route, reason }, 0);
    for (const reason of REJECT_REASONS) this.rejected.inc({ route, reason }, 0);
    for (const type of frames.received) this.received.inc({ route, type }, 0);
    for (const type of frames.sent) this.sent.inc({ route, type }, 0);
    for (const reason of frames.refused) this.refused.inc({ route, reason }, 0);
    return new SocketRoute(this, route);
  }

  /** From now on a connection that ends without a reason of its own ends by the shutdown. */
  shuttingDown(): void {
    this.#shuttingDown = true;
  }

  get isShuttingDown(): boolean {
    return this.#shuttingDown;
  }
}

/** What one route's connections count; `Connection` (./connection.ts) calls it. */
export class SocketRoute<Received extends string, Sent extends string, Refused extends string> {
  constructor(
    private readonly metrics: SocketMetrics,
    readonly route: string,
  ) {}

  /** Whether the server is shutting down (it closes every connection then). */
  get shuttingDown(): boolean {
    return this.metrics.isShuttingDown;
  }

  opened(): void {
    this.metrics.opened.inc({ route: this.route });
    this.metrics.active.inc({ route: this.route });
  }

  closed(reason: CloseReason): void {
    this.metrics.active.dec({ route: this.route });
    this.metrics.closed.inc({ route: this.route, reason });
  }

  received(type: Received): void {
    this.metrics.received.inc({ route: this.route, type });
  }

  sent(type: Sent): void {
    this.metrics.sent.inc({ route: this.route, type });
  }

  rejected(reason: RejectReason): void {
    this.metrics.rejected.inc({ route: this.route, reason });
  }

  refused(reason: Refused): void {
    this.metrics.refused.inc({ route: this.route, reason });
  }
}

declare module "fastify" {
  interface FastifyInstance {
    /** The WebSocket metrics, registered with `app.metrics` where WebSockets are served. */
    socketMetrics: SocketMetrics;
  }
}

/** Registers the WebSocket metrics with the app's registry and decorates `app.socketMetrics`. */
export function registerSocketMetrics(app: App): SocketMetrics {
  const metrics = new SocketMetrics(app.metrics.registry);
  app.decorate("socketMetrics", metrics);
  return metrics;
}
