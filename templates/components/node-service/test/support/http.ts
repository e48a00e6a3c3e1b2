import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

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
