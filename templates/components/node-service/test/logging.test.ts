import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { genReqId, redactUrl } from "../src/logging.js";

const request = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

describe("logging helpers", () => {
  it("redacts API keys passed in the query string", () => {
    expect(redactUrl("/ws?api_key=secret&room=a")).toBe("/ws?api_key=[Redacted]&room=a");
    expect(redactUrl("/ws?room=a&API_KEY=secret")).toBe("/ws?room=a&API_KEY=[Redacted]");
    expect(redactUrl("/healthz")).toBe("/healthz");
  });

  it("keeps a safe incoming request id and replaces anything else", () => {
    expect(genReqId(request({ "x-request-id": "abc-123_x.y:z" }))).toBe("abc-123_x.y:z");
    expect(genReqId(request({ "x-request-id": "a".repeat(129) }))).not.toBe("a".repeat(129));
    expect(genReqId(request({ "x-request-id": "line\nbreak" }))).toMatch(/^[0-9a-f-]{36}$/);
    expect(genReqId(request({}))).toMatch(/^[0-9a-f-]{36}$/);
  });
});
