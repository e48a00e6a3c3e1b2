// Shared fixtures for the gateway tests: contract validation, a fake ML service, an SSE reader
// and a stand-in for the Python worker's writes to Redis.
import { readdirSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Ajv, type AnySchema } from "ajv";
import addFormats from "ajv-formats";
import { Redis } from "ioredis";
import { expect } from "vitest";
import { BusLayout, JOBS_GROUP, type PartitionKeys } from "../../src/ml/bus.js";
import type { RedisClient } from "../../src/redis.js";
import { type RunningApp, startApp } from "../support/app.js";
import { type StubServer, startStubServer } from "../support/http.js";
import { type RedisServer, startRedis } from "../support/redis.js";

/** In the hybrid layout the shared JSON Schemas live at <root>/contracts, next to gateway/. */
export const CONTRACTS_DIR = new URL("../../../contracts/", import.meta.url);

const ajv = new Ajv({ strict: true, allErrors: true });
addFormats.default(ajv);
for (const file of readdirSync(CONTRACTS_DIR).filter((name) => name.endsWith(".schema.json"))) {
  ajv.addSchema(JSON.parse(readFileSync(new URL(file, CONTRACTS_DIR), "utf8")) as AnySchema);
}

/** The raw JSON Schema of a contract, e.g. contract("predict-request"). */
export function contract(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`${name}.schema.json`, CONTRACTS_DIR), "utf8")) as Record<string, unknown>;
}

/** Assert that `value` satisfies contracts/<name>.schema.json. */
export function expectContract(name: string, value: unknown): void {
  const validate = ajv.getSchema(`${name}.schema.json`);
  if (validate === undefined) throw new Error(`no contract named ${name}`);
  const valid = validate(value);
  expect(valid, `${name}: ${ajv.errorsText(validate.errors)} in ${JSON.stringify(value)}`).toBe(true);
}

export const IRIS = { features: [5.1, 3.5, 1.4, 0.2] };
export const PREDICTION = {
  label: "setosa",
  probabilities: { setosa: 0.97, versicolor: 0.02, virginica: 0.01 },
  model_version: "test-1",
};

export type MlBehaviour = "ok" | "invalid-response" | "reject-422" | "error-500" | "slow" | "drop";

export interface FakeMl extends StubServer {
  behaviour: MlBehaviour;
  /** Whether GET /readyz answers 200 (GET /healthz always does). */
  ready: boolean;
  /** Requests the fake received on POST /predict. */
  calls: { headers: IncomingMessage["headers"]; body: unknown }[];
  /** Requests the fake received on GET /healthz and GET /readyz. */
  probes: { path: string; headers: IncomingMessage["headers"] }[];
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

/** A stand-in for the ML service: /healthz, /readyz, and POST /predict behaving as `fake.behaviour` says. */
export async function startFakeMl(): Promise<FakeMl> {
  const calls: FakeMl["calls"] = [];
  const probes: FakeMl["probes"] = [];
  // Tests set `behaviour` and `ready` on the returned object, so the handler reads them from there.
  let fake: FakeMl | undefined;
  const server = await startStubServer((req, res) => {
    if (req.method === "GET" && (req.url === "/healthz" || req.url === "/readyz")) {
      probes.push({ path: req.url, headers: req.headers });
      if (req.url === "/readyz" && fake?.ready === false) return json(res, 503, { status: "loading" });
      return json(res, 200, { status: "ok" });
    }
    if (req.method !== "POST" || req.url !== "/predict") return json(res, 404, { detail: "Not Found" });
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      calls.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
      switch (fake?.behaviour ?? "ok") {
        case "ok":
          return json(res, 200, PREDICTION);
        case "invalid-response":
          return json(res, 200, { label: "setosa" });
        case "reject-422":
          return json(res, 422, {
            error: { code: "validation_error", message: "features: too large", requestId: "ml" },
          });
        case "error-500":
          return json(res, 500, { detail: "boom" });
        case "slow":
          setTimeout(() => json(res, 200, PREDICTION), 2_000).unref();
          return;
        case "drop":
          req.socket.destroy();
          return;
      }
    });
  });
  fake = Object.assign(server, { behaviour: "ok" as MlBehaviour, ready: true, calls, probes });
  return fake;
}

export interface SseEvent {
  event?: string;
  id?: string;
  data: unknown;
}

