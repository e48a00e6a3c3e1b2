import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { constraints, contract, type GatewayUnderTest, startGateway } from "./helpers.js";

interface Operation {
  security?: unknown[];
  parameters?: { in: string; name: string; required?: boolean; schema: unknown }[];
  requestBody?: { required?: boolean; content: Record<string, { schema: unknown }> };
  responses: Record<
    string,
    { description: string; headers?: Record<string, unknown>; content?: Record<string, { schema: unknown }> }
  >;
}
interface Document {
  openapi: string;
  info: { title: string; version: string };
  security: Record<string, string[]>[];
  components: { securitySchemes: Record<string, Record<string, string>> };
  paths: Record<string, Record<string, Operation>>;
}

let stack: GatewayUnderTest;
let doc: Document;

beforeAll(async () => {
  stack = await startGateway();
  // No API key needed.
  const res = await fetch(`${stack.gateway.url}/openapi.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/json");
  doc = (await res.json()) as Document;
});

afterAll(() => stack?.close());

const operation = (method: string, path: string): Operation => {
  const op = doc.paths[path]?.[method];
  if (op === undefined) throw new Error(`${method.toUpperCase()} ${path} is not documented`);
  return op;
};
const json = (op: Operation, status: string): unknown => op.responses[status]?.content?.["application/json"]?.schema;

const ERROR_BODY = {
  type: "object",
  additionalProperties: false,
  required: ["error"],
  properties: {
    error: {
      type: "object",
      additionalProperties: false,
      required: ["code", "message", "requestId"],
      properties: { code: { type: "string" }, message: { type: "string" }, requestId: { type: "string" } },
    },
  },
};

const ROUTES = [
  ["post", "/v1/predict", ["200", "400", "401", "413", "415", "422", "429", "500", "502", "503", "504"]],
  ["post", "/v1/jobs", ["202", "400", "401", "409", "413", "415", "422", "429", "500", "503"]],
  ["get", "/v1/jobs/{id}", ["200", "400", "401", "404", "410", "429", "500", "503"]],
  ["get", "/v1/jobs/{id}/events", ["200", "400", "401", "404", "410", "429", "500", "503"]],
] as const;

describe("GET /openapi.json", () => {
  it("is an OpenAPI 3.1 document with the API-key scheme required by default", () => {
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.info.title).toMatch(/gateway/);
    expect(doc.components.securitySchemes).toEqual({
      apiKey: { type: "apiKey", in: "header", name: "X-API-Key", description: expect.any(String) },
    });
    expect(doc.security).toEqual([{ apiKey: [] }]);
    expect(Object.keys(doc.paths).sort()).toEqual(["/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/events", "/v1/predict"]);
  });

  it.each(ROUTES)("%s %s documents every status it answers, errors in the shared shape", (method, path, statuses) => {
    const op = operation(method, path);
    expect(Object.keys(op.responses).sort()).toEqual([...statuses].sort());
    for (const status of statuses.filter((code) => Number(code) >= 400)) {
      expect(op.responses[status]?.description, `${status} description`).not.toBe("");
      expect(constraints(json(op, status)), `${method} ${path} ${status}`).toEqual(ERROR_BODY);
    }
  });

  it("request and response bodies are the contracts' schemas", () => {
    for (const path of ["/v1/predict", "/v1/jobs"]) {
      const body = operation("post", path).requestBody;
      expect(body?.required).toBe(true);
      expect(constraints(body?.content["application/json"]?.schema)).toEqual(constraints(contract("predict-request")));
    }
    expect(constraints(json(operation("post", "/v1/predict"), "200"))).toEqual(
      constraints(contract("predict-response")),
    );
    expect(constraints(json(operation("post", "/v1/jobs"), "202"))).toEqual(constraints(contract("job-accepted")));
    expect(constraints(json(operation("get", "/v1/jobs/{id}"), "200"))).toEqual(constraints(contract("job-status")));
    const events = operation("get", "/v1/jobs/{id}/events").responses["200"];
    expect(Object.keys(events?.content ?? {})).toEqual(["text/event-stream"]);
  });

  it("documents Retry-After where a retry is expected, and Location of an accepted job", () => {
    for (const [method, path, statuses] of ROUTES) {
      for (const status of statuses.filter((code) => code === "409" || code === "429" || code === "503")) {
        if (path === "/v1/predict" && status === "503") continue;
        expect(operation(method, path).responses[status]?.headers, `${method} ${path} ${status}`).toHaveProperty(
          "Retry-After",
        );
      }
    }
    expect(operation("post", "/v1/jobs").responses["202"]?.headers).toHaveProperty("Location");
  });

  it("documents the job id parameter and the Idempotency-Key header", () => {
    const [id] = operation("get", "/v1/jobs/{id}").parameters ?? [];
    expect(id).toMatchObject({ in: "path", name: "id", required: true });
    // The same uuid pattern as the job ids of the job entries.
    const { job_id } = contract("job-entry").properties as Record<string, unknown>;
    expect(constraints(id?.schema)).toEqual(job_id);
    const header = operation("post", "/v1/jobs").parameters?.find((p) => p.in === "header");
    expect(header).toMatchObject({ name: "idempotency-key" });
    expect(header?.required ?? false).toBe(false);
  });
});
