"""Secrets: never a literal value in a manifest or the ConfigMap, every key a pod reads exists in
its Secret; never a Secret in the committed YAML, and generators read only git-ignored files
whose committed examples hold placeholders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .manifests import Manifests, load, ref_of

# Environment variables and ConfigMap keys that hold secrets: they must come from a Secret.
SECRET_NAME = re.compile(r"(^|_)(KEYS?|SECRET|PASSWORD|TOKEN|CREDENTIALS?)$|^REDIS_URL$")
PLACEHOLDER = "replace-with-"


def check_secret_values(m: Manifests) -> Iterator[str]:
    for pod in m.pods:
        for container in pod.containers:
            for env in container.get("env") or []:
                if "value" in env and SECRET_NAME.search(str(env.get("name"))):
                    yield f"{pod.ref}: {env['name']} has a literal value; read it from a Secret"
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if not ref or ref.get("optional"):
                    continue
                secret = m.find("Secret", ref["name"], pod.namespace)
                if secret is not None and ref["key"] not in (secret.get("data") or {}):
                    yield f"{pod.ref}: Secret {ref['name']} has no key {ref['key']} ({env['name']})"
    for config in m.of_kind("ConfigMap"):
        for key in config.get("data") or {}:
            if SECRET_NAME.search(key):
                yield f"{ref_of(config)}: {key} looks like a secret; put it in the Secret"


RULES = (check_secret_values,)


# -- the committed sources (deploy/k8s) --------------------------------------------------------


def gitignored(root: Path) -> set[str]:
    ignore = root / ".gitignore"
    if not ignore.is_file():
        return set()
    lines = ignore.read_text(encoding="utf-8").splitlines()
    return {line.strip().lstrip("/") for line in lines if line.strip() and not line.startswith("#")}


def check_sources(root: Path) -> list[str]:
    """The committed YAML has no Secret; generators read git-ignored files with placeholders."""
    findings = []
    ignored = gitignored(root)
    skip = {".venv", ".build"}
    for path in sorted(root.rglob("*.yaml")):
        if skip & set(path.relative_to(root).parts):
            continue
        docs = load([path])
        rel = path.relative_to(root).as_posix()
        for doc in docs:
            if doc.get("kind") == "Secret":
                findings.append(f"{rel}: a Secret in a committed file; use a secretGenerator")
            for generator in doc.get("secretGenerator") or []:
                if generator.get("literals"):
                    findings.append(f"{rel}: secretGenerator {generator['name']} has literals")
                for source in (generator.get("envs") or []) + (generator.get("files") or []):
                    source_path = (path.parent / source).relative_to(root).as_posix()
                    if source_path not in ignored:
                        findings.append(f"{rel}: {source_path} is not listed in {root}/.gitignore")
                    example = path.parent / f"{source}.example"
                    if not example.is_file():
                        findings.append(f"{rel}: no committed example {example.name} for {source}")
                        continue
                    findings.extend(check_example(example, root))
    return findings


def check_example(example: Path, root: Path) -> list[str]:
    findings = []
    for number, line in enumerate(example.read_text(encoding="utf-8").splitlines(), 1):
        key, _, value = line.partition("=")
        if line.startswith("#") or not value or not SECRET_NAME.search(key.strip()):
            continue
        if PLACEHOLDER not in value:
            where = f"{example.relative_to(root).as_posix()}:{number}"
            findings.append(f"{where}: {key} is not a {PLACEHOLDER}... placeholder")
    return findings
