"""How the workloads fit together: selectors, probes, autoscalers, graceful shutdown.

- selectors: a Deployment's selector matches its pod labels, a Service or PodDisruptionBudget
  selects pods that exist, a Service's target port is a port of those pods; every Deployment
  has a PodDisruptionBudget (a drain would evict all its pods at once);
- probes: every probe port is a container port; HTTP containers (port `http`) have liveness on
  /healthz and readiness on /readyz, the others a liveness probe of their own;
- autoscaling: at most one autoscaler (HPA or KEDA ScaledObject) per workload, its target
  exists, has no fixed `replicas`, and has CPU requests when scaled on CPU;
- shutdown: the grace period is longer than the preStop pause plus the drain time.
"""

from __future__ import annotations

from collections.abc import Iterator

from .manifests import Doc, Manifests, namespace_of, ref_of, selects


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
    budgets = m.of_kind("PodDisruptionBudget")
    for pod in m.pods:
        if pod.kind == "Deployment" and not any(
            namespace_of(pdb) == pod.namespace
            and selects(pdb.get("spec", {}).get("selector"), pod.labels)
            for pdb in budgets
        ):
            yield f"{pod.ref}: no PodDisruptionBudget (a drain may evict all its pods at once)"


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
    for scaler in m.of_kind("HorizontalPodAutoscaler") + m.of_kind("ScaledObject"):
        ref = scaler["spec"]["scaleTargetRef"]
        key = (ref.get("kind", "Deployment"), ref["name"], namespace_of(scaler))
        targets.setdefault(key, []).append(ref_of(scaler))
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


RULES = (check_selectors, check_probes, check_autoscaling, check_shutdown)
