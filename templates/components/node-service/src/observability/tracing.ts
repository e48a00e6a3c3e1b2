// OpenTelemetry tracing: one SERVER span per request, continuing the caller's W3C `traceparent`
// (or starting a trace), its trace id on every log line of the request, and the `traceparent`
// handed to the job entry so the worker continues the same trace. Spans are exported over
// OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set (the exporter reads the OTEL_* variables).
import type { IncomingMessage } from "node:http";
import { context, propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-node";
import type { FastifyRequest } from "fastify";
import type { App } from "../types.js";

const tracer = trace.getTracer("gateway");
const spans = new WeakMap<IncomingMessage, Span>();
let provider: NodeTracerProvider | undefined;

/**
 * Installs the SDK and the W3C propagator once per process (call it before buildApp); `exporter`
 * (tests: in memory) is added to the OTLP exporter that OTEL_EXPORTER_OTLP_ENDPOINT turns on.
 */
export function configureTracing(serviceName: string, exporter?: SpanExporter): void {
  if (provider !== undefined) return;
  const spanProcessors: SpanProcessor[] = [];
  if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT) spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter()));
  if (exporter !== undefined) spanProcessors.push(new SimpleSpanProcessor(exporter));
  provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": process.env.OTEL_SERVICE_NAME || serviceName }),
    spanProcessors,
  });
  provider.register();
}

/** Flushes and stops the exporters (at shutdown). */
export async function shutdownTracing(): Promise<void> {
  await provider?.shutdown();
}

/** The `traceparent` of a request's span, for the job entry (undefined without a valid span). */
export function traceparentOf(request: FastifyRequest): string | undefined {
  const span = spans.get(request.raw);
  if (span === undefined) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  return carrier.traceparent;
}

/**
 * The span starts where Fastify makes the request's logger (so even "incoming request" carries the
 * trace id), is named after the route template once routed, and ends with the response.
 */
export function registerTracing(app: App): void {
  app.setChildLoggerFactory((logger, bindings, options, raw) => {
    const request = raw as IncomingMessage;
    const parent = propagation.extract(ROOT_CONTEXT, request.headers);
    const span = tracer.startSpan(request.method ?? "HTTP", { kind: SpanKind.SERVER }, parent);
    spans.set(request, span);
    const { traceId, spanId } = span.spanContext();
    return logger.child(
      trace.isSpanContextValid(span.spanContext()) ? { ...bindings, trace_id: traceId, span_id: spanId } : bindings,
      options,
    );
  });
  app.addHook("onRequest", async (request) => {
    const route = request.routeOptions.url;
    if (route !== undefined) {
      spans.get(request.raw)?.updateName(`${request.method} ${route}`).setAttribute("http.route", route);
    }
  });
  app.addHook("onResponse", async (request, reply) => {
    const span = spans.get(request.raw);
    if (span === undefined) return;
    span.setAttribute("http.response.status_code", reply.statusCode);
    if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
  app.addHook("onRequestAbort", async (request) => {
    spans.get(request.raw)?.setStatus({ code: SpanStatusCode.ERROR, message: "aborted" }).end();
  });
}
