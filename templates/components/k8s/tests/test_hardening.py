"""check_manifests.hardening: pod security, resources, images by tag or digest."""

from __future__ import annotations

import unittest

from check_manifests import check
from check_manifests.hardening import DIGEST, MIN_UID, PLACEHOLDER_DIGEST
from check_manifests.manifests import WORKLOAD_KINDS, ref_of

from .support import BreakProd, container, http_deployment, rendered


class RenderedOverlays(unittest.TestCase):
    def test_prod_deploys_images_by_digest_that_ci_writes(self) -> None:
        images = [container(d)["image"] for d in rendered("prod") if d["kind"] == "Deployment"]
        self.assertTrue(images)
        for image in images:
            self.assertRegex(image, DIGEST)
        # The committed placeholder: a release (after make k8s-pin) refuses it.
        findings = check(rendered("prod"), pinned=True, release=True)
        self.assertIn("placeholder digest", " ".join(findings))

    def test_every_container_runs_as_a_uid_of_10000_or_more(self) -> None:
        for overlay in ("dev", "prod"):
            for doc in rendered(overlay):
                if doc["kind"] in WORKLOAD_KINDS:
                    pod = doc["spec"]["template"]["spec"]
                    for cont in pod["containers"]:
                        uid = (cont.get("securityContext") or {}).get(
                            "runAsUser", pod["securityContext"].get("runAsUser")
                        )
                        self.assertGreaterEqual(uid, MIN_UID, f"{overlay} {ref_of(doc)}")


class EachRuleCatchesItsMistake(BreakProd):
    def test_writable_root_filesystem(self) -> None:
        container(http_deployment(self.docs))["securityContext"]["readOnlyRootFilesystem"] = False
        self.assert_finding("readOnlyRootFilesystem is not true")

    def test_root_user_allowed(self) -> None:
        pod_spec = http_deployment(self.docs)["spec"]["template"]["spec"]
        del pod_spec["securityContext"]["runAsNonRoot"]
        self.assert_finding("runAsNonRoot is not true")

    def test_uid_below_10000(self) -> None:
        pod_spec = http_deployment(self.docs)["spec"]["template"]["spec"]
        pod_spec["securityContext"]["runAsUser"] = 1000
        self.assert_finding("runAsUser 1000 is not a UID >= 10000")

    def test_container_overriding_the_uid(self) -> None:
        container(http_deployment(self.docs))["securityContext"]["runAsUser"] = 999
        self.assert_finding("runAsUser 999 is not a UID >= 10000")

    def test_service_account_token_mounted(self) -> None:
        pod_spec = http_deployment(self.docs)["spec"]["template"]["spec"]
        pod_spec["automountServiceAccountToken"] = True
        self.assert_finding("automountServiceAccountToken is not false")

    def test_privilege_escalation(self) -> None:
        container(http_deployment(self.docs))["securityContext"]["allowPrivilegeEscalation"] = True
        self.assert_finding("allowPrivilegeEscalation is not false")

    def test_prod_image_by_tag(self) -> None:
        cont = container(http_deployment(self.docs))
        cont["image"] = cont["image"].split("@", 1)[0] + ":1.0.0"
        self.assertEqual(check(self.docs), [])  # a fixed tag is enough outside prod
        findings = check(self.docs, pinned=True)
        self.assertTrue(any("is not pinned by digest" in f for f in findings), findings)

    def test_a_pinned_digest_passes_a_release(self) -> None:
        digest = "@sha256:" + "ab" * 32
        for doc in self.docs:
            if doc["kind"] in WORKLOAD_KINDS:
                for cont in doc["spec"]["template"]["spec"]["containers"]:
                    if cont["image"].endswith(PLACEHOLDER_DIGEST):
                        cont["image"] = cont["image"].split("@", 1)[0] + digest
        self.assertEqual(check(self.docs, pinned=True, release=True), [])

    def test_capabilities_kept(self) -> None:
        container(http_deployment(self.docs))["securityContext"]["capabilities"]["drop"] = []
        self.assert_finding("capabilities.drop does not contain ALL")

    def test_no_memory_limit(self) -> None:
        del container(http_deployment(self.docs))["resources"]["limits"]
        self.assert_finding("no memory limit")

    def test_latest_image(self) -> None:
        cont = container(http_deployment(self.docs))
        cont["image"] = cont["image"].split("@", 1)[0]
        self.assert_finding("has no fixed tag")
