"""The rendered overlays (`make k8s-render`) and helpers for the tests of check_manifests.

Each test module shows that the rendered objects pass its rules, then that each rule catches the
mistake it exists for, by breaking one thing in a copy of the real objects.
"""

from __future__ import annotations

import copy
import functools
import os
import unittest
from pathlib import Path
from typing import Any

from check_manifests import check
from check_manifests.manifests import Doc, load, name_of

ROOT = Path(__file__).resolve().parent.parent  # deploy/k8s
BUILD = Path(os.environ.get("K8S_BUILD", ROOT / ".build"))
CODE = [Path(part) for part in os.environ.get("K8S_CODE", "").split()]


@functools.cache
def parsed(rendered: str) -> list[Doc]:
    path = BUILD / f"{rendered}.yaml"
    if not path.is_file():
        raise unittest.SkipTest(f"{path} missing: run make k8s-render (needs kubectl)")
    return load([path])


def rendered(name: str) -> list[Doc]:
    """A fresh copy of the objects of .build/<name>.yaml (dev, prod, monitoring) to change."""
    return copy.deepcopy(parsed(name))


def find(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    for doc in docs:
        if doc.get("kind") == kind and (name is None or name_of(doc) == name):
            return doc
    raise unittest.SkipTest(f"this project has no {kind} {name or ''}")


def http_deployment(docs: list[Doc]) -> Doc:
    """A Deployment with an HTTP port (gateway or api), behind a Service and an HPA."""
    for doc in docs:
        if doc.get("kind") == "Deployment" and container(doc).get("ports"):
            return doc
    raise AssertionError("no HTTP Deployment rendered")


def container(doc: Doc) -> dict[str, Any]:
    first: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return first


class BreakProd(unittest.TestCase):
    """Break one thing in a copy of the rendered prod overlay; the named finding must appear."""

    def setUp(self) -> None:
        self.docs = rendered("prod")

    def assert_finding(self, text: str) -> None:
        findings = check(self.docs)
        self.assertTrue(any(text in f for f in findings), f"no finding with {text!r}: {findings}")
