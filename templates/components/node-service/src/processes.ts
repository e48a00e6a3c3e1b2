// HTTP_PROCESSES > 1: node:cluster runs that many copies of the server on the same port (the
// service keeps no state between requests; everything shared lives in Redis). The primary only
// supervises: it forwards shutdown to every process, stops them all when one dies (the supervisor,
// `make run` or Kubernetes, restarts the whole), and serves /metrics summed over them
// (prom-client's AggregatorRegistry).
import cluster from "node:cluster";
import { createServer, type Server } from "node:http";
import { AggregatorRegistry, type Registry } from "prom-client";
import { listenForScrapes } from "./observability/metrics.js";

/** The message a process gets from the primary when it must shut down gracefully. */
export const SHUTDOWN = "stackwise:shutdown";

interface PrimaryOptions {
  processes: number;
  host: string;
  metricsPort: number;
  shutdownTimeoutMs: number;
}

const say = (message: string, fields: Record<string, unknown> = {}): void => {
  process.stdout.write(
    `${JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, ...fields, msg: message })}\n`,
  );
};

/** Runs the primary: forks, supervises, forwards shutdown; resolves when every process is gone. */
export async function runPrimary({ processes, host, metricsPort, shutdownTimeoutMs }: PrimaryOptions): Promise<void> {
  let stopping = false;
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    process.exitCode = code;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.send(SHUTDOWN);
    // Past the processes' own shutdown deadline: killed.
    setTimeout(() => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill("SIGKILL");
    }, shutdownTimeoutMs + 5_000).unref();
  };
  const done = new Promise<void>((resolve) => {
    cluster.on("exit", (worker, code, signal) => {
      if (!stopping) {
        say("a server process exited: stopping the others", { worker: worker.process.pid, code, signal });
        stop(1);
      }
      if (Object.keys(cluster.workers ?? {}).length === 0) resolve();
    });
  });
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => stop(0));
  for (let i = 0; i < processes; i += 1) cluster.fork();
  say("server processes started", { processes });
  const metrics = metricsPort === 0 ? undefined : await serveClusterMetrics(host, metricsPort);
  await done;
  metrics?.closeAllConnections();
  metrics?.close();
}

async function serveClusterMetrics(host: string, port: number): Promise<Server> {
  const aggregator = new AggregatorRegistry();
  const server = createServer((req, res) => {
    if (req.method !== "GET" || req.url?.split("?")[0] !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    aggregator
      .clusterMetrics()
      .then((body) => res.writeHead(200, { "content-type": aggregator.contentType }).end(body))
      .catch(() => res.writeHead(500).end());
  });
  const url = await listenForScrapes(server, host, port, () => say("metrics port taken, using another", { port }));
  say("metrics listening", { metrics: url });
  return server;
}

/**
 * In a process the primary forked: its metrics are answered to the primary's aggregator, and it
 * shuts down when the primary says so, or when the primary is gone.
 */
export function joinPrimary(registry: Registry, shutdown: () => void): void {
  // Constructing one installs prom-client's answer to the primary's requests for metrics.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  process.on("message", (message) => {
    if (message === SHUTDOWN) shutdown();
  });
  process.on("disconnect", shutdown);
}
