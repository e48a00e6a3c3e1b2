#!/usr/bin/env bash
# `make env`: write .env from .env.example with every `replace-with-...` placeholder replaced by a
# fresh random secret (48 hex characters). An existing .env is never overwritten.
# The services refuse to start with a placeholder secret, so compose needs this (or your own values).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -e .env ]]; then
  echo ".env exists: left as it is (delete it to make a new one)"
  exit 0
fi
umask 077
tmp=$(mktemp .env.XXXXXX)
trap 'rm -f "$tmp"' EXIT
while IFS= read -r line || [[ -n "$line" ]]; do
  if [[ "$line" =~ ^([A-Z][A-Z0-9_]*)=replace-with- ]]; then
    printf '%s=%s\n' "${BASH_REMATCH[1]}" "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  else
    printf '%s\n' "$line"
  fi
done <.env.example >"$tmp"
mv "$tmp" .env
trap - EXIT
echo "wrote .env with new random secrets; your client key is API_KEYS in it"
