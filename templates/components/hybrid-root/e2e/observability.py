"""End-to-end observability check of the whole stack as real processes (`make e2e`).

1. Traces: a small OTLP/HTTP receiver in this process stands in for the collector
   (OTEL_EXPORTER_OTLP_ENDPOINT points every service at it); one POST /v1/jobs with a W3C
   `traceparent` must come back as spans of the gateway and of a worker in that same trace.
2. Metrics: every process serves /metrics on its own port; a real Prometheus (where `prometheus`
   is installed, else a printed reason) scrapes them all and its HTTP API must report the bus
   counters (jobs accepted and completed) and every target up. Without Prometheus the same
   endpoints are read directly.

The last line is `N passed, M failed`; the exit status is non-zero on any failure.
"""

from __future__ import annotations

import gzip
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from stacklib import SIGNALS, Stack, free_port

TRACE_ID = secrets.token_hex(16)
TRACEPARENT = f"00-{TRACE_ID}-{secrets.token_hex(8)}-01"


class Receiver(ThreadingHTTPServer):
    """OTLP/HTTP on POST /v1/traces: JSON (the Node exporter) and protobuf (the Python one)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.spans: list[tuple[str, str, str]] = []  # (service.name, span name, trace id)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.read_body()
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        json_body = "json" in (self.headers.get("content-type") or "")
        spans = parse_json(body) if json_body else parse_protobuf(body)
        with self.server.lock:
            self.server.spans.extend(spans)
        self.send_response(200)
        self.send_header("content-type", "application/json" if json_body else "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"{}" if json_body else b"")

    def read_body(self) -> bytes:
        """The request body, chunked or not, gzip-decoded (exporters may send either)."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
        return gzip.decompress(body) if self.headers.get("content-encoding") == "gzip" else body

    def log_message(self, format: str, *args: Any) -> None:
        return


def service_name(attributes: list[dict[str, Any]]) -> str:
    for attribute in attributes:
        if attribute.get("key") == "service.name":
            return str(attribute.get("value", {}).get("stringValue", ""))
    return ""


def parse_json(body: bytes) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for resource_spans in json.loads(body).get("resourceSpans", []):
        service = service_name(resource_spans.get("resource", {}).get("attributes", []))
        for scope in resource_spans.get("scopeSpans", []):
            out += [(service, span["name"], span["traceId"].lower()) for span in scope.get("spans", [])]
    return out


def parse_protobuf(body: bytes) -> list[tuple[str, str, str]]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out: list[tuple[str, str, str]] = []
    for resource_spans in request.resource_spans:
        attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        service = attributes.get("service.name", "")
        for scope in resource_spans.scope_spans:
            out += [(service, span.name, span.trace_id.hex()) for span in scope.spans]
    return out


def http_json(url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for(what: str, check: Any, within_s: float = 60) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s:.0f}s waiting for {what}")
        time.sleep(0.5)


def step_trace(stack: Stack, receiver: Receiver) -> None:
    key = stack.api_key.split(",")[0]
    headers = {"x-api-key": key, "traceparent": TRACEPARENT}
    job = http_json(f"{stack.gateway_url}/v1/jobs", {"features": [5.1, 3.5, 1.4, 0.2]}, headers)
    wait_for(
        "the job to finish",
        lambda: http_json(f"{stack.gateway_url}/v1/jobs/{job['id']}", headers={"x-api-key": key})["status"] == "done",
    )

    def traced() -> list[tuple[str, str, str]]:
        with receiver.lock:
            spans = [span for span in receiver.spans if span[2] == TRACE_ID]
        names = {name for _, name, _ in spans}
        return spans if "POST /v1/jobs" in names and "job compute" in names else []

    spans = wait_for("spans of the gateway and the worker in the client's trace", traced)
    services = sorted({service for service, _, _ in spans})
    print(f"  trace {TRACE_ID}: {len(spans)} spans from {', '.join(services)}")


def step_prometheus(stack: Stack, workdir: Path) -> None:
    targets = {name: urllib.parse.urlsplit(url).netloc for name, url in stack.metrics.items()}
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        print("  prometheus not installed (apt install prometheus): reading /metrics directly")
        for name, url in stack.metrics.items():
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            assert "# TYPE" in text, f"{name}: {url} is not Prometheus text"
        return
    scrape = [
        {"job_name": name, "scrape_interval": "1s", "static_configs": [{"targets": [target]}]}
        for name, target in targets.items()
    ]
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": scrape}))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api/v1/query?query="

    def value(query: str) -> float:
        result = http_json(api + urllib.parse.quote(query))["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    try:
        wait_for("every target up", lambda: value("count(up == 1)") == len(targets), within_s=60)
        accepted = wait_for("bus_jobs_accepted_total", lambda: value("sum(bus_jobs_accepted_total)"))
        completed = wait_for("bus_jobs_completed_total", lambda: value("sum(bus_jobs_completed_total)"))
        wait_for("bus_stream_lag", lambda: http_json(api + "bus_stream_lag")["data"]["result"])
        print(f"  prometheus scraped {len(targets)} targets: {accepted:.0f} accepted, {completed:.0f} completed")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def main() -> int:
    SIGNALS.install()
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    passed = failed = 0
    print("== observability: traces to an OTLP/HTTP receiver, metrics to Prometheus", flush=True)
    with tempfile.TemporaryDirectory(prefix="e2e-observability-") as tmp, Stack("e2e-obs", env=env) as stack:
        stack.start_redis()
        stack.start_ml(wait=False)
        stack.start_worker("obs-worker-1")
        stack.start_gateway(wait=False)
        stack.wait_http("ml-service", f"{stack.ml_url}/readyz")
        stack.wait_http("gateway", f"{stack.gateway_url}/readyz")
        stack.wait_workers(["obs-worker-1"])
        steps: list[tuple[str, Callable[[], None]]] = [
            ("one trace id from traceparent: gateway -> bus -> worker", lambda: step_trace(stack, receiver)),
            ("Prometheus scrapes every process; its API reports the bus", lambda: step_prometheus(stack, Path(tmp))),
        ]
        for title, step in steps:
            try:
                step()
                passed += 1
                print(f"ok    {title}", flush=True)
            except (AssertionError, OSError) as exc:
                failed += 1
                print(f"FAIL  {title}: {exc}", flush=True)
    receiver.shutdown()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
