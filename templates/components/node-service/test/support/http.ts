import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";

export interface StubServer {
  url: string;
  server: Server;
  close: () => Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const okHandler: Handler = (_req, res) => {
  res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
};

/** A plain node:http server on a free loopback port (an upstream or a downstream service stand-in). */
export async function startStubServer(handler: Handler = okHandler): Promise<StubServer> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("stub server has no TCP address");
  return {
    url: `http://127.0.0.1:${address.port}`,
    server,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * POST `total` bytes to `url` as `Transfer-Encoding: chunked` (no Content-Length, so a limit must count
 * the bytes as they arrive), starting with `prefix`. Resolves with the answer even when the server
 * answers before reading everything and drops the connection.
 */
export function postChunked(
  url: string,
  headers: Record<string, string>,
  total: number,
  prefix = "",
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(url, { method: "POST", headers: { ...headers, "transfer-encoding": "chunked" } }, (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on("data", (part: Buffer) => parts.push(part));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", (error) => {
      if (!answered) reject(error);
    });
    const chunk = Buffer.alloc(16_384, "a");
    let sent = 0;
    const write = (): void => {
      if (sent === 0 && prefix.length > 0) {
        req.write(prefix);
        sent = Buffer.byteLength(prefix);
      }
      while (sent < total && !req.destroyed) {
        const part = chunk.subarray(0, Math.min(chunk.length, total - sent));
        sent += part.length;
        if (!req.write(part)) {
          req.once("drain", write);
          return;
        }
      }
      req.end();
    };
    write();
  });
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * Send a request exactly as written: the request target (`/a/../b`, `http://host/a`) and headers
 * (`Connection`, `Expect`) as given, which fetch() and the URL class would normalise or refuse.
 * With `Expect: 100-continue` the body waits for the server's 100 Continue, as curl does.
 */
export function sendRaw(
  baseUrl: string,
  options: { method?: string; path: string; headers?: Record<string, string>; body?: string },
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(baseUrl);
    const headers = { ...options.headers };
    if (options.body !== undefined) headers["content-length"] = String(Buffer.byteLength(options.body));
    const req = request(
      { host: hostname, port, path: options.path, method: options.method ?? "GET", headers, agent: false },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (part: Buffer) => parts.push(part));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    const expectsContinue = Object.entries(headers).some(
      ([name, value]) => name.toLowerCase() === "expect" && value.toLowerCase() === "100-continue",
    );
    if (options.body !== undefined && expectsContinue) req.on("continue", () => req.end(options.body));
    else req.end(options.body);
  });
}

/**
 * GET `path` exactly as written: fetch() and the URL class resolve `..` and `%2e%2e` before sending,
 * a hostile client does not.
 */
export async function getRaw(
  baseUrl: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const { status, body } = await sendRaw(baseUrl, { path, headers });
  return { status, body };
}
