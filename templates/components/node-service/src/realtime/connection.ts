import type { WebSocket } from "@fastify/websocket";
import type { CloseReason, RejectReason, SocketRoute } from "./metrics.js";

/** Close connections whose unsent backlog grows beyond this (slow consumers). */
export const MAX_BUFFERED_BYTES = 1_048_576;

/** `ws`'s error code for a frame above maxPayload (WS_MAX_PAYLOAD_BYTES), which it closes with 1009. */
const TOO_LARGE = "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH";

/**
 * One WebSocket connection of a route, counted in its metrics from the upgrade to the close: the
 * server sends, closes and counts frames through it, so each close has its reason.
 */
export class Connection<Received extends string, Sent extends string, Refused extends string> {
  #reason: CloseReason | undefined;

  constructor(
    readonly socket: WebSocket,
    private readonly metrics: SocketRoute<Received, Sent, Refused>,
  ) {
    metrics.opened();
    socket.on("error", (error: NodeJS.ErrnoException) => {
      // Errors come from frames `ws` refuses; it closes the connection after them.
      if (error.code === TOO_LARGE) metrics.rejected("too_large");
      this.#reason ??= error.code === TOO_LARGE ? "too_large" : "protocol_error";
    });
    socket.once("close", (code: number) => {
      const lost = code === 1006 ? "connection_lost" : "client_closed";
      metrics.closed(this.#reason ?? (metrics.shuttingDown ? "server_shutdown" : lost));
    });
  }

  /** Sends `frame` (JSON text of `type`) if the connection is open; a slow consumer is closed. */
  send(type: Sent, frame: string): void {
    const { socket } = this;
    if (socket.readyState !== socket.OPEN) return;
    if (socket.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.close("slow_consumer", 1013, "slow consumer");
      return;
    }
    socket.send(frame);
    this.metrics.sent(type);
  }

  /** Closes the connection (a close frame with `code`), counted as ended by `reason`. */
  close(reason: CloseReason, code: number, text: string): void {
    this.#reason ??= reason;
    this.socket.close(code, text);
  }

  /** Drops the connection without a close frame, counted as ended by `reason`. */
  terminate(reason: CloseReason): void {
    this.#reason ??= reason;
    this.socket.terminate();
  }

  received(type: Received): void {
    this.metrics.received(type);
  }

  rejected(reason: RejectReason): void {
    this.metrics.rejected(reason);
  }

  refused(reason: Refused): void {
    this.metrics.refused(reason);
  }
}
