"""KEDA's view of the bus: the worker's ScaledObject watches what the code writes.

The CRD schemas (schemas.py) check the objects' fields; trigger metadata is a free map there,
which KEDA reads by name and silently ignores when misspelt. So here: every trigger is a Redis
Streams scaler whose metadata keys (and the TriggerAuthentication's parameters) are the ones
KEDA's scaler schema declares (../schemas/keda.sh/scalers.yaml); the triggers name the stream
and consumer group the code uses, cover every bus partition with a backlog (lagCount +
activationLagCount) and an in-flight (pendingEntriesCount) trigger, and authenticate from the
Secret the pods read, with keys that Secret has.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from .manifests import Doc, Manifests, Pod, namespace_of, read_yaml, ref_of
from .schemas import SCHEMAS

# The bus (contracts/README.md): partition p's job stream and its consumer group.
STREAM = re.compile(r"^\{jobs:(\d+)\}:predict$")
GROUP = "ml-workers"


@functools.cache
def scaler_parameters() -> dict[str, list[Doc]]:
    """Scaler type → its parameters, from KEDA's generated scaler schema."""
    path = SCHEMAS / "keda.sh" / "scalers.yaml"
    scalers = read_yaml(path)["scalers"]
    return {scaler["type"]: scaler["parameters"] for scaler in scalers}


def metadata_keys(scaler: str) -> set[str]:
    parameters = scaler_parameters()[scaler]
    return {p["name"] for p in parameters if p.get("metadataVariableReadable")} | {
        f"{p['name']}FromEnv" for p in parameters if p.get("envVariableReadable")
    }


def auth_parameters(scaler: str) -> set[str]:
    parameters = scaler_parameters()[scaler]
    return {p["name"] for p in parameters if p.get("triggerAuthenticationVariableReadable")}


def check_triggers(m: Manifests) -> Iterator[str]:
    for scaled in m.of_kind("ScaledObject"):
        namespace = namespace_of(scaled)
        ref = scaled["spec"]["scaleTargetRef"]
        pod = m.pod(ref.get("kind", "Deployment"), ref["name"], namespace)
        partitions_seen: dict[int, set[str]] = {}
        for trigger in scaled["spec"].get("triggers") or []:
            where = f"{ref_of(scaled)} trigger {trigger.get('name', trigger.get('type'))}"
            scaler = str(trigger.get("type"))
            if scaler not in scaler_parameters():
                yield f"{where}: type {scaler!r} is not a Redis Streams scaler"
                continue
            metadata: Doc = trigger.get("metadata") or {}
            unknown = sorted(set(metadata) - metadata_keys(scaler))
            if unknown:
                yield f"{where}: metadata {unknown} unknown to the {scaler} scaler"
            match = STREAM.match(str(metadata.get("stream", "")))
            if not match:
                stream = metadata.get("stream")
                yield f"{where}: stream {stream!r} is not a bus stream {{jobs:<p>}}:predict"
                continue
            if metadata.get("consumerGroup") != GROUP:
                yield f"{where}: consumerGroup {metadata.get('consumerGroup')!r} is not {GROUP!r}"
            roles = partitions_seen.setdefault(int(match.group(1)), set())
            if "lagCount" in metadata:
                if "activationLagCount" not in metadata:
                    yield f"{where}: lagCount without activationLagCount (scaling from zero)"
                roles.add("backlog")
            elif "pendingEntriesCount" in metadata:
                roles.add("in-flight")
                batch = m.config_value(pod, "BATCH_SIZE") if pod else None
                if batch and int(metadata["pendingEntriesCount"]) < int(batch):
                    yield (
                        f"{where}: pendingEntriesCount {metadata['pendingEntriesCount']} is below "
                        f"BATCH_SIZE {batch}: one busy worker would ask for more replicas"
                    )
            yield from check_trigger_auth(m, trigger, where, namespace, pod)
        partitions = int((m.config_value(pod, "BUS_PARTITIONS") if pod else None) or 1)
        for partition in range(partitions):
            missing = {"backlog", "in-flight"} - partitions_seen.get(partition, set())
            if missing:
                yield (
                    f"{ref_of(scaled)}: BUS_PARTITIONS={partitions} but partition {partition} "
                    f"has no {' and no '.join(sorted(missing))} trigger"
                )
        extra = sorted(p for p in partitions_seen if p >= partitions)
        if extra:
            yield f"{ref_of(scaled)}: triggers for partitions {extra} >= {partitions} partitions"


def check_trigger_auth(
    m: Manifests, trigger: Doc, where: str, namespace: str, pod: Pod | None
) -> Iterator[str]:
    name = (trigger.get("authenticationRef") or {}).get("name")
    if not name:
        yield f"{where}: no authenticationRef (a TriggerAuthentication gives the Redis password)"
        return
    auth = m.find("TriggerAuthentication", name, namespace)
    if auth is None:
        yield f"{where}: TriggerAuthentication {name} does not exist"
        return
    read = m.secrets_read(pod) if pod else set()
    known = auth_parameters(str(trigger["type"]))
    for target in auth.get("spec", {}).get("secretTargetRef") or []:
        if target["parameter"] not in known:
            yield f"{ref_of(auth)}: parameter {target['parameter']!r} unknown to {trigger['type']}"
        if target["name"] not in read:
            yield (
                f"{ref_of(auth)}: Secret {target['name']} is not the Secret the scaled pods read "
                f"({', '.join(sorted(read)) or 'none'})"
            )
        secret = m.find("Secret", target["name"], namespace)
        if secret and target["key"] not in (secret.get("data") or {}):
            yield f"{ref_of(auth)}: Secret {target['name']} has no key {target['key']}"


RULES = (check_triggers,)


def check_code(docs: list[Doc], code_dirs: Iterable[Path]) -> list[str]:
    """The KEDA triggers watch what the code writes: the bus stream family and the group."""
    code_dirs = list(code_dirs)
    if not code_dirs or not any(doc.get("kind") == "ScaledObject" for doc in docs):
        return []
    texts = [
        path.read_text(encoding="utf-8", errors="replace")
        for directory in code_dirs
        for path in sorted(directory.rglob("*"))
        if path.suffix in {".py", ".ts", ".js", ".mjs"} and path.is_file()
    ]
    findings = []
    if not any(re.search(r"\{+jobs:", text) and ":predict" in text for text in texts):
        findings.append(
            "the code never names a {jobs:<p>}:predict stream: the KEDA triggers watch a stream "
            "the producers and workers do not use"
        )
    if not any(f'"{GROUP}"' in text for text in texts):
        findings.append(f"the code never names the consumer group {GROUP!r} the KEDA triggers read")
    return findings
