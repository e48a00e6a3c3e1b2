"""Prometheus metrics (prometheus-client): RED metrics of the HTTP API and the job-bus counters.

Served by `serve_metrics` on a port of its own (METRICS_PORT: the API's default 9464, a worker's
9465; 0 turns it off), never on the API port: Prometheus scrapes it without an API key, and the
network policy opens only that port to the scraper. Every process has its own counters, which start
at zero when it starts: `rate()` and `increase()` handle those resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

API_METRICS_PORT = 9464
WORKER_METRICS_PORT = 9465

REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "HTTP requests by method, route template and status code: count (rate, errors) and duration.",
    ["method", "route", "status_code"],
)
JOBS_ACCEPTED = Counter("bus_jobs_accepted", "Jobs written to the bus by this producer.")
# The worker's own metrics are registered by the worker only (`register_worker_metrics`): the API
# process would export them as permanent zeros, which look like a worker that does nothing.
JOBS_COMPLETED = Counter(
    "bus_jobs_completed", "Jobs whose result this worker committed.", registry=None
)
# Every value of JOBS_FAILED's `reason` (failure_reason and the deadline sweep use only these).
FAILURE_REASONS = ("deadline_exceeded", "model_error", "invalid", "gave_up")
JOBS_FAILED = Counter(
    "bus_jobs_failed",
    "Jobs ended `failed` by this worker, by reason: deadline_exceeded, model_error, invalid, "
    "gave_up.",
    ["reason"],
    registry=None,
)
JOBS_DEAD_LETTERED = Counter(
    "bus_jobs_dead_lettered", "Entries moved to the dead-letter stream.", registry=None
)
# A labelled series appears at its first increment, already at 1, and increase() over a window
# that starts with it sees nothing: exported at 0 from the start, a process's first failure
# counts (the alert BusDeadlineFailures).
for _reason in FAILURE_REASONS:
    JOBS_FAILED.labels(_reason)
JOBS_RETRIED = Counter(
    "bus_jobs_retried",
    "Entries left for another delivery after a failure, or taken over.",
    registry=None,
)
STREAM_LAG = Gauge(
    "bus_stream_lag",
    "Entries of a job stream not yet delivered to the group.",
    ["partition"],
    registry=None,
)
STREAM_PENDING = Gauge(
    "bus_stream_pending",
    "Entries delivered to a worker and not acknowledged yet.",
    ["partition"],
    registry=None,
)


class Dependencies(Collector):
    """`dependency_up{dependency}`: 1 when a dependency (Redis) answers its readiness check, 0 when
    not, run on the app's event loop when Prometheus scrapes (the metrics server has a thread of
    its own). A dependency outage never makes the process unready (SPEC 7.2): it shows here and in
    /readyz?verbose."""

    HELP = "1 when a dependency (Redis) answers its check, 0 when not."

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.checks: Mapping[str, Callable[[], Awaitable[object]]] = {}

    def watch(
        self,
        loop: asyncio.AbstractEventLoop | None,
        checks: Mapping[str, Callable[[], Awaitable[object]]],
    ) -> None:
        self.loop, self.checks = loop, checks

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("dependency_up", self.HELP, labels=["dependency"])]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("dependency_up", self.HELP, labels=["dependency"])
        loop = self.loop
        if loop is not None and not loop.is_closed() and not self._on(loop):
            for name, check in list(self.checks.items()):
                family.add_metric([name], 1.0 if self._answers(loop, check) else 0.0)
        yield family

    @staticmethod
    def _on(loop: asyncio.AbstractEventLoop) -> bool:
        """Whether this thread runs `loop` (it cannot wait for itself)."""
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:
            return False

    @staticmethod
    def _answers(loop: asyncio.AbstractEventLoop, check: Callable[[], Awaitable[object]]) -> bool:
        async def bounded() -> None:
            await asyncio.wait_for(check(), timeout=2)

        try:
            asyncio.run_coroutine_threadsafe(bounded(), loop).result(timeout=3)
        except Exception:  # any failure is "down"; /readyz?verbose logs the reason
            return False
        return True


DEPENDENCIES = Dependencies()
REGISTRY.register(DEPENDENCIES)

JOB_LATENCY = Histogram(
    "bus_job_latency_seconds",
    "Time from a job's creation (created_at) to its committed result.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=None,
)
WORKER_METRICS: tuple[Collector, ...] = (
    JOBS_COMPLETED,
    JOBS_FAILED,
    JOBS_DEAD_LETTERED,
    JOBS_RETRIED,
    STREAM_LAG,
    STREAM_PENDING,
    JOB_LATENCY,
)


def register_worker_metrics() -> None:
    """Export the worker's metrics from this process (every Worker calls it; once is enough)."""
    for collector in WORKER_METRICS:
        with contextlib.suppress(ValueError):  # "Duplicated timeseries": registered already
            REGISTRY.register(collector)


def failure_reason(error: str) -> str:
    """A bounded label value for a job's public error text."""
    if error == "deadline exceeded":
        return "deadline_exceeded"
    if error == "model error":
        return "model_error"
    if error.startswith("gave up"):
        return "gave_up"
    return "invalid"


def observe_latency(created_at: list[str], now_ms: int) -> None:
    """Job latency of committed jobs from their entries' `created_at` (ms since the epoch)."""
    for value in created_at:
        if value.isdigit():
            JOB_LATENCY.observe(max(0, now_ms - int(value)) / 1000)


def observe_group(partition: int, lag: object, pending: object) -> None:
    """Set the stream gauges from one XINFO GROUPS reply (lag is None when Redis cannot tell)."""
    label = str(partition)
    if isinstance(lag, int | str):
        STREAM_LAG.labels(label).set(int(lag))
    if isinstance(pending, int | str):
        STREAM_PENDING.labels(label).set(int(pending))


def serve_metrics(host: str, port: int) -> str | None:
    """Expose /metrics on host:port in a background thread (port 0: not at all); its URL."""
    if port == 0:
        return None
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        # Taken by another process of this machine (several `make worker`): any free port will
        # do locally; in Kubernetes every pod has the port to itself.
        server, _ = start_http_server(0, addr=host)
        log.warning("metrics port taken, using another", extra={"wanted": port, "error": str(exc)})
    url = f"http://{host}:{server.server_port}/metrics"
    log.info("metrics listening", extra={"metrics": url})
    return url


class MetricsMiddleware:
    """Pure ASGI: one observation per HTTP request, labelled by the route template (never the raw
    path, so ids do not make new series); unmatched paths are labelled "unmatched"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_DURATION.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )
