#!/usr/bin/env bash
# Proves the published form works for `cargo install` users: packages the crate, builds the
# packaged sources (not this checkout) and generates a project with that binary. Run it last:
# it replaces target/debug/stackwise with the binary built from the package. The templates
# and presets must be inside the package for this to pass.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo package --quiet --no-verify --allow-dirty
pkg="target/package/stackwise-$version"
# --no-verify writes only the .crate: unpack it, as `cargo install` would.
rm -rf "$pkg"
tar xzf "target/package/stackwise-$version.crate" -C target/package
test -f "$pkg/Cargo.toml"
# The packaged sources build on their own (their own Cargo.lock, no file of this checkout);
# the shared target dir only spares recompiling the dependencies.
cargo build --quiet --locked --manifest-path "$pkg/Cargo.toml" --target-dir target
bin=target/debug/stackwise
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for preset in ml-api ai-product; do
  "$bin" new "pkg-$preset" --preset "$preset" --yes -o "$work" >/dev/null 2>&1
  test -f "$work/pkg-$preset/.stackwise.toml"
  test -f "$work/pkg-$preset/Makefile"
done
echo "packaged crate: $(du -h "target/package/stackwise-$version.crate" | cut -f1), $(tar tzf "target/package/stackwise-$version.crate" | wc -l) files; it builds and generates ml-api and ai-product"
