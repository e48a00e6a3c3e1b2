"""What no schema validator checks in the rendered manifests of deploy/k8s.

kubernetes-validate checks each object against the Kubernetes API schema; this checks how the
objects fit together and the rules of this project:

- selectors: a Deployment's selector matches its pod labels, a Service or PodDisruptionBudget
  selects pods that exist, a Service's target port is a port of those pods;
- probes: every probe port is a container port; HTTP containers (port `http`) have liveness on
  /healthz and readiness on /readyz, the others a liveness probe of their own;
- autoscaling: at most one autoscaler (HPA or KEDA ScaledObject) per workload, its target
  exists, has no fixed `replicas`, and has CPU requests when scaled on CPU;
- KEDA: the objects use known fields only, the redis-streams triggers documented metadata only;
  they name the stream and consumer group the code uses, cover every bus partition with a
  backlog (lagCount + activationLagCount) and an in-flight (pendingEntriesCount) trigger, and
  authenticate from the Secret the pods read;
- NetworkPolicies: ingress and egress are denied by default, every allow rule selects existing
  pods and ports, every pod behind a Service is reachable through a policy; every pod may reach
  DNS, the pods reading REDIS_URL may reach Redis (port REDIS_PORT), a pod configured with an
  in-cluster URL (http://<service>:<port>) may reach that Service's pods, and nothing else;
- hardening: non-root with a UID >= MIN_UID, seccomp RuntimeDefault, no privilege escalation,
  read-only root filesystem, all capabilities dropped, memory requests and limits, CPU requests,
  no service account token; graceful shutdown longer than the preStop pause plus the drain time;
- images: a fixed tag, and in a `--pinned` overlay (prod) a digest (`@sha256:...`); with
  `--release`, not the all-zero placeholder digest the committed prod overlay carries;
- secrets: never a literal value, never a Secret in the committed YAML, generators read only
  git-ignored files whose committed examples hold placeholders.

Usage:
  check_manifests.py check RENDERED.yaml... [--code DIR]... [--sources DEPLOY_K8S_DIR]
                     [--pinned RENDERED.yaml]... [--release]
  check_manifests.py core RENDERED.yaml     # the objects kubernetes-validate knows (no CRDs)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# API groups whose kinds are in the Kubernetes schemas; anything else is a custom resource.
CORE_GROUPS = frozenset(
    {"", "apps", "autoscaling", "batch", "policy", "networking.k8s.io", "rbac.authorization.k8s.io"}
)
# Metadata keys of KEDA's redis-streams / redis-cluster-streams scalers (KEDA 2.x docs).
REDIS_STREAMS_KEYS = frozenset(
    {
        "address",
        "addresses",
        "host",
        "hosts",
        "port",
        "ports",
        "addressFromEnv",
        "addressesFromEnv",
        "hostFromEnv",
        "hostsFromEnv",
        "portFromEnv",
        "portsFromEnv",
        "usernameFromEnv",
        "passwordFromEnv",
        "stream",
        "consumerGroup",
        "pendingEntriesCount",
        "streamLength",
        "lagCount",
        "activationLagCount",
        "databaseIndex",
        "enableTLS",
        "unsafeSsl",
    }
)
REDIS_STREAMS_TYPES = frozenset({"redis-streams", "redis-cluster-streams"})
# Fields of KEDA's ScaledObject and TriggerAuthentication (keda.sh/v1alpha1) this project may
# use; kubernetes-validate has no schema for them, and the API server would drop a misspelt one.
KEDA_FIELDS: dict[str, frozenset[str]] = {
    "ScaledObject.spec": frozenset(
        {
            "scaleTargetRef",
            "pollingInterval",
            "cooldownPeriod",
            "initialCooldownPeriod",
            "idleReplicaCount",
            "minReplicaCount",
            "maxReplicaCount",
            "fallback",
            "advanced",
            "triggers",
        }
    ),
    "ScaledObject.spec.scaleTargetRef": frozenset(
        {"apiVersion", "kind", "name", "envSourceContainerName"}
    ),
    "ScaledObject.spec.fallback": frozenset({"failureThreshold", "replicas", "behavior"}),
    "ScaledObject.spec.triggers[]": frozenset(
        {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
    ),
    "ScaledObject.spec.triggers[].authenticationRef": frozenset({"name", "kind"}),
    "TriggerAuthentication.spec.secretTargetRef[]": frozenset({"parameter", "name", "key"}),
}
# The bus (contracts/README.md): partition p's job stream and its consumer group.
STREAM = re.compile(r"^\{jobs:(\d+)\}:predict$")
GROUP = "ml-workers"
# Environment variables and ConfigMap keys that hold secrets: they must come from a Secret.
SECRET_NAME = re.compile(r"(^|_)(KEYS?|SECRET|PASSWORD|TOKEN|CREDENTIALS?)$|^REDIS_URL$")
PLACEHOLDER = "replace-with-"
# Every container runs as an unprivileged UID at least this high (no clash with a node's users).
MIN_UID = 10_000
# The port the services reach Redis on (base/networkpolicies.yaml, allow-redis-egress).
REDIS_PORT = 6379
DNS_PORT = 53
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PLACEHOLDER_DIGEST = "@sha256:" + "0" * 64
# http://<service>[:<port>][/...]: a URL that names a Service of the namespace.
SERVICE_URL = re.compile(r"^https?://([a-z0-9]([-a-z0-9]*[a-z0-9])?)(?::(\d+))?(?:/|$)")


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


def api_group(doc: Doc) -> str:
    api_version = str(doc.get("apiVersion", ""))
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def core(docs: Iterable[Doc]) -> list[Doc]:
    """The objects of built-in API groups (kubernetes-validate has no schema for the others)."""
    return [doc for doc in docs if api_group(doc) in CORE_GROUPS]


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

    def config_value(self, pod: Pod, variable: str) -> str | None:
        """The value a pod's containers get for `variable` (literal env or a ConfigMap)."""
        for container in pod.containers:
            for env in container.get("env") or []:
                if env.get("name") == variable and "value" in env:
                    return str(env["value"])
            for source in container.get("envFrom") or []:
                ref = source.get("configMapRef")
                config = ref and self.find("ConfigMap", ref["name"], pod.namespace)
                if config and variable in (config.get("data") or {}):
                    return str(config["data"][variable])
        return None

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


