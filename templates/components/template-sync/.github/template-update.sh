#!/usr/bin/env bash
# Proposes the template's changes as a pull request, the way Renovate does for copier templates:
# when `stackwise update --check` says this project is behind its template, the update runs on
# the branch stackwise/template-update (from the current branch), the branch is pushed and a pull
# request opened or refreshed — a draft, with the conflict markers committed, when the update
# conflicts. Run by .github/workflows/template-update.yml; runs anywhere with git and gh:
#
#   .github/template-update.sh
#
# Environment (all optional):
#   STACKWISE                the stackwise binary (default: `stackwise` on PATH, else installed
#                            with `cargo install --locked` from the source .stackwise.toml records)
#   GH                       the GitHub CLI (default: gh)
#   TEMPLATE_UPDATE_BRANCH   the update branch (default: stackwise/template-update)
#   TEMPLATE_UPDATE_BASE     the branch the pull request targets (default: the current branch)
#   TEMPLATE_UPDATE_REMOTE   the remote to push to (default: origin)
#   TEMPLATE_UPDATE_INSTALL  1: re-lock and install what the update changes (update --install)
#
# Exit status: 0 up to date or proposed (conflicts included: they are the draft's to resolve),
# anything else when stackwise, git or gh failed.
set -euo pipefail

BRANCH=${TEMPLATE_UPDATE_BRANCH:-stackwise/template-update}
REMOTE=${TEMPLATE_UPDATE_REMOTE:-origin}
GH=${GH:-gh}
TRAILER=Stackwise-Update

die() {
  echo "template-update: $*" >&2
  exit 1
}

cd "$(git rev-parse --show-toplevel)"
[ -f .stackwise.toml ] || die "no .stackwise.toml here: this project does not follow a stackwise template"
base=${TEMPLATE_UPDATE_BASE:-$(git symbolic-ref --quiet --short HEAD || true)}
[ -n "$base" ] || die "HEAD is detached: check out the branch the pull request should target, or set TEMPLATE_UPDATE_BASE"

# A string value of .stackwise.toml (`key = "value"` at the top level).
record() {
  sed -n "s/^$1 = \"\(.*\)\"\$/\1/p" .stackwise.toml | head -n 1
}

# stackwise itself: on PATH, or built from the source the record names. The built-in template
# ships inside stackwise, so following it means the newest stackwise release.
if [ -n "${STACKWISE:-}" ]; then
  :
elif command -v stackwise >/dev/null 2>&1; then
  STACKWISE=stackwise
else
  template=$(record template)
  case $template in
    builtin)
      cargo install --locked stackwise ;;
    https://* | http://* | ssh://* | git://* | git@* | file://*)
      # A fork of stackwise holds its template and the tool; a template repository alone does not.
      cargo install --locked --git "${template%%#*}" stackwise || cargo install --locked stackwise ;;
    *)
      die "the template is a local directory ($template), which this machine cannot reach: record a git URL once with \`stackwise update --template URL\`" ;;
  esac
  STACKWISE=stackwise
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
"$STACKWISE" update --check --yes >"$work/check.log" 2>&1 || status=$?
case $status in
  0)
    echo "template-update: up to date with the template"
    exit 0 ;;
  3) ;;
  *)
    cat "$work/check.log" >&2
    die "stackwise update --check failed (exit $status)" ;;
esac

git switch --quiet -C "$BRANCH"
back() {
  git switch --quiet "$base"
}
install=()
if [ "${TEMPLATE_UPDATE_INSTALL:-0}" = 1 ]; then
  install=(--install)
fi
status=0
"$STACKWISE" update --yes "${install[@]}" 2>"$work/update.log" || status=$?
cat "$work/update.log" >&2
draft=()
conflicts=""
case $status in
  0) ;;
  3)
    # The draft carries the conflict markers; whoever resolves them pushes to the branch.
    conflicts=$(git diff --name-only --diff-filter=U)
    while IFS= read -r f; do
      [ -n "$f" ] && git add -- "$f"
    done <<<"$conflicts"
    git commit --quiet --no-edit
    draft=(--draft) ;;
  *)
    git merge --abort 2>/dev/null || true
    back
    die "stackwise update failed (exit $status)" ;;
esac
title=$(git log -1 --format=%s)

# Never push over someone's work: a branch whose tip is not an update of this script is left alone.
if git fetch --quiet "$REMOTE" "refs/heads/$BRANCH" 2>/dev/null; then
  remote_tip=$(git rev-parse FETCH_HEAD)
  if ! git log -1 --format=%B "$remote_tip" | grep -q "^$TRAILER: "; then
    back
    echo "template-update: $REMOTE/$BRANCH has commits of its own (its tip is not an update); leaving it alone" >&2
    exit 0
  fi
  if [ "$(git rev-parse "$remote_tip^{tree}")" = "$(git rev-parse "HEAD^{tree}")" ]; then
    back
    echo "template-update: $REMOTE/$BRANCH already proposes this update"
    exit 0
  fi
fi
git push --quiet --force "$REMOTE" "$BRANCH"

{
  echo "The project's template moved on; \`stackwise update\` merged its changes."
  echo
  if [ -n "$conflicts" ]; then
    echo "**Conflicts**: your changes and the template's overlap in the files below. They hold the"
    echo "usual markers (<<<<<<< your project / >>>>>>> template); resolve them on this branch,"
    echo "push, and mark the pull request ready."
    echo
    while IFS= read -r f; do
      [ -n "$f" ] && echo "- \`$f\`"
    done <<<"$conflicts"
    echo
  fi
  echo '```'
  cat "$work/update.log"
  echo '```'
  echo
  echo "Opened by .github/template-update.sh (workflow template-update)."
} >"$work/body.md"

number=$("$GH" pr list --head "$BRANCH" --base "$base" --state open --json number --jq '.[0].number // empty')
if [ -n "$number" ]; then
  "$GH" pr edit "$number" --title "$title" --body-file "$work/body.md"
  if [ ${#draft[@]} -gt 0 ]; then
    "$GH" pr ready "$number" --undo
  fi
  echo "template-update: refreshed pull request #$number"
else
  "$GH" pr create --base "$base" --head "$BRANCH" --title "$title" --body-file "$work/body.md" "${draft[@]}"
  echo "template-update: opened a pull request for $BRANCH"
fi
back
