import WebSocket from "ws";
import { API_KEY, type RunningApp } from "./app.js";

export type Frame = { type: string; [key: string]: unknown };

/** A test WebSocket client that queues incoming frames and awaits the next matching one. */
export class Client {
  private readonly frames: Frame[] = [];
  private readonly waiters: Array<{ match: (frame: Frame) => boolean; resolve: (frame: Frame) => void }> = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(readonly socket: WebSocket) {
    socket.on("message", (data) => {
      const frame = JSON.parse(data.toString()) as Frame;
      const index = this.waiters.findIndex((waiter) => waiter.match(frame));
      if (index >= 0) this.waiters.splice(index, 1)[0]?.resolve(frame);
      else this.frames.push(frame);
    });
    this.closed = new Promise((resolve) =>
      socket.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  next(match: (frame: Frame) => boolean = () => true, timeoutMs = 3000): Promise<Frame> {
    const index = this.frames.findIndex(match);
    if (index >= 0) return Promise.resolve(this.frames.splice(index, 1)[0] as Frame);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching frame within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
      });
    });
  }

  /** Frames received but not consumed yet. */
  pending(): Frame[] {
    return [...this.frames];
  }

  send(payload: unknown): void {
    this.socket.send(typeof payload === "string" ? payload : JSON.stringify(payload));
  }

  async join(room: string): Promise<void> {
    this.send({ type: "join", room });
    await this.next((frame) => frame.type === "joined" && frame.room === room);
  }

  close(): void {
    this.socket.close();
  }
}

const wsUrl = (app: RunningApp, query = "") => `${app.url.replace("http", "ws")}/ws${query}`;

export function connect(
  app: RunningApp,
  options: { query?: string; headers?: Record<string, string>; autoPong?: boolean } = {},
): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl(app, options.query), {
      headers: options.headers ?? { "x-api-key": API_KEY },
      autoPong: options.autoPong ?? true,
    });
    const client = new Client(socket);
    socket.once("open", () => client.next((frame) => frame.type === "welcome").then(() => resolve(client), reject));
    socket.once("unexpected-response", (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)));
    socket.once("error", reject);
  });
}
