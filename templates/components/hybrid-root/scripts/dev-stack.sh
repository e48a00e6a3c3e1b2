#!/usr/bin/env bash
# Run the whole stack on this machine without Docker:
#   redis-server (its own, on a free loopback port, unless REDIS_URL is set),
#   the ML service, WORKERS stream workers and the gateway on PORT.
# Ctrl-C or SIGTERM stops every process this script started.
#
# Environment: HOST (127.0.0.1), PORT (8080), ML_PORT (8000, or a free port when taken),
# WORKERS (2), REDIS_URL, API_KEYS, ML_API_KEY, LOG_LEVEL (info).
# Run `make install` first; `make run` builds the gateway and calls this script.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8080}
WORKERS=${WORKERS:-2}
LOG_LEVEL=${LOG_LEVEL:-info}
ML_PYTHON=${ML_PYTHON:-$ROOT/ml-service/.venv/bin/python}
RUN_DIR="$ROOT/.run"

die() { echo "dev-stack: $*" >&2; exit 1; }

[[ -x "$ML_PYTHON" ]] || die "no Python environment at ml-service/.venv: run 'make install' first"
[[ -f gateway/dist/server.js ]] || die "gateway is not built: run 'make -C gateway build' (make run does it)"
command -v node >/dev/null || die "node is not on PATH"
[[ "$WORKERS" =~ ^[0-9]+$ ]] || die "WORKERS must be a whole number, got '$WORKERS'"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a port number, got '$PORT'"

# The ML service's import package (`python -m PACKAGE` serves, `python -m PACKAGE.worker` works).
if [[ -z "${ML_PACKAGE:-}" ]]; then
  for init in ml-service/src/*/__init__.py; do
    [[ -f "$init" ]] && ML_PACKAGE=$(basename "$(dirname "$init")")
  done
fi
[[ -n "${ML_PACKAGE:-}" ]] || die "no package under ml-service/src: set ML_PACKAGE"

# Ask the kernel for a free loopback port, or check that a given one is free.
free_port() {
  "$ML_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_is_free() { # SO_REUSEADDR like the servers themselves, so TIME_WAIT leftovers do not count
  "$ML_PYTHON" -c 'import socket as so, sys; s = so.socket(); s.setsockopt(so.SOL_SOCKET, so.SO_REUSEADDR, 1); s.bind((sys.argv[1], int(sys.argv[2])))' \
    "$1" "$2" 2>/dev/null
}

port_is_free "$HOST" "$PORT" || die "port $PORT on $HOST is taken: set PORT to another port"
if [[ -z "${ML_PORT:-}" ]]; then
  if port_is_free 127.0.0.1 8000; then ML_PORT=8000; else ML_PORT=$(free_port); fi
fi

# Keys: take them from the environment, or make up throw-away ones for this run.
random_key() { "$ML_PYTHON" -c 'import secrets; print("dev-" + secrets.token_hex(16))'; }
API_KEYS=${API_KEYS:-$(random_key)}
ML_API_KEY=${ML_API_KEY:-$(random_key)}

mkdir -p "$RUN_DIR"
# Every child runs in its own process group (job control on), so stopping a group also stops
# whatever that child started, and Ctrl-C reaches only this script, which shuts down in order.
set -m
names=()
pids=()

start() { # name, working directory, command...
  local name=$1 dir=$2
  shift 2
  (cd "$dir" && exec "$@") </dev/null &
  names+=("$name")
  pids+=("$!")
}

stop_all() {
  trap - EXIT INT TERM
  set +e +m # +m: no job-control notices while the children stop
  local i pid deadline
  if ((${#pids[@]} > 0)); then
    echo "dev-stack: stopping ${#pids[@]} processes"
    # Reverse start order: the gateway first, redis last.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
      kill -TERM -- "-${pids[i]}" 2>/dev/null
    done
    deadline=$((SECONDS + 15))
    for pid in "${pids[@]}"; do
      while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    done
  fi
  echo "dev-stack: stopped"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_until() { # description, timeout in seconds, command...
  local what=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    check_children
    ((SECONDS < deadline)) || die "$what did not become ready within ${timeout}s"
    sleep 0.2
  done
}

check_children() {
  local i
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      die "${names[i]} (pid ${pids[i]}) exited; see the output above"
    fi
  done
}

http_ok() { node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$1"; }

if [[ -z "${REDIS_URL:-}" ]]; then
  command -v redis-server >/dev/null || die "redis-server is not installed (apt install redis-server, brew install redis) or set REDIS_URL"
  redis_port=$(free_port)
  start redis "$RUN_DIR" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$RUN_DIR" --loglevel warning --logfile "$RUN_DIR/redis.log"
  REDIS_URL="redis://127.0.0.1:$redis_port/0"
  wait_until "redis-server" 10 "$ML_PYTHON" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$redis_port"
fi
export REDIS_URL LOG_LEVEL

ML_URL="http://127.0.0.1:$ML_PORT"
start ml-service ml-service env HOST=127.0.0.1 PORT="$ML_PORT" API_KEYS="$ML_API_KEY" \
  "$ML_PYTHON" -m "$ML_PACKAGE"
wait_until "ml-service" 60 http_ok "$ML_URL/readyz"

worker_names=()
for ((n = 1; n <= WORKERS; n++)); do
  worker_names+=("$(hostname)-dev-$n-$$")
  start "worker-$n" ml-service env WORKER_NAME="${worker_names[n - 1]}" "$ML_PYTHON" -m "$ML_PACKAGE.worker"
done

start gateway gateway env HOST="$HOST" PORT="$PORT" ML_URL="$ML_URL" ML_API_KEY="$ML_API_KEY" \
  API_KEYS="$API_KEYS" NODE_ENV=production node dist/server.js
GATEWAY_URL="http://$HOST:$PORT"
wait_until "gateway" 30 http_ok "$GATEWAY_URL/readyz"

# A worker is ready once it has joined the consumer group (its first XREADGROUP).
workers_joined() {
  "$ML_PYTHON" - "$REDIS_URL" "$@" <<'PY'
import sys, redis
joined = {c["name"] for c in redis.Redis.from_url(sys.argv[1], decode_responses=True).xinfo_consumers("jobs:predict", "ml-workers")}
sys.exit(0 if joined.issuperset(sys.argv[2:]) else 1)
PY
}
if ((WORKERS > 0)); then
  wait_until "workers" 60 workers_joined "${worker_names[@]}"
fi

cat <<EOF

  Stack is up ($WORKERS workers).  Ctrl-C stops it.

  gateway     $GATEWAY_URL        (X-API-Key: ${API_KEYS%%,*})
  ml-service  $ML_URL        (internal; X-API-Key: $ML_API_KEY)
  redis       $REDIS_URL

  curl -s -H 'X-API-Key: ${API_KEYS%%,*}' -H 'content-type: application/json' \\
       -d '{"features": [5.1, 3.5, 1.4, 0.2]}' $GATEWAY_URL/v1/predict
  curl -s -H 'X-API-Key: ${API_KEYS%%,*}' -H 'content-type: application/json' \\
       -d '{"features": [6.7, 3.0, 5.2, 2.3]}' $GATEWAY_URL/v1/jobs
  curl -sN -H 'X-API-Key: ${API_KEYS%%,*}' $GATEWAY_URL/v1/jobs/<id>/events

EOF

# Stay in the foreground; if any process dies, stop the rest and fail.
while true; do
  sleep 1 &
  wait $! || true
  check_children
done
