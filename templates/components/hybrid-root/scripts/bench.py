"""Loopback benchmark of the local stack. Bounded in time; prints a table; never fails on slowness.

HTTP (autocannon, or wrk for GET when autocannon cannot run):
  * gateway GET /healthz throughput;
  * POST /v1/predict through the gateway versus straight to the ML service: throughput at
    BENCH_CONNECTIONS (autocannon), and latency on one keep-alive connection, one request at a
    time, measured here with sub-millisecond resolution (the gateway's added latency is the
    difference of the medians).
Bus, through the gateway's POST /v1/jobs (BENCH_JOBS jobs sent by autocannon at BENCH_CONNECTIONS,
gateway/bench/jobs.mjs; 8 Python client threads where autocannon is not installed):
  * drain: the jobs enqueued first, then 1 (and then 2) workers started: jobs per second from
    the first job taken to the last result;
  * end to end: the jobs sent while 2 workers run: jobs per second from the first POST to the
    last result, and job latency (created_at -> finished_at) percentiles.

Knobs: BENCH_SECONDS (5 per HTTP run), BENCH_CONNECTIONS (50), BENCH_JOBS (2000), BENCH_HTTP (1;
0 skips the HTTP runs), BENCH_CLUSTER (0; 1 repeats the bus runs on a three-master Redis Cluster
on loopback, REDIS_URL=redis+cluster://..., in the same run), BUS_PARTITIONS (1, or 4 with
BENCH_CLUSTER; the same for both).
Everything (servers, workers, load generator) shares this machine's cores: compare numbers from
the same machine only.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stacklib import (
    GATEWAY_DIR,
    LOAD_TEST_ENV,
    SIGNALS,
    Bus,
    Interrupted,
    Stack,
    StackError,
    http,
    submit_jobs,
    usable_cores,
)

SECONDS = max(1, min(int(os.environ.get("BENCH_SECONDS", "5")), 30))
CONNECTIONS = max(1, min(int(os.environ.get("BENCH_CONNECTIONS", "50")), 200))
JOBS = max(10, min(int(os.environ.get("BENCH_JOBS", "2000")), 50_000))
CLUSTER = os.environ.get("BENCH_CLUSTER", "0") not in ("", "0", "false", "no")
HTTP = os.environ.get("BENCH_HTTP", "1") not in ("", "0", "false", "no")
BODY = {"features": [5.1, 3.5, 1.4, 0.2]}


def autocannon_argv() -> list[str] | None:
    local = GATEWAY_DIR / "node_modules" / ".bin" / "autocannon"
    if local.exists():
        return [str(local)]
    if shutil.which("npm"):
        return ["npm", "exec", "--yes", "autocannon@9.0.0", "--"]
    return None


class Http:
    def __init__(self) -> None:
        self.autocannon = autocannon_argv()
        self.wrk = shutil.which("wrk")

    def run(self, url: str, connections: int, headers: dict[str, str], body: Any = None) -> dict[str, float] | None:
        if self.autocannon:
            return self._autocannon(url, connections, headers, body)
        if self.wrk and body is None:
            return self._wrk(url, connections, headers)
        return None

    def _autocannon(self, url: str, c: int, headers: dict[str, str], body: Any) -> dict[str, float] | None:
        argv = [*(self.autocannon or []), "-j", "-c", str(c), "-d", str(SECONDS)]
        for k, v in headers.items():
            argv += ["-H", f"{k}={v}"]
        if body is not None:
            argv += ["-m", "POST", "-H", "content-type=application/json", "-b", json.dumps(body)]
        proc = subprocess.run([*argv, url], capture_output=True, text=True, timeout=SECONDS + 120, check=False)
        if proc.returncode != 0:
            print(f"  autocannon failed: {proc.stderr.strip()[-300:]}")
            return None
        out = json.loads(proc.stdout)
        return {
            "rps": out["requests"]["average"],
            "p50": out["latency"]["p50"],
            "p99": out["latency"]["p99"],
            "mean": out["latency"]["average"],
            "errors": out["errors"] + out["timeouts"] + out["non2xx"],
        }

    def _wrk(self, url: str, c: int, headers: dict[str, str]) -> dict[str, float] | None:
        argv = [self.wrk or "wrk", "-t1", f"-c{c}", f"-d{SECONDS}s", "--latency"]
        for k, v in headers.items():
            argv += ["-H", f"{k}: {v}"]
        proc = subprocess.run([*argv, url], capture_output=True, text=True, timeout=SECONDS + 60, check=False)
        stats: dict[str, float] = {"errors": 0}
        units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if line.startswith("Requests/sec:"):
                stats["rps"] = float(parts[1])
            elif len(parts) == 2 and parts[0] in ("50%", "99%"):
                value = parts[1]
                unit = next(u for u in ("us", "ms", "s") if value.endswith(u))
                stats["p" + parts[0][:-1]] = float(value[: -len(unit)]) * units[unit]
            elif "Non-2xx" in line or "Socket errors" in line:
                stats["errors"] += sum(int(p.rstrip(",")) for p in parts if p.rstrip(",").isdigit())
        return stats if "rps" in stats else None


def sequential(url: str, headers: dict[str, str], body: Any, requests: int = 3000) -> dict[str, float]:
    """One keep-alive connection, one request at a time: latency with sub-millisecond resolution.

    The first half warms up (the gateway's JIT, connection pools) and is not counted.
    """
    parsed = urllib.parse.urlsplit(url)
    conn = HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port or 80, timeout=10)
    data = json.dumps(body).encode()
    sent = {**headers, "content-type": "application/json"}
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    for i in range(requests):
        t = time.perf_counter()
        conn.request("POST", parsed.path, body=data, headers=sent)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            errors += 1
        if i >= requests // 2:
            latencies.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - started
    conn.close()
    return {
        "rps": requests / elapsed,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "errors": errors,
    }


def post_jobs(url: str, api_key: str) -> tuple[list[str], float]:
    """JOBS jobs POSTed to /v1/jobs: (accepted ids, seconds). autocannon when the gateway has it."""
    if not (GATEWAY_DIR / "node_modules" / "autocannon").is_dir():
        return submit_jobs(url, api_key, [BODY] * JOBS)
    argv = ["node", "bench/jobs.mjs", url, api_key, str(JOBS), str(CONNECTIONS)]
    proc = subprocess.run(argv, cwd=GATEWAY_DIR, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise StackError(f"bench/jobs.mjs failed: {proc.stderr.strip()[-300:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["failed"]:
        print(f"  bus: {report['failed']} POST /v1/jobs not accepted")
    return list(report["ids"]), float(report["seconds"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bus_round(stack: Stack, bus: Bus, workers: int, *, prefilled: bool) -> dict[str, float]:
    """JOBS jobs through the gateway's POST /v1/jobs and `workers` workers.

    prefilled: the jobs are enqueued first and the workers started afterwards; the rate counts
    from the first job a worker took to the last result (the rate they drain a full stream at).
    Otherwise the jobs are sent while the workers run: the end-to-end rate (gateway enqueue, bus,
    worker, commit) from the first POST to the last result.
    """
    names = [f"bench-{workers}w-{'drain' if prefilled else 'e2e'}-{i}" for i in range(1, workers + 1)]
    if not prefilled:
        for name in names:
            stack.start_worker(name)
        stack.wait_workers(names)
    t0 = time.time()
    ids, enqueue_s = post_jobs(stack.gateway_url, stack.api_key.split(",")[0])
    if prefilled:
        for name in names:
            stack.start_worker(name)
    deadline = time.monotonic() + 180
    while True:
        rows = bus.jobs(ids, "status", "created_at", "started_at", "finished_at")
        if all(row[0] in ("done", "failed") for row in rows):
            break
        stack.check_alive(*names)
        if time.monotonic() > deadline:
            print(f"  bus: {sum(row[0] == 'done' for row in rows)}/{JOBS} done after 180 s")
            break
        time.sleep(0.25)
    stack.stop_many(names)
    done = [(int(c or 0), int(s or 0), int(f or 0)) for status, c, s, f in rows if status == "done"]
    if not done:
        return {"jobs_s": 0.0, "p50": 0.0, "p99": 0.0, "enqueue_s": enqueue_s, "done": 0}
    latencies = [float(f - c) for c, _s, f in done]
    first = min(s for _c, s, _f in done) if prefilled else t0 * 1000
    span = (max(f for _c, _s, f in done) - first) / 1000
    return {
        "jobs_s": len(done) / span,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "enqueue_s": enqueue_s,
        "done": len(done),
    }


def bus_rows(stack: Stack, backend: str) -> list[tuple[str, str, str, str, str]]:
    rows = []
    bus = stack.bus()
    where = f"{backend}, {stack.partitions} partition(s)"
    try:
        for workers, prefilled in ((1, True), (2, True), (2, False)):
            what = f"drain {JOBS} queued jobs" if prefilled else f"{JOBS} jobs end to end"
            print(f"  running bus on {backend}: {what}, {workers} worker(s) ...", flush=True)
            res = bus_round(stack, bus, workers, prefilled=prefilled)
            rows.append(
                (
                    f"bus {what}, {workers} worker(s)",
                    where,
                    f"{res['jobs_s']:,.0f} jobs/s",
                    f"{res['p50']:.0f} / {res['p99']:.0f} ms",
                    f"{res['done']:.0f} done; POST /v1/jobs {JOBS / res['enqueue_s']:,.0f}/s",
                )
            )
    finally:
        bus.close()
    return rows


def http_rows(stack: Stack) -> list[tuple[str, str, str, str, str]]:
    rows = []
    gw, ml = stack.gateway_url, stack.ml_url
    load = Http()
    if not (load.autocannon or load.wrk):
        print("  no autocannon (npm) or wrk: HTTP runs skipped")
    gw_auth, ml_auth = {"x-api-key": stack.api_key}, {"x-api-key": stack.ml_api_key}
    runs = [
        ("gateway GET /healthz", f"{gw}/healthz", CONNECTIONS, {}, None),
        ("gateway POST /v1/predict", f"{gw}/v1/predict", CONNECTIONS, gw_auth, BODY),
        ("ml-service POST /predict", f"{ml}/predict", CONNECTIONS, ml_auth, BODY),
        ("gateway POST /v1/predict", f"{gw}/v1/predict", 1, gw_auth, BODY),
        ("ml-service POST /predict", f"{ml}/predict", 1, ml_auth, BODY),
    ]
    p50_c1: dict[str, float] = {}
    for title, url, c, headers, body in runs:
        print(f"  running {title} c={c} ...", flush=True)
        stats = sequential(url, headers, body) if c == 1 else load.run(url, c, headers, body)
        if stats is None:
            rows.append((title, f"c={c}", "-", "-", "skipped"))
            continue
        if c == 1:
            p50_c1[title.split()[0]] = stats["p50"]
        rows.append(
            (
                title,
                f"c={c}",
                f"{stats['rps']:,.0f} req/s",
                f"{stats['p50']:.2f} / {stats['p99']:.2f} ms",
                f"{stats['errors']:.0f} errors",
            )
        )
    if len(p50_c1) == 2:
        added = p50_c1["gateway"] - p50_c1["ml-service"]
        rows.append(("gateway added latency", "c=1", "-", f"{added:+.2f} ms", "difference of the p50s"))
    return rows


def start(stack: Stack, cluster: bool) -> None:
    if cluster:
        stack.start_redis_cluster(3)
    else:
        stack.start_redis()
    stack.start_ml()
    stack.start_gateway(env=LOAD_TEST_ENV)
    assert http("POST", f"{stack.gateway_url}/v1/predict", BODY, {"x-api-key": stack.api_key}).status == 200


def main() -> int:
    SIGNALS.install()
    os.environ.setdefault("STACK_LOG_LEVEL", "error")
    partitions = int(os.environ.get("BUS_PARTITIONS") or (4 if CLUSTER else 1))
    print(f"bench: loopback only; {SECONDS}s per HTTP run, {CONNECTIONS} connections, {JOBS} bus jobs")
    print(f"       {usable_cores()} CPUs shared by servers, workers and load generator; BUS_PARTITIONS={partitions}")
    rows: list[tuple[str, str, str, str, str]] = []
    backends = [("redis-server", False)] + ([("Redis Cluster, 3 masters", True)] if CLUSTER else [])
    try:
        for n, (backend, cluster) in enumerate(backends):
            with Stack("bench", quiet=True, env={"BUS_PARTITIONS": str(partitions)}) as stack:
                start(stack, cluster)
                if n == 0 and HTTP:
                    rows += http_rows(stack)
                rows += bus_rows(stack, backend)
    except Interrupted:
        print("bench interrupted; stack stopped")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bench reports, it does not fail the build
        print(f"bench could not finish: {exc}")

    header = ("what", "load", "throughput", "p50 / p99", "notes")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(5)]
    print()
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("\nbus latency = created_at -> finished_at of each job (drain: includes the time spent queued).")
    print("drain: the workers start after the jobs are enqueued; the rate counts from the first job taken.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
