#!/usr/bin/env python3
"""Lists the longest Rust functions: `scripts/fn-lengths.py [N] [DIR or FILE...]` (default 15, src/).

A function runs from its `fn` line to the closing brace at the indentation it started at (the
code is rustfmt-formatted), both counted, so a signature over several lines counts. Functions in
`#[cfg(test)]` modules are marked `(test)`.
"""

import re
import sys
from pathlib import Path

FN = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?((const|async|unsafe|extern \"C\")\s+)*fn\s+(\w+)")


def functions(path: Path):
    lines = path.read_text().splitlines()
    test_indent = None
    for i, line in enumerate(lines):
        if test_indent is not None and line.startswith(" " * test_indent + "}") and len(line) - len(line.lstrip()) == test_indent:
            test_indent = None
        if line.strip() == "#[cfg(test)]" and test_indent is None:
            test_indent = len(line) - len(line.lstrip())
        m = FN.match(line)
        if not m:
            continue
        indent = m.group(1)
        end = None
        for j in range(i, len(lines)):
            text = lines[j]
            if j == i or text.startswith(indent + " ") or not text.strip():
                if text.rstrip().endswith(";") and "{" not in "".join(lines[i : j + 1]):
                    break  # a declaration without a body
                continue
            if text.startswith(indent + "}"):
                end = j
            elif text.startswith(indent + ")") or text.startswith(indent + "where"):
                continue
            break
        if end is not None:
            yield end - i + 1, f"{path}:{i + 1}", m.group(6), test_indent is not None


def main():
    args = sys.argv[1:]
    n = int(args.pop(0)) if args and args[0].isdigit() else 15
    roots = [Path(a) for a in args] or [Path("src")]
    files = [p for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*.rs")))]
    found = [f for p in files for f in functions(p)]
    for length, where, name, test in sorted(found, reverse=True)[:n]:
        print(f"{length:5}  {name:40} {where}{'  (test)' if test else ''}")


if __name__ == "__main__":
    main()
