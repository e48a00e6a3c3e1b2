// withDeadline: whichever comes first, the operation's outcome or the deadline; a late result is
// handed to `discard` (undone), a late failure is swallowed (no unhandled rejection).
import { describe, expect, it, vi } from "vitest";
import { withDeadline } from "../src/redis.js";

const settleIn = <T>(ms: number, value: T, fail = false): Promise<T> =>
  new Promise((resolve, reject) => setTimeout(() => (fail ? reject(value) : resolve(value)), ms));

describe("withDeadline", () => {
  it("passes the operation's value and error through when in time", async () => {
    await expect(withDeadline(settleIn(5, "ok"), 1_000)).resolves.toBe("ok");
    const error = new Error("boom");
    await expect(withDeadline(settleIn(5, error, true), 1_000)).rejects.toBe(error);
  });

  it("rejects at the deadline, then discards the late value; a late failure is swallowed", async () => {
    const discard = vi.fn();
    await expect(withDeadline(settleIn(100, "late"), 10, discard)).rejects.toThrow(/no answer from Redis within 10 ms/);
    expect(discard).not.toHaveBeenCalled();
    await settleIn(150, undefined);
    expect(discard).toHaveBeenCalledWith("late");
    const unhandled = vi.fn();
    process.on("unhandledRejection", unhandled);
    try {
      await expect(withDeadline(settleIn(50, new Error("late"), true), 10)).rejects.toThrow(/within 10 ms/);
      await settleIn(100, undefined);
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off("unhandledRejection", unhandled);
    }
  });

  it("a value in time is never discarded", async () => {
    const discard = vi.fn();
    await expect(withDeadline(settleIn(5, "ok"), 50, discard)).resolves.toBe("ok");
    await settleIn(80, undefined);
    expect(discard).not.toHaveBeenCalled();
  });
});
