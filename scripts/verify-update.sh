#!/usr/bin/env bash
# `stackwise update` end to end on the built-in template: generate a python preset with --install,
# commit a user's work (a module with its test, a README line), update to a locally changed copy
# of templates/ (a README line near the top, a new Makefile target, a new test), and check that
# both the user's work and the template's change are there, the merge is committed, the lockfile
# is untouched — and the project still passes make test, make lint and make typecheck.
#
#   scripts/verify-update.sh [PRESET]      (default: ml-api; a python-layout preset)
#
# Needs: python3 (3.11+), uv, make, git. STACKWISE_BIN overrides the binary (default:
# target/debug/stackwise, built if missing). KEEP=1 keeps the work directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${STACKWISE_BIN:-$ROOT/target/debug/stackwise}
PRESET=${1:-ml-api}
if [ ! -x "$BIN" ]; then
  (cd "$ROOT" && cargo build --quiet)
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/stackwise-update.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
  echo "work directory: $W"
else
  trap 'rm -rf "$W"' EXIT
fi
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
export GIT_AUTHOR_NAME=tester GIT_AUTHOR_EMAIL=tester@example.com
export GIT_COMMITTER_NAME=tester GIT_COMMITTER_EMAIL=tester@example.com

echo "==> stackwise new shop --preset $PRESET --install"
"$BIN" new shop --preset "$PRESET" --yes --install -o "$W" 2>"$W/new.log" || { cat "$W/new.log"; fail "new"; }
P=$W/shop
[ -f "$P/uv.lock" ] || fail "no uv.lock after --install"
lock_before=$(sha256sum "$P/uv.lock")
[ "$(git -C "$P" log -1 --format=%s)" = "stackwise: lockfiles from install" ] || fail "the lockfiles are not in their own commit"
git -C "$P" log -1 --format=%B HEAD^ | grep -q '^Stackwise-Render: ' || fail "the first commit is not a render commit"
! git -C "$P" cat-file -e HEAD^:uv.lock 2>/dev/null || fail "the render commit holds uv.lock"

echo "==> the user's work"
cat >"$P/src/shop/pricing.py" <<'PY'
"""Prices, the user's own module."""


def with_tax(amount: float, rate: float = 0.2) -> float:
    """Returns the amount with tax."""
    return round(amount * (1 + rate), 2)
PY
cat >"$P/tests/test_pricing.py" <<'PY'
from shop.pricing import with_tax


def test_with_tax() -> None:
    assert with_tax(10.0) == 12.0
PY
printf '\nOur team owns this service.\n' >>"$P/README.md"
git -C "$P" add -A
git -C "$P" commit -q -m "pricing"
user_commit=$(git -C "$P" rev-parse HEAD)

echo "==> a changed copy of the template"
mkdir -p "$W/tpl"
cp -r "$ROOT/templates" "$ROOT/presets" "$W/tpl/"
C=$W/tpl/templates/components/python-service
# shellcheck disable=SC2016 # backquotes are Markdown here
sed -i '2a\
Maintained from the stackwise template; `stackwise update` brings its changes.' "$C/README.md.tera"
printf '\ntemplate-version: ## print the template this project follows\n\t@grep -E "^(template|template_version|revision) =" .stackwise.toml\n' >>"$C/Makefile.tera"
cat >"$C/tests/test_template_update.py" <<'PY'
"""Added by a newer template: arrives with `stackwise update`."""

from pathlib import Path


def test_the_record_names_the_template() -> None:
    record = Path(__file__).resolve().parent.parent / ".stackwise.toml"
    assert 'revision = "sha256:' in record.read_text(encoding="utf-8")
PY

echo "==> stackwise update --template (changed copy)"
set +e
"$BIN" update "$P" --template "$W/tpl/templates" --yes --json >"$W/update.json" 2>"$W/update.log"
rc=$?
set -e
cat "$W/update.log"
[ "$rc" = 0 ] || fail "update exited with $rc"
python3 - "$W/update.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
files = {f["path"]: f["status"] for f in doc["files"]}
assert doc["status"] == "clean", doc
assert files.get("README.md") == "merged", files
assert files.get("Makefile") == "updated", files
assert files.get("tests/test_template_update.py") == "added", files
assert "commit" in doc, doc
PY
grep -q "Our team owns this service." "$P/README.md" || fail "the user's README line is gone"
grep -q "Maintained from the stackwise template" "$P/README.md" || fail "the template's README line did not arrive"
for f in src/shop/pricing.py tests/test_pricing.py; do
  [ -f "$P/$f" ] || fail "the user's $f is gone"
done
[ "$(sha256sum "$P/uv.lock")" = "$lock_before" ] || fail "uv.lock changed"
[ -z "$(git -C "$P" status --porcelain)" ] || fail "the work tree is not clean after the update"
[ "$(git -C "$P" rev-parse HEAD^1)" = "$user_commit" ] || fail "the merge's first parent is not the user's commit"
git -C "$P" log -1 --format=%B | grep -q '^Stackwise-Update: ' || fail "no Stackwise-Update trailer"
git -C "$P" log -1 --format=%B HEAD^2 | grep -q '^Stackwise-Render: ' || fail "the second parent is not a render commit"

echo "==> a second update is a no-op"
"$BIN" update "$P" --template "$W/tpl/templates" --check 2>/dev/null || fail "--check says behind after the update"

echo "==> make test lint typecheck"
(cd "$P" && make test && make lint && make typecheck) >"$W/make.log" 2>&1 || { tail -40 "$W/make.log"; fail "make"; }
grep -q "test_pricing.py \." "$W/make.log" || fail "the user's test did not run"
grep -q "test_template_update.py \." "$W/make.log" || fail "the template's new test did not run"
echo "update end to end: ok ($PRESET)"