# -- rules on the rendered objects ---------------------------------------------------------------


def check_selectors(m: Manifests) -> Iterator[str]:
    for pod in m.pods:
        selector = pod.doc.get("spec", {}).get("selector")
        if not selector or not selects(selector, pod.labels):
            yield f"{pod.ref}: spec.selector does not match its pod template labels {pod.labels}"
    for service in m.of_kind("Service"):
        selector = service.get("spec", {}).get("selector")
        if not selector:
            yield f"{ref_of(service)}: no selector"
            continue
        pods = m.pods_selected({"matchLabels": selector}, namespace_of(service))
        if not pods:
            yield f"{ref_of(service)}: selector {selector} matches no pod template"
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for pod in pods:
                if target not in pod.port_names():
                    yield f"{ref_of(service)}: targetPort {target!r} is not a port of {pod.ref}"
    for pdb in m.of_kind("PodDisruptionBudget"):
        spec = pdb.get("spec", {})
        if "minAvailable" in spec and "maxUnavailable" in spec:
            yield f"{ref_of(pdb)}: sets both minAvailable and maxUnavailable"
        if not m.pods_selected(spec.get("selector"), namespace_of(pdb)):
            yield f"{ref_of(pdb)}: selector matches no pod template"


def probe_port(probe: Doc) -> str | int | None:
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            port: str | int = probe[handler]["port"]
            return port
    return None


def serves_http(container: Doc) -> bool:
    """This project's services name their HTTP port `http` (Redis names its port `redis`)."""
    return any(port.get("name") == "http" for port in container.get("ports") or [])


def check_probes(m: Manifests) -> Iterator[str]:
    for pod in m.pods:
        ports = pod.port_names()
        for container in pod.containers:
            where = f"{pod.ref} container {container.get('name')}"
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(kind)
                port = probe_port(probe) if probe else None
                if port is not None and port not in ports:
                    yield f"{where}: {kind} port {port!r} is not a container port"
            liveness = container.get("livenessProbe")
            if not liveness:
                yield f"{where}: no livenessProbe"
            readiness = container.get("readinessProbe") or {}
            if not serves_http(container):
                served = [p for p in container.get("ports") or [] if p.get("name") != "metrics"]
                if served and not readiness:
                    yield f"{where}: no readinessProbe"
                continue
            if (liveness or {}).get("httpGet", {}).get("path") != "/healthz":
                yield f"{where}: livenessProbe is not GET /healthz"
            if readiness.get("httpGet", {}).get("path") != "/readyz":
                yield f"{where}: readinessProbe is not GET /readyz"


