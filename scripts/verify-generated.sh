#!/usr/bin/env bash
# Generates each preset into a temporary directory with `stackwise new --install` (the lockfiles
# must appear and be in the initial commit), then drives the generated project exactly as its
# README tells a user to: make install, make test, make lint, make typecheck, (make e2e for
# hybrid presets), then `make run` on a free PORT and a request to /healthz.
#
#   scripts/verify-generated.sh [--all | PRESET...]
#
# Needs: python3 (3.11+), node (20+), npm, make, curl, redis-server (presets that use Redis).
# STACKWISE_BIN overrides the binary (default: target/debug/stackwise, built if missing).
# KEEP=1 keeps the generated projects for inspection.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${STACKWISE_BIN:-$ROOT/target/debug/stackwise}
ALL=(ml-api data-pipeline realtime api-gateway ai-product ai-realtime)

if [ $# -eq 0 ] || [ "$1" = "--all" ]; then
  presets=("${ALL[@]}")
else
  presets=("$@")
fi
if [ ! -x "$BIN" ]; then
  (cd "$ROOT" && cargo build --quiet)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stackwise-verify.XXXXXX")
RUN_PGID=""
cleanup() {
  if [ -n "$RUN_PGID" ]; then kill -TERM -- "-$RUN_PGID" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept generated projects in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

passed=0
failed=0
summary=()

# step DIR LABEL CMD...: runs CMD in DIR, prints its duration, records a failure.
step() {
  local dir=$1 label=$2
  shift 2
  local start=$SECONDS
  echo "---- [$label] $*"
  if (cd "$dir" && "$@"); then
    echo "---- [$label] $* ok ($((SECONDS - start))s)"
    summary+=("$label: $* ok in $((SECONDS - start))s")
    return 0
  fi
  echo "---- [$label] $* FAILED ($((SECONDS - start))s)"
  summary+=("$label: $* FAILED")
  return 1
}

# check_run DIR LABEL: `make run` on a free port must answer /healthz, then stop on SIGTERM.
check_run() {
  local dir=$1 label=$2 port log
  port=$(free_port)
  log="$dir/.verify-run.log"
  echo "---- [$label] make run (PORT=$port)"
  (cd "$dir" && exec setsid env HOST=127.0.0.1 PORT="$port" make run >"$log" 2>&1) &
  local pid=$!
  RUN_PGID=$pid
  local ok=1
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then ok=0; break; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.5
  done
  if [ $ok -eq 0 ]; then
    echo "     /healthz: $(curl -fsS "http://127.0.0.1:$port/healthz")"
  else
    echo "     make run did not answer /healthz on port $port; its output:"
    sed 's/^/     | /' "$log" | tail -40
  fi
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  RUN_PGID=""
  if [ $ok -eq 0 ]; then
    summary+=("$label: make run answered /healthz")
  else
    summary+=("$label: make run FAILED")
  fi
  return $ok
}

for preset in "${presets[@]}"; do
  name="verify-$preset"
  dir="$WORK/$name"
  start=$SECONDS
  echo "==== $preset"
  ok=0
  gen_start=$SECONDS
  if "$BIN" new "$name" --preset "$preset" --yes --install -o "$WORK"; then
    summary+=("$preset: stackwise new --install ok in $((SECONDS - gen_start))s")
  else
    summary+=("$preset: stackwise new --install FAILED"); ok=1
  fi
  layout=""
  if [ $ok -eq 0 ]; then
    layout=$(sed -n 's/^layout = "\(.*\)"/\1/p' "$dir/.stackwise.toml")
    # Every lockfile the install steps wrote is in the initial commit.
    locks=$(cd "$dir" && git ls-files -- 'uv.lock' '*/uv.lock' 'package-lock.json' '*/package-lock.json')
    want=$(cd "$dir" && find . -maxdepth 2 \( -name pyproject.toml -o -name package.json \) -not -path './node_modules/*' | wc -l)
    have=$(printf '%s\n' "$locks" | grep -c . || true)
    if [ "$have" -ne "$want" ]; then
      echo "---- [$preset] expected $want committed lockfiles, found: ${locks:-none}"
      summary+=("$preset: lockfiles FAILED"); ok=1
    else
      summary+=("$preset: committed lockfiles: $(echo "$locks" | tr '\n' ' ')")
    fi
  fi
  if [ $ok -eq 0 ]; then
    for target in install test lint typecheck; do
      step "$dir" "$preset" make "$target" || { ok=1; break; }
    done
  fi
  if [ $ok -eq 0 ] && [ "$layout" = hybrid ]; then
    step "$dir" "$preset" make e2e || ok=1
  fi
  if [ $ok -eq 0 ]; then
    check_run "$dir" "$preset" || ok=1
  fi
  if [ $ok -eq 0 ]; then
    passed=$((passed + 1))
    echo "==== $preset passed ($((SECONDS - start))s)"
  else
    failed=$((failed + 1))
    echo "==== $preset FAILED ($((SECONDS - start))s)"
  fi
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$dir"; fi
done

echo
echo "Summary:"
printf '  %s\n' "${summary[@]}"
echo "generated presets: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
