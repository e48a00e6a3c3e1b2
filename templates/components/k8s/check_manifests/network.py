"""NetworkPolicies: ingress and egress are denied by default, every allow rule selects existing
pods and ports, every pod behind a Service is reachable through a policy; every pod may reach
DNS, the pods reading REDIS_URL may reach Redis (port REDIS_PORT), a pod configured with an
in-cluster URL (http://<service>:<port>) may reach that Service's pods, and nothing else. Every
Ingress names the class of the controller those policies admit (INGRESS_CONTROLLERS)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .manifests import Doc, Manifests, Pod, namespace_of, ref_of, selects

# The port the services reach Redis on (base/networkpolicies.yaml, allow-redis-egress).
REDIS_PORT = 6379
DNS_PORT = 53
# http://<service>[:<port>][/...]: a URL that names a Service of the namespace.
SERVICE_URL = re.compile(r"^https?://([a-z0-9]([-a-z0-9]*[a-z0-9])?)(?::(\d+))?(?:/|$)")
ANY_PEER = "any"  # check the port only: the destination is outside these manifests (DNS)
# IngressClass -> the namespace of its controller (base/networkpolicies.yaml admits it; the
# Ingress annotations are that controller's): change both there for another controller.
INGRESS_CONTROLLERS = {"nginx": "ingress-nginx"}


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
    for variable, value in m.config(pod):
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
            if redis and egress_allowed(m, pod, REDIS_PORT, None):
                yield (
                    f"{pod.ref}: Redis runs in the namespace, yet egress on TCP {REDIS_PORT}"
                    " is open to addresses outside the cluster too"
                )
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


def check_ingress_class(m: Manifests) -> Iterator[str]:
    """An Ingress without ingressClassName goes to whatever class is the cluster's default (or to
    none): its annotations and the policy admitting the controller assume one."""
    admitted = {
        peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
        for policy in m.of_kind("NetworkPolicy")
        for rule in policy["spec"].get("ingress") or []
        for peer in rule.get("from") or []
    }
    for ingress in m.of_kind("Ingress"):
        name = ingress["spec"].get("ingressClassName")
        if name is None:
            yield f"{ref_of(ingress)}: no ingressClassName (the cluster's default class, if any)"
        elif name not in INGRESS_CONTROLLERS:
            yield f"{ref_of(ingress)}: ingressClassName {name!r} is not in INGRESS_CONTROLLERS"
        elif INGRESS_CONTROLLERS[name] not in admitted:
            yield (
                f"{ref_of(ingress)}: no NetworkPolicy admits its controller's namespace "
                f"{INGRESS_CONTROLLERS[name]}"
            )


RULES = (check_network_policies, check_ingress_class)
