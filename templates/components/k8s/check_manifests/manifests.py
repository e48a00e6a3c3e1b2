"""The rendered objects of one overlay, indexed for the rules: the workloads' pods, objects by
kind and name, label selectors, what a pod's containers read from ConfigMaps and Secrets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# libyaml's safe loader when PyYAML has it (ten times faster), else the pure-Python one.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(paths: Iterable[Path]) -> list[Doc]:
    """Every mapping document of the YAML files."""
    docs: list[Doc] = []
    for path in paths:
        with path.open(encoding="utf-8") as stream:
            loaded = yaml.load_all(stream, Loader=SAFE_LOADER)
            docs.extend(doc for doc in loaded if isinstance(doc, dict))
    return docs


def read_yaml(path: Path) -> Any:
    """The one document of a YAML file (a vendored schema)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)  # noqa: S506 (safe)


def namespace_of(doc: Doc) -> str:
    return str(doc.get("metadata", {}).get("namespace", "default"))


def name_of(doc: Doc) -> str:
    return str(doc.get("metadata", {}).get("name", "?"))


def ref_of(doc: Doc) -> str:
    return f"{doc.get('kind')}/{name_of(doc)}"


def selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """Label-selector semantics (matchLabels, matchExpressions); an empty selector selects all."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class Pod:
    """A workload's pod template, with what the checks need to look up."""

    kind: str
    name: str
    namespace: str
    doc: Doc
    labels: dict[str, str]
    spec: Doc
    containers: list[Doc] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def container_port(self, port: str | int) -> str | int:
        """A named port as its number (when a container declares it), a number as itself."""
        for container in self.containers:
            for declared in container.get("ports") or []:
                if declared.get("name") == port:
                    number: int = declared["containerPort"]
                    return number
        return port

    def port_names(self) -> set[str | int]:
        found: set[str | int] = set()
        for container in self.containers:
            for port in container.get("ports") or []:
                found.add(port["containerPort"])
                if "name" in port:
                    found.add(port["name"])
        return found


class Manifests:
    """The rendered objects of one overlay, indexed for the checks."""

    def __init__(self, docs: list[Doc]) -> None:
        self.docs = docs
        self.pods: list[Pod] = []
        for doc in docs:
            if doc.get("kind") not in WORKLOAD_KINDS:
                continue
            template = doc.get("spec", {}).get("template", {})
            spec = template.get("spec", {})
            self.pods.append(
                Pod(
                    kind=doc["kind"],
                    name=name_of(doc),
                    namespace=namespace_of(doc),
                    doc=doc,
                    labels=template.get("metadata", {}).get("labels") or {},
                    spec=spec,
                    containers=list(spec.get("containers") or []),
                )
            )

    def of_kind(self, kind: str) -> list[Doc]:
        return [doc for doc in self.docs if doc.get("kind") == kind]

    def find(self, kind: str, name: str, namespace: str) -> Doc | None:
        for doc in self.of_kind(kind):
            if name_of(doc) == name and namespace_of(doc) == namespace:
                return doc
        return None

    def pods_selected(self, selector: Doc | None, namespace: str) -> list[Pod]:
        return [p for p in self.pods if p.namespace == namespace and selects(selector, p.labels)]

    def pod(self, kind: str, name: str, namespace: str) -> Pod | None:
        for pod in self.pods:
            if (pod.kind, pod.name, pod.namespace) == (kind, name, namespace):
                return pod
        return None

    def config(self, pod: Pod) -> Iterator[tuple[str, str]]:
        """(variable, value) of each literal env value and ConfigMap key of the pod's containers."""
        for container in pod.containers:
            for env in container.get("env") or []:
                if "value" in env:
                    yield str(env["name"]), str(env["value"])
            for source in container.get("envFrom") or []:
                ref = source.get("configMapRef")
                config = ref and self.find("ConfigMap", ref["name"], pod.namespace)
                if config:
                    yield from ((str(k), str(v)) for k, v in (config.get("data") or {}).items())

    def config_value(self, pod: Pod, variable: str) -> str | None:
        """The value a pod's containers get for `variable` (literal env or a ConfigMap)."""
        return next((value for name, value in self.config(pod) if name == variable), None)

    def secrets_read(self, pod: Pod) -> set[str]:
        names: set[str] = set()
        for container in pod.containers:
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
            for source in container.get("envFrom") or []:
                if source.get("secretRef"):
                    names.add(source["secretRef"]["name"])
        for volume in pod.spec.get("volumes") or []:
            if volume.get("secret"):
                names.add(volume["secret"]["secretName"])
        return names


# A rule: every finding (a sentence naming the object) on the rendered objects of one overlay.
Rule = Callable[[Manifests], Iterator[str]]
# A rule on the source code (directories) that the rendered objects must agree with.
CodeRule = Callable[[list[Doc], Iterable[Path]], list[str]]
