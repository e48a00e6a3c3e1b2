import cluster from "node:cluster";
import closeWithGrace from "close-with-grace";
import { buildApp } from "./app.js";
import { ConfigError, loadConfig } from "./config.js";
import { serveMetrics } from "./observability/metrics.js";
import { shutdownTracing } from "./observability/tracing.js";
import { joinPrimary, runPrimary } from "./processes.js";

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }

  if (config.HTTP_PROCESSES > 1 && cluster.isPrimary) {
    await runPrimary({
      processes: config.HTTP_PROCESSES,
      host: config.HOST,
      metricsPort: config.METRICS_PORT,
      shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
    });
    return;
  }

  const app = await buildApp(config);
  app.addHook("onClose", shutdownTracing);

  // SIGTERM/SIGINT: stop accepting connections, let in-flight requests finish (new ones get 503),
  // close WebSockets and Redis, then exit. A second signal or the timeout forces the exit.
  // Forked by the primary (HTTP_PROCESSES > 1): signals are the primary's to handle (a terminal's
  // Ctrl-C or a supervisor's process-group signal reaches every process); it says when to stop.
  const forked = cluster.isWorker;
  const grace = closeWithGrace(
    { delay: config.SHUTDOWN_TIMEOUT_MS, ...(forked ? { skip: ["SIGINT", "SIGTERM"] as const } : {}) },
    async ({ signal, err, manual }) => {
      if (err !== undefined) app.log.error({ err }, "shutting down after an uncaught error");
      else app.log.info({ signal: signal ?? (manual === true ? "primary" : undefined) }, "shutting down");
      await app.close();
    },
  );

  if (forked) {
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => undefined);
    let closing = false;
    joinPrimary(app.metrics.registry, () => {
      if (closing) return;
      closing = true;
      grace.close();
    });
  } else {
    await serveMetrics(app, config.HOST, config.METRICS_PORT);
  }
  await app.listen({ host: config.HOST, port: config.PORT });
}

main().catch((error: unknown) => {
  process.stderr.write(`fatal: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
