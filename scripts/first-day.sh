#!/usr/bin/env bash
# The README's first day, followed as written on a clean clone: build and install stackwise with
# the README's own command, `stackwise new shop-ai`, `make install`, `make run`, and the README's
# `POST /v1/jobs` until it answers 202. Prints the seconds from the clone to that first 202, with
# the build from source and without it (the prebuilt path: a release archive stands in for the
# build, so only the download is missing from that figure).
#
#   scripts/first-day.sh            # needs cargo, uv or pip, Node 20.19+, redis-server, curl
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/stackwise-first-day-XXXXXX")
stack_pid=
cleanup() {
  if [ -n "$stack_pid" ]; then kill -INT -- "-$stack_pid" 2>/dev/null || true; wait "$stack_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
readme_has() { grep -qxF -- "$1" "$root/README.md" || { echo "README.md no longer says: $1" >&2; exit 1; }; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$1" "$(now)"; }

t0=$(now)
git clone --quiet "$root" "$work/stackwise"
cd "$work/stackwise"
readme_has 'cargo install --locked --path .             # from a clone of this repository'
# The README's command; CARGO_INSTALL_ROOT keeps it out of the user's ~/.cargo/bin.
CARGO_INSTALL_ROOT=$work/root CARGO_TARGET_DIR=$work/target cargo install --quiet --locked --path .
export PATH=$work/root/bin:$PATH
built=$(since "$t0")
echo "first-day: stackwise built and installed from source: ${built} s"

t1=$(now)
cd "$work"
readme_has 'stackwise new shop-ai                       # the default preset: ai-product (hybrid)'
stackwise new shop-ai
cd shop-ai
make install
# No key of our own, as a newcomer has none: the first `make run` writes .env with one (README).
unset API_KEYS ML_API_KEY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PORT
set -m
make run >"$work/run.log" 2>&1 &
stack_pid=$!
set +m
code=
for _ in $(seq 1 600); do
  API_KEYS=$(sed -n 's/^API_KEYS=//p' .env 2>/dev/null || true)
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $API_KEYS" -H 'content-type: application/json' \
    -H 'Idempotency-Key: order-42' -d '{"features": [6.7, 3.0, 5.2, 2.3]}' "http://127.0.0.1:$PORT/v1/jobs" || true)
  [ "$code" = 202 ] && break
  sleep 0.5
done
if [ "$code" != 202 ]; then
  echo "no 202 from POST /v1/jobs (last: $code); make run said:" >&2
  tail -30 "$work/run.log" >&2
  exit 1
fi
# The gateway answers before the workers have joined; the banner comes once everything is up.
for _ in $(seq 1 240); do grep -q "Stack is up" "$work/run.log" && break; sleep 0.5; done
grep -q "API_KEYS from .*/\.env" "$work/run.log" || {
  echo "make run did not say where its key is:" >&2
  tail -30 "$work/run.log" >&2
  exit 1
}
git check-ignore -q .env || { echo "the .env make run wrote is not git-ignored" >&2; exit 1; }
project=$(since "$t1")
echo "first-day: first 202 from the generated API: ${project} s after \`stackwise new\` (the prebuilt path)"
echo "first-day: clone to first 202 building from source: $(since "$t0") s"