def autoscalers(m: Manifests) -> dict[tuple[str, str, str], list[str]]:
    """(kind, name, namespace) of each scaled workload → the autoscalers that target it."""
    targets: dict[tuple[str, str, str], list[str]] = {}
    for hpa in m.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        key = (ref["kind"], ref["name"], namespace_of(hpa))
        targets.setdefault(key, []).append(ref_of(hpa))
    for scaled in m.of_kind("ScaledObject"):
        ref = scaled["spec"]["scaleTargetRef"]
        key = (ref.get("kind", "Deployment"), ref["name"], namespace_of(scaled))
        targets.setdefault(key, []).append(ref_of(scaled))
    return targets


def check_autoscaling(m: Manifests) -> Iterator[str]:
    for (kind, name, namespace), scalers in autoscalers(m).items():
        pod = m.pod(kind, name, namespace)
        if pod is None:
            yield f"{', '.join(scalers)}: the target {kind}/{name} does not exist"
            continue
        if len(scalers) > 1:
            yield f"{pod.ref}: more than one autoscaler ({', '.join(scalers)})"
        if "replicas" in pod.doc.get("spec", {}) and pod.kind == "Deployment":
            yield f"{pod.ref}: sets spec.replicas although {scalers[0]} owns the replica count"
    for hpa in m.of_kind("HorizontalPodAutoscaler"):
        spec = hpa["spec"]
        on_cpu = any(
            metric.get("type") == "Resource" and metric["resource"]["name"] == "cpu"
            for metric in spec.get("metrics") or []
        )
        ref = spec["scaleTargetRef"]
        pod = m.pod(ref["kind"], ref["name"], namespace_of(hpa))
        if on_cpu and pod is not None:
            for container in pod.containers:
                if "cpu" not in (container.get("resources", {}).get("requests") or {}):
                    yield f"{ref_of(hpa)} scales on CPU but {pod.ref} has no CPU request"


