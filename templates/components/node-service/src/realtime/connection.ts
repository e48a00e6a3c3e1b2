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

/** The close code of a connection over its key's cap: 1013 Try Again Later (RFC 6455 registry). */
export const TOO_MANY_CONNECTIONS_CLOSE_CODE = 1013;

/**
 * WebSocket connections open per API key on one route of this process (WS_MAX_CONNECTIONS_PER_KEY):
 * one key, leaked or hostile, cannot hold every socket and file descriptor the process has, as
 * the HTTP rate limit alone (upgrades per minute, not connections held) would let it over time.
 */
export class ConnectionQuota {
  readonly #open = new Map<string, number>();

  constructor(readonly max: number) {}

  /**
   * Counts `connection` against `key` until its socket closes; past the cap the connection is
   * closed at once (1013, counted as `too_many_connections`) and false is returned.
   */
  admit(
    key: string,
    connection: { socket: WebSocket; close(reason: CloseReason, code: number, text: string): void },
  ): boolean {
    const open = this.#open.get(key) ?? 0;
    if (open >= this.max) {
      connection.close(
        "too_many_connections",
        TOO_MANY_CONNECTIONS_CLOSE_CODE,
        "too many connections for this API key",
      );
      return false;
    }
    this.#open.set(key, open + 1);
    connection.socket.once("close", () => {
      const left = (this.#open.get(key) ?? 1) - 1;
      if (left > 0) this.#open.set(key, left);
      else this.#open.delete(key);
    });
    return true;
  }

  /** Connections open now for `key` (tests, diagnostics). */
  openFor(key: string): number {
    return this.#open.get(key) ?? 0;
  }
}
