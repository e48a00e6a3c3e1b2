#!/usr/bin/env bash
# Benchmark: `stackwise new --no-git` versus a plain `cp -r` of the same generated tree, and
# `stackwise new` with its git repository (the render commit) versus `--no-git`.
#
#   scripts/bench-generate.sh [PRESET]      (default: ai-product, the largest tree)
#
# Needs hyperfine (apt-get install hyperfine). Prints both timings and their ratio.
# A benchmark, not a test: it never fails on a slow machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PRESET=${1:-ai-product}
command -v hyperfine >/dev/null || { echo "hyperfine is not installed: apt-get install hyperfine (or cargo install hyperfine)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --quiet)
BIN=$ROOT/target/release/stackwise
W=$(mktemp -d "${TMPDIR:-/tmp}/stackwise-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT

"$BIN" new bench --preset "$PRESET" --yes --no-git -o "$W/ref" 2>/dev/null
files=$(find "$W/ref/bench" -type f | wc -l)
bytes=$(du -sb "$W/ref/bench" | cut -f1)
echo "preset $PRESET: $files files, $bytes bytes"

hyperfine --warmup 5 --runs 50 --style basic --export-json "$W/result.json" \
  --command-name "stackwise new" --prepare "rm -rf $W/gen" "$BIN new bench --preset $PRESET --yes --no-git -o $W/gen" \
  --command-name "cp -r" --prepare "rm -rf $W/copy" "cp -r $W/ref/bench $W/copy" \
  --command-name "stackwise new (git)" --prepare "rm -rf $W/git" "$BIN new bench --preset $PRESET --yes -o $W/git"

python3 - "$W/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
new, cp, git = r["stackwise new"], r["cp -r"], r["stackwise new (git)"]
print(f"stackwise new --no-git: mean {new['mean']*1000:.2f} ms (median {new['median']*1000:.2f} ms)")
print(f"cp -r:                  mean {cp['mean']*1000:.2f} ms (median {cp['median']*1000:.2f} ms)")
print(f"stackwise new (git):    mean {git['mean']*1000:.2f} ms (median {git['median']*1000:.2f} ms)")
print(f"--no-git / cp -r (median): {new['median']/cp['median']:.2f}x")
print(f"git / --no-git (median):   {git['median']/new['median']:.2f}x")
PY
