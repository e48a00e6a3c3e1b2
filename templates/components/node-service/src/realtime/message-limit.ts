/** Close code for a client that keeps sending while limited: 1008, policy violation. */
export const RATE_LIMIT_CLOSE_CODE = 1008;

/**
 * A token bucket per connection: `max` messages per `windowMs`, refilled continuously, so short
 * bursts up to `max` pass and the sustained rate is max/window.
 */
export class MessageBudget {
  private tokens: number;
  private last: number;

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = max;
    this.last = now();
  }

  /** Spend one message; false when the budget is empty. */
  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.max, this.tokens + ((now - this.last) * this.max) / this.windowMs);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds until the next message would be accepted. */
  retryAfterMs(): number {
    return Math.max(0, Math.ceil(((1 - this.tokens) * this.windowMs) / this.max));
  }
}

/** What the limit does to a connection: counts the frames it drops, and closes it. */
export interface LimitedConnection {
  rejected(reason: "rate_limited"): void;
  close(reason: "rate_limited", code: number, text: string): void;
}

export interface MessageLimitOptions {
  max: number;
  windowMs: number;
  /** Sends the error frame of the endpoint: `{"type":"error","code","message"}`. */
  fail: (code: string, message: string) => void;
}

/**
 * Rate-limit the frames a client sends on `connection`. Call the returned guard first for every
 * frame: false means drop the frame (counted as rejected, `rate_limited`). The first frame over the
 * budget gets a `rate_limited` error frame (the frames after it are dropped silently); a client that
 * sends `max` more frames before the budget refills is disconnected with 1008.
 */
export function limitMessages(
  connection: LimitedConnection,
  { max, windowMs, fail }: MessageLimitOptions,
): () => boolean {
  const budget = new MessageBudget(max, windowMs);
  let dropped = 0;
  return () => {
    if (budget.take()) {
      dropped = 0;
      return true;
    }
    dropped += 1;
    connection.rejected("rate_limited");
    if (dropped === 1) {
      const seconds = Math.ceil(budget.retryAfterMs() / 1000);
      fail("rate_limited", `Too many messages: at most ${max} per ${windowMs / 1000} s; retry in ${seconds} s`);
    } else if (dropped > max) {
      connection.close("rate_limited", RATE_LIMIT_CLOSE_CODE, "rate limit exceeded");
    }
    return false;
  };
}