def keda_fields(doc: Doc) -> Iterator[tuple[str, Doc]]:
    """(KEDA_FIELDS key, object) for every object of `doc` that KEDA_FIELDS describes."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind == "ScaledObject":
        yield "ScaledObject.spec", spec
        yield "ScaledObject.spec.scaleTargetRef", spec.get("scaleTargetRef") or {}
        yield "ScaledObject.spec.fallback", spec.get("fallback") or {}
        for trigger in spec.get("triggers") or []:
            yield "ScaledObject.spec.triggers[]", trigger
            yield (
                "ScaledObject.spec.triggers[].authenticationRef",
                trigger.get("authenticationRef") or {},
            )
    if kind == "TriggerAuthentication":
        for target in spec.get("secretTargetRef") or []:
            yield "TriggerAuthentication.spec.secretTargetRef[]", target


def check_keda_fields(m: Manifests) -> Iterator[str]:
    for doc in m.docs:
        if api_group(doc) != "keda.sh":
            continue
        if doc.get("apiVersion") != "keda.sh/v1alpha1":
            yield f"{ref_of(doc)}: apiVersion {doc.get('apiVersion')} is not keda.sh/v1alpha1"
        for path, fields in keda_fields(doc):
            unknown = sorted(set(fields) - KEDA_FIELDS[path])
            if unknown:
                yield f"{ref_of(doc)}: unknown fields {unknown} in {path}"


def check_keda(m: Manifests) -> Iterator[str]:
    for scaled in m.of_kind("ScaledObject"):
        namespace = namespace_of(scaled)
        ref = scaled["spec"]["scaleTargetRef"]
        pod = m.pod(ref.get("kind", "Deployment"), ref["name"], namespace)
        partitions_seen: dict[int, set[str]] = {}
        for trigger in scaled["spec"].get("triggers") or []:
            where = f"{ref_of(scaled)} trigger {trigger.get('name', trigger.get('type'))}"
            if trigger.get("type") not in REDIS_STREAMS_TYPES:
                yield f"{where}: type {trigger.get('type')!r} is not a Redis Streams scaler"
                continue
            metadata: Doc = trigger.get("metadata") or {}
            unknown = sorted(set(metadata) - REDIS_STREAMS_KEYS)
            if unknown:
                yield f"{where}: unknown metadata {unknown}"
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
    for target in auth.get("spec", {}).get("secretTargetRef") or []:
        if target["name"] not in read:
            yield (
                f"{ref_of(auth)}: Secret {target['name']} is not the Secret the scaled pods read "
                f"({', '.join(sorted(read)) or 'none'})"
            )


def check_network_policies(m: Manifests) -> Iterator[str]:
    policies = m.of_kind("NetworkPolicy")
    for namespace in sorted({pod.namespace for pod in m.pods}):
        local = [p for p in policies if namespace_of(p) == namespace]
        for direction, rules in (("Ingress", "ingress"), ("Egress", "egress")):
            denies = [
                p
                for p in local
                if not p["spec"].get("podSelector")
                and direction in (p["spec"].get("policyTypes") or [])
                and not p["spec"].get(rules)
            ]
            if not denies:
                yield (
                    f"namespace {namespace}: no default-deny {rules} NetworkPolicy "
                    "(podSelector {})"
                )
    for policy in policies:
        spec, namespace = policy["spec"], namespace_of(policy)
        selected = m.pods_selected(spec.get("podSelector"), namespace)
        if spec.get("podSelector") and not selected:
            yield f"{ref_of(policy)}: podSelector matches no pod template"
        for rule in spec.get("ingress") or []:
            yield from check_peers(m, policy, rule.get("from") or [], "from")
            for port in rule.get("ports") or []:
                for pod in selected:
                    if port.get("port") is not None and port["port"] not in pod.port_names():
                        yield f"{ref_of(policy)}: port {port['port']!r} is not a port of {pod.ref}"
        for rule in spec.get("egress") or []:
            yield from check_peers(m, policy, rule.get("to") or [], "to")
    yield from check_egress(m)
    for service in m.of_kind("Service"):
        namespace = namespace_of(service)
        for pod in m.pods_selected({"matchLabels": service["spec"].get("selector")}, namespace):
            targets = {
                p.get("targetPort", p.get("port")) for p in service["spec"].get("ports") or []
            }
            reachable = any(
                selects(policy["spec"].get("podSelector"), pod.labels)
                and any(
                    not rule.get("ports") or {p.get("port") for p in rule["ports"]} & targets
                    for rule in policy["spec"].get("ingress") or []
                )
                for policy in policies
                if namespace_of(policy) == namespace
            )
            if not reachable:
                yield f"{ref_of(service)}: no NetworkPolicy admits traffic to {pod.ref}"


def check_peers(m: Manifests, policy: Doc, peers: list[Doc], side: str) -> Iterator[str]:
    """Every podSelector peer of this namespace (`from` or `to`) selects some pod."""
    for peer in peers:
        selector = peer.get("podSelector")
        if "namespaceSelector" in peer or selector is None:
            continue
        if not m.pods_selected(selector, namespace_of(policy)):
            yield f"{ref_of(policy)}: {side}.podSelector {selector} matches no pod"


# -- egress -----------------------------------------------------------------------------------

ANY_PEER = "any"  # check the port only: the destination is outside these manifests (DNS)


def ports_allow(
    ports: list[Doc] | None, port: int | str, protocol: str, dest: Pod | str | None
) -> bool:
    if not ports:
        return True
    for allowed in ports:
        if allowed.get("protocol", "TCP") != protocol:
            continue
        if "port" not in allowed or allowed["port"] == port:
            return True
        if isinstance(dest, Pod) and dest.container_port(allowed["port"]) == dest.container_port(
            port
        ):
            return True
    return False


def peer_allows(peer: Doc, namespace: str, dest: Pod | str | None) -> bool:
    """Whether one `to` peer admits `dest`: a pod, ANY_PEER, or None (outside the cluster)."""
    if dest == ANY_PEER:
        return True
    if not isinstance(dest, Pod):
        return "ipBlock" in peer
    if "ipBlock" in peer:
        return False
    namespaces = peer.get("namespaceSelector")
    if namespaces is None:
        in_namespace = dest.namespace == namespace
    else:
        in_namespace = selects(namespaces, {"kubernetes.io/metadata.name": dest.namespace})
    return in_namespace and selects(peer.get("podSelector"), dest.labels)


def egress_allowed(
    m: Manifests, pod: Pod, port: int | str, dest: Pod | str | None, protocol: str = "TCP"
) -> bool:
    """Whether some egress rule lets `pod` open `port` to `dest` (see peer_allows)."""
    for policy in m.of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if namespace_of(policy) != pod.namespace:
            continue
        if "Egress" not in (spec.get("policyTypes") or []):
            continue
        if not selects(spec.get("podSelector"), pod.labels):
            continue
        for rule in spec.get("egress") or []:
            if not ports_allow(rule.get("ports"), port, protocol, dest):
                continue
            peers = rule.get("to")
            if not peers or any(peer_allows(p, namespace_of(policy), dest) for p in peers):
                return True
    return False


def reads_secret_env(pod: Pod, variable: str) -> bool:
    return any(
        env.get("name") == variable and (env.get("valueFrom") or {}).get("secretKeyRef")
        for container in pod.containers
        for env in container.get("env") or []
    )


def service_urls(m: Manifests, pod: Pod) -> Iterator[tuple[str, str, int | None]]:
    """(variable, service name, port) of every http://<service>:<port> the pod is given."""
    values: list[tuple[str, str]] = []
    for container in pod.containers:
        values += [
            (str(env["name"]), str(env["value"]))
            for env in container.get("env") or []
            if "value" in env
        ]
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef")
            config = ref and m.find("ConfigMap", ref["name"], pod.namespace)
            if config:
                values += [(str(k), str(v)) for k, v in (config.get("data") or {}).items()]
    for variable, value in values:
        match = SERVICE_URL.match(value)
        if match and m.find("Service", match.group(1), pod.namespace) is not None:
            yield variable, match.group(1), int(match.group(3)) if match.group(3) else None


