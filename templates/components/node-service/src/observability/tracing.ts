// OpenTelemetry tracing: one SERVER span per request, continuing the caller's W3C `traceparent`
// (or starting a trace), its trace id on every log line of the request, and the `traceparent`
// handed to the job entry so the worker continues the same trace. Spans are exported over
// OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set (the exporter reads the OTEL_* variables).
// With nothing to export, a request gets a span context only (ids from the SDK's generator, no
// span recorded, no per-request hooks): the trace id still reaches the logs and the job entry.
import type { IncomingMessage } from "node:http";
import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  RandomIdGenerator,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-node";
import type { FastifyRequest } from "fastify";
import type { App } from "../types.js";

const tracer = trace.getTracer("gateway");
const spans = new WeakMap<IncomingMessage, Span>();
let provider: NodeTracerProvider | undefined;
/** Whether spans go anywhere (an exporter is configured): otherwise none are recorded. */
let recording = false;
const ids = new RandomIdGenerator();

/**
 * Installs the SDK and the W3C propagator once per process (call it before buildApp); `exporter`
 * (tests: in memory) is added to the OTLP exporter that OTEL_EXPORTER_OTLP_ENDPOINT turns on.
 */
export function configureTracing(serviceName: string, exporter?: SpanExporter): void {
  if (provider !== undefined) return;
  const spanProcessors: SpanProcessor[] = [];
  if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT) spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter()));
  if (exporter !== undefined) spanProcessors.push(new SimpleSpanProcessor(exporter));
  recording = spanProcessors.length > 0;
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

/**
 * The active context with the request's span in it: what `propagation.inject` needs so a call the
 * request makes (upstream, ML service) continues the request's trace as a child of its span.
 */
export function traceContextOf(request: FastifyRequest): Context {
  const span = spans.get(request.raw);
  return span === undefined ? context.active() : trace.setSpan(context.active(), span);
}

/** The `traceparent` of a request's span, for the job entry (undefined without a valid span). */
export function traceparentOf(request: FastifyRequest): string | undefined {
  if (!spans.has(request.raw)) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(traceContextOf(request), carrier);
  return carrier.traceparent;
}

/**
 * The request's span when nothing records spans: a context only, continuing the caller's trace
 * (its sampled flag kept for the worker) or starting one (sampled, as the SDK's default sampler
 * would: a worker that exports records its part).
 */
function contextOnlySpan(parent: ReturnType<typeof propagation.extract>): Span {
  const caller = trace.getSpanContext(parent);
  const valid = caller !== undefined && trace.isSpanContextValid(caller);
  return trace.wrapSpanContext({
    traceId: valid ? caller.traceId : ids.generateTraceId(),
    spanId: ids.generateSpanId(),
    traceFlags: valid ? caller.traceFlags : TraceFlags.SAMPLED,
    // The caller's vendor state travels on with its trace (as a recorded span keeps it).
    ...(valid && caller.traceState !== undefined ? { traceState: caller.traceState } : {}),
  });
}

/**
 * The span starts where Fastify makes the request's logger (so even "incoming request" carries the
 * trace id), is named after the route template once routed, and ends with the response.
 */
export function registerTracing(app: App): void {
  app.setChildLoggerFactory((logger, bindings, options, raw) => {
    const request = raw as IncomingMessage;
    // Without trace headers there is nothing to extract: a request that starts a trace skips the propagators.
    const parent =
      request.headers.traceparent === undefined && request.headers.baggage === undefined
        ? ROOT_CONTEXT
        : propagation.extract(ROOT_CONTEXT, request.headers);
    const span = recording
      ? tracer.startSpan(request.method ?? "HTTP", { kind: SpanKind.SERVER }, parent)
      : contextOnlySpan(parent);
    spans.set(request, span);
    const spanContext = span.spanContext();
    if (!trace.isSpanContextValid(spanContext)) return logger.child(bindings, options);
    bindings.trace_id = spanContext.traceId;
    bindings.span_id = spanContext.spanId;
    return logger.child(bindings, options);
  });
  // Naming, status and end matter only to a recorded span.
  if (!recording) return;
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
