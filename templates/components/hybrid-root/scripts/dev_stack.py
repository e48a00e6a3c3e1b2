"""`make run`: the whole stack on this machine without Docker, supervised like compose does it.

Starts redis-server (its own, on a free loopback port, unless REDIS_URL is set), the ML service,
WORKERS stream workers and the gateway on HOST:PORT, then keeps them running: a process that
exits is restarted with backoff (1 s, doubling up to 30 s) and the restart is logged. Ctrl-C or
SIGTERM stops every process it started, gateway first and Redis last; repeated signals (make and
a terminal send several at once) do not interrupt that shutdown.

Environment: HOST (127.0.0.1), PORT (8080), ML_PORT (8000, or a free port when taken),
WORKERS (2), GATEWAY_PROCESSES (the number of cores: the gateway's HTTP_PROCESSES, node:cluster),
REDIS_URL, API_KEYS, ML_API_KEY, BUS_PARTITIONS, LOG_LEVEL (info).
"""

from __future__ import annotations

import os
import secrets
import socket
import sys

from stacklib import ROOT, SIGNALS, Interrupted, Stack, StackError, port_is_free


def whole_number(name: str, default: str) -> int:
    value = os.environ.get(name) or default
    if not value.isdigit():
        raise StackError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def main() -> int:
    SIGNALS.install()
    try:
        host = os.environ.get("HOST") or "127.0.0.1"
        port = whole_number("PORT", "8080")
        workers = whole_number("WORKERS", "2")
        # The gateway keeps no state of its own: one process per core serves the API.
        gateway_processes = whole_number("GATEWAY_PROCESSES", str(os.cpu_count() or 1))
        if not port_is_free(host, port):
            raise StackError(f"port {port} on {host} is taken: set PORT to another port")
        ml_port = int(os.environ.get("ML_PORT") or (8000 if port_is_free("127.0.0.1", 8000) else 0))
    except StackError as exc:
        print(f"dev-stack: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("STACK_LOG_LEVEL", os.environ.get("LOG_LEVEL") or "info")

    stack = Stack("run", console=True, run_dir=ROOT / ".run")
    # Keys: from the environment, or throw-away ones for this session.
    stack.api_key = os.environ.get("API_KEYS") or "dev-" + secrets.token_hex(16)
    stack.ml_api_key = os.environ.get("ML_API_KEY") or "dev-" + secrets.token_hex(16)
    try:
        if redis_url := os.environ.get("REDIS_URL"):
            stack.redis_url = redis_url
        else:
            stack.start_redis()
        # Started together, then awaited: the ML service, workers and gateway load in parallel.
        stack.start_ml(ml_port or None, wait=False)
        names = [f"worker-{n}" for n in range(1, workers + 1)]
        for n, name in enumerate(names, 1):
            stack.start_worker(name, WORKER_NAME=f"{socket.gethostname()}-dev-{n}-{os.getpid()}")
        stack.start_gateway(host, port, wait=False, env={"HTTP_PROCESSES": str(max(1, gateway_processes))})
        stack.wait_http("ml-service", f"{stack.ml_url}/readyz")
        stack.wait_http("gateway", f"{stack.gateway_url}/readyz")
        stack.wait_workers(names)
        print(banner(stack, workers), flush=True)
        stack.supervise()
    except Interrupted as exc:
        stack.log(f"{exc.args[0]}: stopping {len(stack.services)} processes")
        return 130 if exc.args[0] == "SIGINT" else 143
    except StackError as exc:
        print(f"dev-stack: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.close()
        stack.log("stopped")
    return 0


def banner(stack: Stack, workers: int) -> str:
    key = stack.api_key.split(",")[0]
    gw = stack.gateway_url
    metrics = "\n              ".join(f"{url}  ({name})" for name, url in stack.metrics.items())
    return f"""
  Stack is up ({workers} workers, supervised: a process that exits is restarted).  Ctrl-C stops it.

  gateway     {gw}        (X-API-Key: {key})
  ml-service  {stack.ml_url}        (internal; X-API-Key: {stack.ml_api_key})
  redis       {stack.redis_url}
  metrics     {metrics}

  curl -s -H 'X-API-Key: {key}' -H 'content-type: application/json' \\
       -d '{{"features": [5.1, 3.5, 1.4, 0.2]}}' {gw}/v1/predict
  curl -s -H 'X-API-Key: {key}' -H 'content-type: application/json' \\
       -d '{{"features": [6.7, 3.0, 5.2, 2.3]}}' {gw}/v1/jobs
  curl -sN -H 'X-API-Key: {key}' {gw}/v1/jobs/<id>/events
"""


if __name__ == "__main__":
    sys.exit(main())