/** Open an SSE stream; `next()` resolves with the next event, `ended` once the server ends it. */
export async function openSse(url: string, headers: Record<string, string>) {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: controller.signal });
  const queue: SseEvent[] = [];
  const waiters: ((event: SseEvent | null) => void)[] = [];
  let done = false;
  const push = (event: SseEvent | null): void => {
    const waiter = waiters.shift();
    if (waiter) waiter(event);
    else if (event) queue.push(event);
  };
  const ended = (async () => {
    if (!res.ok || res.body === null) return;
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        let split = buffer.indexOf("\n\n");
        while (split >= 0) {
          const block = buffer.slice(0, split);
          buffer = buffer.slice(split + 2);
          split = buffer.indexOf("\n\n");
          const event: SseEvent = { data: undefined };
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(": ");
            const [field, value] = colon < 0 ? [line, ""] : [line.slice(0, colon), line.slice(colon + 2)];
            if (field === "event") event.event = value;
            else if (field === "id") event.id = value;
            else if (field === "data") event.data = JSON.parse(value);
          }
          if (event.data !== undefined) push(event);
        }
      }
    } catch (err) {
      if (!controller.signal.aborted) throw err;
    } finally {
      done = true;
      while (waiters.length > 0) push(null);
    }
  })();
  return {
    res,
    ended,
    /** The next event, or null when the stream has ended. */
    next(timeoutMs = 5_000): Promise<SseEvent | null> {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      if (done) return Promise.resolve(null);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no SSE event within the timeout")), timeoutMs);
        waiters.push((event) => {
          clearTimeout(timer);
          resolve(event);
        });
      });
    },
    close(): void {
      controller.abort();
    },
  };
}

/** The bus layout the simulated worker uses (BUS_PARTITIONS of the gateway under test). */
export const layout = (partitions = 1): BusLayout => new BusLayout(partitions);

/** Writes what the Python worker writes when it picks a job up (status + event in one MULTI). */
export async function workerStarts(redis: RedisClient, id: string, partitions = 1): Promise<void> {
  const now = Date.now();
  const keys = layout(partitions).of(id);
  await redis
    .multi()
    .hset(keys.job(id), { status: "running", started_at: String(now) })
    .xadd(keys.events, "*", "id", id, "event", JSON.stringify(jobEvent(id, "running", now)))
    .exec();
}

export type Outcome = "done" | "failed";

/** The worker's commit of a finished job (BUS.md): hash, terminal event, XACK and ZREM in one MULTI. */
export async function workerFinishes(
  redis: RedisClient,
  id: string,
  outcome: Outcome,
  { partitions = 1, entryId, error = "model error" }: { partitions?: number; entryId?: string; error?: string } = {},
): Promise<void> {
  const now = Date.now();
  const keys = layout(partitions).of(id);
  const fields =
    outcome === "done"
      ? { status: "done", result: JSON.stringify(PREDICTION), finished_at: String(now) }
      : { status: "failed", error, finished_at: String(now) };
  const event = {
    ...jobEvent(id, outcome, now),
    ...(outcome === "done" ? { result: PREDICTION } : { error }),
  };
  const tx = redis
    .multi()
    .hset(keys.job(id), fields)
    .xadd(keys.events, "*", "id", id, "event", JSON.stringify(event))
    .zrem(keys.deadlines, id);
  if (entryId !== undefined) tx.xack(keys.jobs, JOBS_GROUP, entryId);
  await tx.exec();
}

/** Reads up to `count` new entries of one partition as consumer `consumer` of the workers' group. */
export async function workerReads(
  redis: RedisClient,
  keys: PartitionKeys,
  count = 100,
  consumer = "test-worker",
): Promise<{ entryId: string; fields: Record<string, string> }[]> {
  const reply = (await redis.xreadgroup("GROUP", JOBS_GROUP, consumer, "COUNT", count, "STREAMS", keys.jobs, ">")) as
    | [string, [string, string[]][]][]
    | null;
  return (reply?.[0]?.[1] ?? []).map(([entryId, flat]) => ({ entryId, fields: fieldMap(flat) }));
}

/** A stream entry's flat [field, value, ...] list as an object. */
export function fieldMap(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}

function jobEvent(id: string, status: "running" | "done" | "failed", ts: number) {
  return { id, type: status, status, ts };
}

/** The validation keywords of a schema: no annotations, `required` sorted, `$ref`s to contracts inlined. */
export function constraints(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(constraints);
  if (typeof schema !== "object" || schema === null) return schema;
  const { $ref } = schema as { $ref?: unknown };
  if (typeof $ref === "string") return constraints(contract($ref.replace(/\.schema\.json$/, "")));
  const skip = new Set(["$schema", "$id", "title", "description"]);
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([key]) => !skip.has(key))
      .map(([key, value]) => [key, key === "required" ? [...(value as string[])].sort() : constraints(value)]),
  );
}

/** Wait until `check` returns true (polling), or fail after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 5_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface GatewayUnderTest {
  server: RedisServer;
  /** A plain client of the same Redis: what the tests inspect, and the simulated worker's connection. */
  redis: Redis;
  ml: FakeMl;
  gateway: RunningApp;
  close: () => Promise<void>;
}

/** A throw-away redis-server, a fake ML service and the gateway between them (no rate limit in the way). */
export async function startGateway(env: Record<string, string> = {}): Promise<GatewayUnderTest> {
  const server = await startRedis();
  const redis = new Redis(server.url, { maxRetriesPerRequest: null });
  redis.on("error", () => undefined);
  const ml = await startFakeMl();
  const gateway = await startApp({ REDIS_URL: server.url, ML_URL: ml.url, RATE_LIMIT_MAX: "10000", ...env });
  return {
    server,
    redis,
    ml,
    gateway,
    close: async () => {
      server.resume();
      await gateway.close();
      redis.disconnect();
      await ml.close();
      await server.stop();
    },
  };
}
