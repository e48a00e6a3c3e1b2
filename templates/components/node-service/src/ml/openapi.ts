// The gateway's OpenAPI 3.1 document, generated from the TypeBox schemas of the routes declared
// after registerOpenApi(), served without an API key at GET /openapi.json.
import swagger from "@fastify/swagger";
import type { App } from "../types.js";

export interface OpenApiInfo {
  title: string;
  version: string;
  description: string;
}

/** Register before the routes it documents: @fastify/swagger collects them as they are declared. */
export async function registerOpenApi(app: App, info: OpenApiInfo): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info,
      components: {
        securitySchemes: {
          apiKey: { type: "apiKey", in: "header", name: "X-API-Key", description: "One of the API_KEYS" },
        },
      },
      security: [{ apiKey: [] }],
    },
  });
  app.get(
    "/openapi.json",
    { config: { public: true }, schema: { hide: true } },
    // The document is built once, on the first request, when every route is known.
    async (_request, reply) => reply.type("application/json; charset=utf-8").send(app.swagger()),
  );
}
