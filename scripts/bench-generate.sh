#!/usr/bin/env bash
# Benchmark: `stackwise new --no-git` versus a plain `cp -r` of the same generated tree, and
# `stackwise new` with its git repository (the render commit) versus `--no-git`.
#
#   scripts/bench-generate.sh [PRESET]      (default: ai-product, the largest tree)
#
# Environment:
#   TEMPLATE=DIR    render a local template directory (`--template DIR`) instead of the
#                   embedded one; with PRESET naming one of its presets (or `-` for its default)
#   BASELINE=BIN    another stackwise binary (say, the release build of the previous commit),
#                   measured in the same hyperfine run, for a side-by-side figure
#   RUNS=N          rounds per command (default 50, after 5 warm-up rounds)
#   INTERLEAVED=1   also time the commands round-robin (one run of each per round, a fresh
#                   directory each time) with Python's clock: a machine whose load drifts during
#                   the benchmark slows every command alike, where hyperfine runs all the rounds
#                   of one command before the next
#   CALLGRIND=1     also count the instructions of one run of each stackwise command with
#                   valgrind's callgrind: unlike wall-clock time, the count does not depend on
#                   what else the machine runs (but valgrind hides SHA instructions, so hashing
#                   counts several times its share)
#
# Needs hyperfine (apt-get install hyperfine). Prints every timing, min and median, CPU time
# (user + system) and the ratios. A benchmark, not a test: it never fails on a slow machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PRESET=${1:-ai-product}
RUNS=${RUNS:-50}
command -v hyperfine >/dev/null || { echo "hyperfine is not installed: apt-get install hyperfine (or cargo install hyperfine)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --quiet)
W=$(mktemp -d "${TMPDIR:-/tmp}/stackwise-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
# The binary is copied: a rebuild while the benchmark runs changes nothing.
cp "$ROOT/target/release/stackwise" "$W/stackwise"
BIN=$W/stackwise
ARGS=(bench --yes)
if [[ $PRESET != - ]]; then ARGS+=(--preset "$PRESET"); fi
if [[ -n ${TEMPLATE:-} ]]; then ARGS+=(--template "$(cd "$TEMPLATE" && pwd)"); fi

"$BIN" new "${ARGS[@]}" --no-git -o "$W/ref" >/dev/null 2>&1
files=$(find "$W/ref/bench" -type f | wc -l)
bytes=$(du -sb "$W/ref/bench" | cut -f1)
echo "template ${TEMPLATE:-builtin}, preset $PRESET: $files files, $bytes bytes; $RUNS rounds"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $("$BIN" --version), $(hyperfine --version), $(cp --version | head -1)"

cmds=(
  --command-name "new --no-git" --prepare "rm -rf $W/gen" "$BIN new ${ARGS[*]} --no-git -o $W/gen"
  --command-name "cp -r" --prepare "rm -rf $W/copy" "cp -r $W/ref/bench $W/copy"
  --command-name "new (git)" --prepare "rm -rf $W/git" "$BIN new ${ARGS[*]} -o $W/git"
)
if [[ -n ${BASELINE:-} ]]; then
  cp "$BASELINE" "$W/baseline"
  cmds+=(
    --command-name "baseline new --no-git" --prepare "rm -rf $W/bgen" "$W/baseline new ${ARGS[*]} --no-git -o $W/bgen"
    --command-name "baseline new (git)" --prepare "rm -rf $W/bgit" "$W/baseline new ${ARGS[*]} -o $W/bgit"
  )
fi
hyperfine -N --warmup 5 --runs "$RUNS" --style none --export-json "$W/result.json" "${cmds[@]}"

if [[ ${INTERLEAVED:-} == 1 ]]; then
  python3 - "$W" "$RUNS" "$BIN" "${BASELINE:+$W/baseline}" "${ARGS[@]}" <<'PY'
import resource, shutil, statistics, subprocess, sys, time
w, runs, binary, baseline, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
cmds = {
    "new --no-git": lambda d: [binary, "new", *args, "--no-git", "-o", d],
    "cp -r": lambda d: ["cp", "-r", f"{w}/ref/bench", d],
    "new (git)": lambda d: [binary, "new", *args, "-o", d],
}
if baseline:
    cmds["baseline new --no-git"] = lambda d: [baseline, "new", *args, "--no-git", "-o", d]
    cmds["baseline new (git)"] = lambda d: [baseline, "new", *args, "-o", d]
wall = {k: [] for k in cmds}
cpu = {k: [] for k in cmds}
for i in range(runs + 3):
    for name, cmd in cmds.items():
        d = f"{w}/il"
        shutil.rmtree(d, ignore_errors=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd(d), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        elapsed = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i >= 3:  # three warm-up rounds
            wall[name].append(elapsed)
            cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
print(f"interleaved, {runs} rounds:")
print(f"{'command':24} {'min ms':>8} {'median':>8} {'cpu ms':>8}")
for name in cmds:
    print(f"{name:24} {min(wall[name]) * 1000:8.2f} {statistics.median(wall[name]) * 1000:8.2f} {statistics.median(cpu[name]) * 1000:8.2f}")
def ratio(a, b, label):
    if a in wall and b in wall:
        print(f"{label:34} median {statistics.median(wall[a]) / statistics.median(wall[b]):5.2f}x   min {min(wall[a]) / min(wall[b]):5.2f}x")
ratio("new --no-git", "cp -r", "new --no-git / cp -r:")
ratio("new (git)", "new --no-git", "new (git) / new --no-git:")
ratio("baseline new --no-git", "cp -r", "baseline new --no-git / cp -r:")
ratio("baseline new (git)", "baseline new --no-git", "baseline (git) / baseline --no-git:")
PY
fi

if [[ ${CALLGRIND:-} == 1 ]] && command -v valgrind >/dev/null; then
  count() { # instructions of one run of: stackwise-binary args...
    rm -rf "$W/cg" && valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$@" >/dev/null 2>&1
    awk '/^summary:/ {print $2}' "$W/cg.out"
  }
  {
    echo "callgrind new --no-git $(count "$BIN" new "${ARGS[@]}" --no-git -o "$W/cg")"
    echo "callgrind new (git) $(count "$BIN" new "${ARGS[@]}" -o "$W/cg")"
    if [[ -n ${BASELINE:-} ]]; then
      echo "callgrind baseline new --no-git $(count "$W/baseline" new "${ARGS[@]}" --no-git -o "$W/cg")"
      echo "callgrind baseline new (git) $(count "$W/baseline" new "${ARGS[@]}" -o "$W/cg")"
    fi
  } >"$W/callgrind.txt"
fi
touch "$W/callgrind.txt"

python3 - "$W/result.json" "$W/callgrind.txt" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
cg = {}
for line in open(sys.argv[2]):
    name, n = line.rsplit(" ", 1)
    cg[name.removeprefix("callgrind ")] = int(n)
ms = lambda s: f"{s * 1000:8.2f}"
print(f"{'command':24} {'min ms':>8} {'median':>8} {'mean':>8} {'cpu ms':>8} {'instructions':>14}")
for name, x in r.items():
    cpu = x["user"] + x["system"]
    ins = f"{cg[name]:,}" if name in cg else ""
    print(f"{name:24} {ms(x['min'])} {ms(x['median'])} {ms(x['mean'])} {ms(cpu)} {ins:>14}")
def ratio(a, b, label):
    if a in r and b in r:
        x, y = r[a], r[b]
        print(f"{label:34} median {x['median'] / y['median']:5.2f}x   min {x['min'] / y['min']:5.2f}x"
              f"   cpu {(x['user'] + x['system']) / (y['user'] + y['system']):5.2f}x")
ratio("new --no-git", "cp -r", "new --no-git / cp -r:")
ratio("new (git)", "new --no-git", "new (git) / new --no-git:")
ratio("baseline new --no-git", "cp -r", "baseline new --no-git / cp -r:")
ratio("baseline new (git)", "baseline new --no-git", "baseline (git) / baseline --no-git:")
PY
