"""OpenTelemetry tracing: W3C trace context from the HTTP request into the job entry
(`traceparent`), continued by the worker. Spans are exported over OTLP/HTTP only when
OTEL_EXPORTER_OTLP_ENDPOINT is set (the exporter reads the standard OTEL_* variables); without an
exporter the worker creates no span at all, so the bus pays nothing for tracing it does not use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

_provider: TracerProvider | None = None
_exporting = False


def configure_tracing(service_name: str, exporter: SpanExporter | None = None) -> None:
    """Install the SDK once per process; add `exporter` (tests: in memory) or, when
    OTEL_EXPORTER_OTLP_ENDPOINT is set, the OTLP/HTTP exporter."""
    global _provider, _exporting
    if _provider is None:
        _provider = TracerProvider(
            resource=Resource.create(
                {"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name}
            )
        )
        trace.set_tracer_provider(_provider)
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            _exporting = True
    if exporter is not None:
        _provider.add_span_processor(SimpleSpanProcessor(exporter))
        _exporting = True


def exporting() -> bool:
    """True when spans go somewhere: only then does the worker create them."""
    return _exporting


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span (for a job entry), if there is one."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def extract(fields: Mapping[str, str]) -> context.Context:
    """The context a job entry carries (`traceparent`, `tracestate`), or an empty one."""
    return propagate.extract(fields)


def current_trace_id() -> str | None:
    """The trace id of the current span as 32 hex digits (for log lines), if any."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


@contextmanager
def job_context(fields: Mapping[str, str]) -> Iterator[None]:
    """Make the job's trace current (its log lines then carry the trace id)."""
    token = context.attach(extract(fields))
    try:
        yield
    finally:
        context.detach(token)


def record_job_spans(
    jobs: Sequence[tuple[str, Mapping[str, str], Exception | None]], started_ms: int, ended_ms: int
) -> None:
    """Per job, continuing the trace of its entry (or starting one): `job` (created → committed)
    with children `job queued` (created → picked up) and `job compute` (picked up → committed).
    Called once per batch, only while spans are exported."""
    tracer = trace.get_tracer(__name__)
    started_ns, ended_ns = started_ms * 1_000_000, ended_ms * 1_000_000
    for job_id, fields, error in jobs:
        created = fields.get("created_at", "")
        created_ns = min(int(created) * 1_000_000, started_ns) if created.isdigit() else started_ns
        attributes = {"messaging.system": "redis", "job.id": job_id}
        job = tracer.start_span(
            "job",
            context=extract(fields),
            kind=trace.SpanKind.CONSUMER,
            start_time=created_ns,
            attributes=attributes,
        )
        inside = trace.set_span_in_context(job)
        tracer.start_span("job queued", context=inside, start_time=created_ns).end(started_ns)
        compute = tracer.start_span("job compute", context=inside, start_time=started_ns)
        if error is not None:
            for span in (compute, job):
                span.record_exception(error)
                span.set_status(trace.StatusCode.ERROR, type(error).__name__)
        compute.end(ended_ns)
        job.end(ended_ns)
