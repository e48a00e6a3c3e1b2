#!/usr/bin/env bash
# The GitHub Actions workflows of every preset's generated project, checked offline with zizmor
# as the hybrid project's own CI checks them (a finding fails that CI: a red CI on a user's first
# push). actionlint is not here: its PyPI package downloads the binary from GitHub at build time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${STACKWISE:-target/debug/stackwise}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
uvx() { if command -v uvx >/dev/null; then command uvx "$@"; else python3 -m uv tool run "$@"; fi; }
status=0
for preset in $("$bin" presets | awk 'NF >= 3 && $1 !~ /^stackwise$/ {print $1}'); do
  "$bin" new "w-$preset" --preset "$preset" --yes --no-git -o "$out" >/dev/null 2>&1
  dir="$out/w-$preset"
  echo "-- $preset"
  if ! (cd "$dir" && uvx zizmor==1.32.0 --offline --quiet .github/workflows); then status=1; fi
done
exit "$status"
