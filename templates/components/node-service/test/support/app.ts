import { buildApp } from "../../src/app.js";
import { type Config, loadConfig } from "../../src/config.js";
import type { App } from "../../src/types.js";

export const API_KEY = "test-key-0123456789-abcdefghijklmnop";

export interface RunningApp {
  app: App;
  config: Config;
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  close: () => Promise<void>;
}

/**
 * Build the app from environment-style overrides and listen on a free loopback port.
 * `setup` may add routes first; they go through the same hooks (auth, rate limit, errors).
 */
export async function startApp(
  env: Record<string, string> = {},
  setup?: (app: App) => void | Promise<void>,
): Promise<RunningApp> {
  // ML_API_KEY is read by the gateway role only (other roles ignore variables they do not define).
  const config = loadConfig({ LOG_LEVEL: "silent", API_KEYS: API_KEY, ML_API_KEY: "test-ml-key", ...env });
  const app = await buildApp(config);
  if (setup !== undefined) await setup(app);
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === "string") throw new Error("server has no TCP address");
  return { app, config, url: `http://127.0.0.1:${address.port}`, close: () => app.close() };
}

/** Headers that authenticate as the test key. */
export const authed = (extra: Record<string, string> = {}): Record<string, string> => ({
  "x-api-key": API_KEY,
  ...extra,
});

/** The value of one series of the app's metrics, named as exposed (`name{label="value",…}`); 0 when absent. */
export async function sample(app: App, series: string): Promise<number> {
  const text = await app.metrics.registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}
