"""The manifest checks from the command line (from the project root, PYTHONPATH=deploy/k8s).

Usage:
  python -m check_manifests schemas RENDERED.yaml... --kubernetes-version 1.32
  python -m check_manifests check RENDERED.yaml... [--code DIR]... [--sources DEPLOY_K8S_DIR]
                                  [--pinned RENDERED.yaml]... [--release]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CODE_RULES, check, schemas, secrets
from .manifests import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_manifests", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("schemas", help="validate every object against its schema")
    validate.add_argument("rendered", nargs="+", type=Path)
    validate.add_argument("--kubernetes-version", required=True)
    run = sub.add_parser("check", help="the project's rules on rendered overlays (one per file)")
    run.add_argument("rendered", nargs="+", type=Path)
    run.add_argument(
        "--code", action="append", type=Path, default=[], help="source directory the rules read"
    )
    run.add_argument("--sources", type=Path, help="deploy/k8s: check the committed files too")
    run.add_argument(
        "--pinned",
        action="append",
        type=Path,
        default=[],
        help="a rendered overlay whose images must be pinned by digest (prod)",
    )
    run.add_argument(
        "--release", action="store_true", help="refuse the placeholder digest too (after k8s-pin)"
    )
    args = parser.parse_args(argv)

    findings = []
    for path in args.rendered:
        if args.command == "schemas":
            found = schemas.check(load([path]), args.kubernetes_version)
        else:
            pinned = path.resolve() in {p.resolve() for p in args.pinned}
            found = check(load([path]), pinned=pinned, release=args.release)
        findings += [f"{path.name}: {finding}" for finding in found]
    if args.command == "check":
        docs = load(args.rendered)
        findings += [finding for rule in CODE_RULES for finding in rule(docs, args.code)]
        if args.sources:
            findings += secrets.check_sources(args.sources)
    for finding in findings:
        sys.stderr.write(f"{finding}\n")
    names = ", ".join(path.name for path in args.rendered)
    sys.stdout.write(f"check_manifests {args.command}: {names}: {len(findings)} finding(s)\n")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
