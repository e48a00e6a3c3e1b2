"""Loopback benchmark of the local stack. Bounded in time; prints a table; never fails on slowness.

HTTP (autocannon, or wrk for GET when autocannon cannot run):
  * gateway GET /healthz throughput;
  * POST /v1/predict through the gateway versus straight to the ML service: throughput at
    BENCH_CONNECTIONS (autocannon), and latency on one keep-alive connection, one request at a
    time, measured here with sub-millisecond resolution (the gateway's added latency is the
    difference of the medians).
Bus (redis-py): N jobs enqueued in one pipeline while 1, then 2 workers are running; jobs per
second until all are done and end-to-end job latency (created_at -> finished_at) percentiles.

Knobs: BENCH_SECONDS (5 per HTTP run), BENCH_CONNECTIONS (50), BENCH_JOBS (2000).
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
import uuid
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis  # the ML service's own dependency
from stacklib import GATEWAY_DIR, Interrupted, Stack, http, raise_on_signals

SECONDS = max(1, min(int(os.environ.get("BENCH_SECONDS", "5")), 30))
CONNECTIONS = max(1, min(int(os.environ.get("BENCH_CONNECTIONS", "50")), 200))
JOBS = max(10, min(int(os.environ.get("BENCH_JOBS", "2000")), 50_000))
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bus_round(stack: Stack, r: redis.Redis, workers: int) -> dict[str, float]:
    names = [f"bench-{workers}w-{i}" for i in range(1, workers + 1)]
    for name in names:
        stack.start_worker(name)
    stack.wait_workers(r, names)

    ids = [str(uuid.uuid4()) for _ in range(JOBS)]
    payload = json.dumps(BODY)
    t0 = time.time()
    pipe = r.pipeline(transaction=False)
    for i, job_id in enumerate(ids, 1):
        now = str(int(time.time() * 1000))
        pipe.hset(f"job:{job_id}", mapping={"status": "queued", "created_at": now, "request_id": "bench"})
        pipe.expire(f"job:{job_id}", 3600)
        pipe.xadd(
            "jobs:predict",
            {
                "v": "1",
                "job_id": job_id,
                "type": "predict",
                "payload": payload,
                "created_at": now,
                "request_id": "bench",
            },
            maxlen=100_000,
            approximate=True,
        )
        if i % 500 == 0:
            pipe.execute()
    pipe.execute()
    enqueued = time.time() - t0

    deadline = time.monotonic() + 120
    while True:  # drained: every entry read by the group and acknowledged
        group = next(g for g in r.xinfo_groups("jobs:predict") if g["name"] == "ml-workers")
        if group["lag"] == 0 and group["pending"] == 0:
            break
        stack.check_alive(*names)
        if time.monotonic() > deadline:
            print(f"  bus: not drained after 120 s (lag {group['lag']}, pending {group['pending']})")
            break
        time.sleep(0.02)

    pipe = r.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"job:{job_id}", "created_at", "finished_at", "status")
    rows = [row for row in pipe.execute() if row[2] == "done"]
    for name in names:
        stack.stop(name)
    latencies = [float(int(f) - int(c)) for c, f, _ in rows]
    if not latencies:
        return {"jobs_s": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0, "enqueue_s": enqueued, "done": 0}
    span = (max(int(f) for _, f, _ in rows) - t0 * 1000) / 1000
    return {
        "jobs_s": len(rows) / span,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "enqueue_s": enqueued,
        "done": len(rows),
    }


def main() -> int:
    raise_on_signals()
    os.environ.setdefault("STACK_LOG_LEVEL", "error")
    print(f"bench: loopback only; {SECONDS}s per HTTP run, {CONNECTIONS} connections, {JOBS} bus jobs")
    print(f"       {os.cpu_count()} CPUs shared by servers, workers and load generator")
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        with Stack("bench", quiet=True) as stack:
            stack.start_redis()
            stack.start_ml()
            stack.start_gateway()
            gw, ml = stack.gateway_url, stack.ml_url
            assert http("POST", f"{gw}/v1/predict", BODY, {"x-api-key": stack.api_key}).status == 200
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

            r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
            for workers in (1, 2):
                print(f"  running bus with {workers} worker(s), {JOBS} jobs ...", flush=True)
                res = bus_round(stack, r, workers)
                rows.append(
                    (
                        f"bus {JOBS} jobs, {workers} worker(s)",
                        "pipelined",
                        f"{res['jobs_s']:,.0f} jobs/s",
                        f"{res['p50']:.0f} / {res['p99']:.0f} ms",
                        f"max {res['max']:.0f} ms, {res['done']:.0f} done",
                    )
                )
    except (KeyboardInterrupt, Interrupted):
        print("bench interrupted; stack stopped")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bench reports, it does not fail the build
        print(f"bench could not finish: {exc}")

    header = ("what", "load", "throughput", "p50 / p99", "notes")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(5)]
    print()
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("\nbus latency = created_at -> finished_at per job while all N wait in the stream.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
