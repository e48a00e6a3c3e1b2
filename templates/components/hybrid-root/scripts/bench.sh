#!/usr/bin/env bash
# Loopback benchmark of the local stack (see scripts/bench.py): gateway /healthz throughput,
# /v1/predict through the gateway versus straight to the ML service, and jobs per second through
# the bus with one and two workers. Bounded (about a minute); never fails on slowness.
# Knobs: BENCH_SECONDS (5), BENCH_CONNECTIONS (50), BENCH_JOBS (2000).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ML_PYTHON=${ML_PYTHON:-$ROOT/ml-service/.venv/bin/python}
[[ -x "$ML_PYTHON" ]] || { echo "bench: run 'make install' first (no ml-service/.venv)" >&2; exit 1; }
[[ -f "$ROOT/gateway/dist/server.js" ]] || { echo "bench: build the gateway first: make -C gateway build" >&2; exit 1; }
exec "$ML_PYTHON" "$ROOT/scripts/bench.py"