def check_egress(m: Manifests) -> Iterator[str]:
    for pod in m.pods:
        if not egress_allowed(m, pod, DNS_PORT, ANY_PEER, protocol="UDP"):
            yield f"{pod.ref}: no egress to DNS (UDP {DNS_PORT}): service names cannot resolve"
        redis = [p for p in m.pods if p.name == "redis" and p.namespace == pod.namespace]
        if reads_secret_env(pod, "REDIS_URL"):
            dests: list[Pod | None] = list(redis) or [None]
            if not all(egress_allowed(m, pod, REDIS_PORT, dest) for dest in dests):
                yield f"{pod.ref}: reads REDIS_URL but no egress to Redis (TCP {REDIS_PORT})"
        for variable, name, port in service_urls(m, pod):
            service = m.find("Service", name, pod.namespace) or {}
            spec = service.get("spec") or {}
            for service_port in spec.get("ports") or []:
                if port is not None and service_port.get("port") != port:
                    continue
                target = service_port.get("targetPort", service_port.get("port"))
                for dest in m.pods_selected({"matchLabels": spec.get("selector")}, pod.namespace):
                    if not egress_allowed(m, pod, target, dest):
                        yield (
                            f"{pod.ref}: {variable} names Service/{name} but no egress rule "
                            f"admits {dest.ref} port {target!r}"
                        )


def check_hardening(m: Manifests) -> Iterator[str]:
    for pod in m.pods:
        context = pod.spec.get("securityContext") or {}
        if context.get("runAsNonRoot") is not True:
            yield f"{pod.ref}: securityContext.runAsNonRoot is not true"
        if pod.spec.get("automountServiceAccountToken") is not False:
            yield f"{pod.ref}: automountServiceAccountToken is not false"
        pod_seccomp = (context.get("seccompProfile") or {}).get("type")
        for container in pod.containers:
            where = f"{pod.ref} container {container.get('name')}"
            security = container.get("securityContext") or {}
            uid = security.get("runAsUser", context.get("runAsUser"))
            if not isinstance(uid, int) or uid < MIN_UID:
                yield f"{where}: runAsUser {uid} is not a UID >= {MIN_UID}"
            seccomp = (security.get("seccompProfile") or {}).get("type", pod_seccomp)
            if seccomp != "RuntimeDefault":
                yield f"{where}: seccompProfile is not RuntimeDefault"
            if security.get("allowPrivilegeEscalation") is not False:
                yield f"{where}: allowPrivilegeEscalation is not false"
            if security.get("privileged"):
                yield f"{where}: privileged"
            if security.get("readOnlyRootFilesystem") is not True:
                yield f"{where}: readOnlyRootFilesystem is not true"
            if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
                yield f"{where}: capabilities.drop does not contain ALL"
            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            for missing in ("cpu", "memory"):
                if missing not in requests:
                    yield f"{where}: no {missing} request"
            if "memory" not in limits:
                yield f"{where}: no memory limit"
            image = str(container.get("image", ""))
            if DIGEST.search(image):
                continue
            if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
                yield f"{where}: image {image!r} has no fixed tag"


