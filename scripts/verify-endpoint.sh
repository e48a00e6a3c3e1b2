#!/usr/bin/env bash
# The "Add an endpoint" section of a generated project's README, followed as written: its new files
# are written, its lines added where the text says, then `make format|fmt test lint typecheck`.
#
#   scripts/verify-endpoint.sh PRESET [PROJECT_DIR]
#
# PRESET is generated (with --install) into a temporary directory, or PROJECT_DIR is used if it
# already exists (a generated, installed project of that preset; it is edited in place).
# CI runs it for one python preset and one node preset (.ci/run).
set -euo pipefail
preset=${1:?usage: verify-endpoint.sh PRESET [PROJECT_DIR]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stackwise=${STACKWISE:-$root/target/debug/stackwise}
project=${2:-}
if [ -z "$project" ] || [ ! -d "$project" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/stackwise-endpoint-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  "$stackwise" new endpoint-check --preset "$preset" -o "$work" --yes --install >/dev/null
  project=$work/endpoint-check
fi
cd "$project"

python3 - <<'PY'
import pathlib, re, sys

readme = pathlib.Path("README.md").read_text()
start = readme.index("<!-- stackwise: add-an-endpoint")
end = readme.index("<!-- /stackwise: add-an-endpoint -->")
section = readme[start:end]
pieces = re.split(r"```(?:python|ts)\n(.*?)\n```", section, flags=re.S)
# pieces: prose, block, prose, block, …
for i in range(1, len(pieces), 2):
    block, prose = pieces[i], pieces[i - 1]
    first = block.splitlines()[0]
    path = re.match(r"^(?:#|//) (\S+\.(?:py|ts))$", first)
    if path:
        target = pathlib.Path(path.group(1))
        if target.exists():
            sys.exit(f"{target} exists already: the README's new file would overwrite it")
        target.write_text(block + "\n")
        print(f"wrote {target}")
        continue
    # Lines to add to an existing file: the file and the anchor line are named in the prose.
    file = re.search(r"`(src/[^`]+\.(?:py|ts))`", prose)
    anchor = re.search(r"after\s+`([^`]+)`", prose)
    if not file or not anchor:
        sys.exit(f"cannot tell where these lines go:\n{block}")
    target = pathlib.Path(file.group(1))
    lines = target.read_text().splitlines()
    imports = [l for l in block.splitlines() if l.startswith(("from ", "import "))]
    body = [l for l in block.splitlines() if l not in imports]
    at = next(i for i, l in enumerate(lines) if l.strip() == anchor.group(1))
    lines[at + 1 : at + 1] = body
    # Imports go with the others (before the first relative one); the formatter sorts them.
    first_import = next(
        i for i, l in enumerate(lines) if l.startswith(("from .", "import ")) and "__future__" not in l
    )
    lines[first_import:first_import] = imports
    target.write_text("\n".join(lines) + "\n")
    print(f"edited {target}: {len(imports)} import(s), {len(body)} line(s) after {anchor.group(1)!r}")
PY

if grep -q '^fmt:' Makefile; then make fmt; else make format; fi
make test lint typecheck
echo "ok: the README's endpoint works in a $preset project"
