#!/usr/bin/env bash
# `make run`: the whole stack on this machine without Docker, under supervisord (scripts/dev_stack.py
# writes its config: redis-server unless REDIS_URL is set, the ML service, WORKERS workers and the
# gateway on PORT, restarted when one exits; Ctrl-C or SIGTERM stops them all).
# Environment: HOST, PORT, ML_PORT, WORKERS, REDIS_URL, API_KEYS, ML_API_KEY, BUS_PARTITIONS, LOG_LEVEL.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ML_PYTHON=${ML_PYTHON:-$ROOT/ml-service/.venv/bin/python}

die() { echo "dev-stack: $*" >&2; exit 1; }

[[ -x "$ML_PYTHON" ]] || die "no Python environment at ml-service/.venv: run 'make install' first"
[[ -x "$(dirname "$ML_PYTHON")/supervisord" ]] || die "supervisord is not in ml-service/.venv: run 'make install'"
[[ -f "$ROOT/gateway/dist/server.js" ]] || die "gateway is not built: run 'make -C gateway build' (make run does it)"
command -v node >/dev/null || die "node is not on PATH"
if [[ -z "${REDIS_URL:-}" ]]; then
  command -v redis-server >/dev/null ||
    die "redis-server is not installed (apt install redis-server, brew install redis) or set REDIS_URL"
fi

# exec: dev_stack.py receives make's and the terminal's signals, nothing in between.
exec "$ML_PYTHON" "$ROOT/scripts/dev_stack.py"
