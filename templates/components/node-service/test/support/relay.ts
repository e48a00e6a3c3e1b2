import { createServer, Socket } from "node:net";

/**
 * A TCP relay in front of a server (Redis) that a test can break, to play an outage against real
 * processes: `cut()` resets every connection and refuses new ones (Redis down), `pause()` keeps
 * connections open but holds every byte (Redis stopped with SIGSTOP, a network partition),
 * `restore()` ends either.
 */
export interface Relay {
  /** URL of the relay in the target's scheme, e.g. redis://127.0.0.1:41234 */
  url: string;
  cut(): void;
  pause(): void;
  restore(): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  linked: boolean;
}

export async function startRelay(targetUrl: string): Promise<Relay> {
  const target = new URL(targetUrl);
  let mode: "open" | "cut" | "paused" = "open";
  const pairs = new Set<Pair>();

  // Unpiped and paused sockets hold what arrives in their buffers until linked again.
  const link = (pair: Pair) => {
    if (pair.linked) return;
    pair.linked = true;
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
  };
  const unlink = (pair: Pair) => {
    pair.linked = false;
    pair.client.unpipe(pair.upstream);
    pair.upstream.unpipe(pair.client);
    pair.client.pause();
    pair.upstream.pause();
  };

  const server = createServer((client) => {
    if (mode === "cut") {
      client.resetAndDestroy();
      return;
    }
    const upstream = new Socket();
    const pair: Pair = { client, upstream, linked: false };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    upstream.connect(Number(target.port), target.hostname, () => {
      if (mode === "open") link(pair);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("relay has no TCP address");

  return {
    url: `${target.protocol}//127.0.0.1:${address.port}${target.pathname}`,
    cut() {
      mode = "cut";
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    pause() {
      mode = "paused";
      for (const pair of pairs) unlink(pair);
    },
    restore() {
      if (mode === "paused") for (const pair of pairs) link(pair);
      mode = "open";
    },
    close: () =>
      new Promise((resolve) => {
        for (const { client, upstream } of pairs) {
          client.destroy();
          upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