def check_pinned(m: Manifests, *, release: bool) -> Iterator[str]:
    """Every image by digest (a tag can be moved to other content); `release`: a real digest."""
    for pod in m.pods:
        for container in pod.containers:
            where = f"{pod.ref} container {container.get('name')}"
            image = str(container.get("image", ""))
            if not DIGEST.search(image):
                yield f"{where}: image {image!r} is not pinned by digest (@sha256:...)"
            elif release and image.endswith(PLACEHOLDER_DIGEST):
                yield f"{where}: image {image!r} has the placeholder digest: run make k8s-pin"


def check_shutdown(m: Manifests) -> Iterator[str]:
    for pod in m.pods:
        grace = int(pod.spec.get("terminationGracePeriodSeconds", 30))
        for container in pod.containers:
            if not serves_http(container):
                continue
            where = f"{pod.ref} container {container.get('name')}"
            pre_stop = (container.get("lifecycle") or {}).get("preStop")
            if not pre_stop:
                yield f"{where}: no preStop pause (requests would reach a pod that is stopping)"
                continue
            pause = int((pre_stop.get("sleep") or {}).get("seconds", 0))
            drain_ms = m.config_value(pod, "SHUTDOWN_TIMEOUT_MS")
            drain = int(drain_ms) // 1000 if drain_ms else 0
            if grace <= pause + drain:
                yield (
                    f"{where}: terminationGracePeriodSeconds {grace} leaves no time after the "
                    f"{pause} s preStop pause and the {drain} s drain (SHUTDOWN_TIMEOUT_MS)"
                )


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
    for auth in m.of_kind("TriggerAuthentication"):
        for target in auth.get("spec", {}).get("secretTargetRef") or []:
            secret = m.find("Secret", target["name"], namespace_of(auth))
            if secret and target["key"] not in (secret.get("data") or {}):
                yield f"{ref_of(auth)}: Secret {target['name']} has no key {target['key']}"


RULES = (
    check_selectors,
    check_probes,
    check_autoscaling,
    check_keda_fields,
    check_keda,
    check_network_policies,
    check_hardening,
    check_shutdown,
    check_secret_values,
)


def check(docs: list[Doc], *, pinned: bool = False, release: bool = False) -> list[str]:
    """Every finding on the rendered objects of one overlay (empty: all rules hold); `pinned`:
    images by digest (the prod overlay), `release`: no placeholder digest either."""
    manifests = Manifests(docs)
    findings = [finding for rule in RULES for finding in rule(manifests)]
    if pinned:
        findings += check_pinned(manifests, release=release)
    return findings


# -- rules on the code and the committed sources ------------------------------------------------


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("check", help="check rendered overlays (one file per overlay)")
    run.add_argument("rendered", nargs="+", type=Path)
    run.add_argument(
        "--code", action="append", type=Path, default=[], help="source directory of the bus code"
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
    split = sub.add_parser("core", help="print the objects of built-in API groups")
    split.add_argument("rendered", type=Path)
    args = parser.parse_args(argv)

    if args.command == "core":
        yaml.safe_dump_all(core(load([args.rendered])), sys.stdout, sort_keys=False)
        return 0
    findings = []
    pinned = {path.resolve() for path in args.pinned}
    for path in args.rendered:
        found = check(load([path]), pinned=path.resolve() in pinned, release=args.release)
        findings += [f"{path.name}: {finding}" for finding in found]
    findings += check_code(load(args.rendered), args.code)
    if args.sources:
        findings += check_sources(args.sources)
    for finding in findings:
        sys.stderr.write(f"{finding}\n")
    names = ", ".join(path.name for path in args.rendered)
    sys.stdout.write(f"check_manifests: {names}: {len(findings)} finding(s)\n")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
