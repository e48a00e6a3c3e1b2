"""Pod hardening and images.

- hardening: non-root with a UID >= MIN_UID, seccomp RuntimeDefault, no privilege escalation,
  read-only root filesystem, all capabilities dropped, memory requests and limits, CPU requests,
  no service account token;
- images: a fixed tag, and in a pinned overlay (prod) a digest (`@sha256:...`); for a release,
  not the all-zero placeholder digest the committed prod overlay carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .manifests import Manifests

# Every container runs as an unprivileged UID at least this high (no clash with a node's users).
MIN_UID = 10_000
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PLACEHOLDER_DIGEST = "@sha256:" + "0" * 64


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


RULES = (check_hardening,)
