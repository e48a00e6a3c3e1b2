"""Tests of check_manifests.py on this project's rendered overlays (`make k8s-test`).

The rendered dev and prod overlays must pass every rule; then each rule is shown to catch the
mistake it exists for, by breaking one thing in a copy of the real objects.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import tempfile
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

import check_manifests as cm

ROOT = Path(__file__).resolve().parent.parent  # deploy/k8s
BUILD = Path(os.environ.get("K8S_BUILD", ROOT / ".build"))
CODE = [Path(part) for part in os.environ.get("K8S_CODE", "").split()]


@functools.cache
def parsed(overlay: str) -> list[cm.Doc]:
    path = BUILD / f"{overlay}.yaml"
    if not path.is_file():
        raise unittest.SkipTest(f"{path} missing: run make k8s-render (needs kubectl)")
    return cm.load([path])


def rendered(overlay: str) -> list[cm.Doc]:
    """A fresh copy of the overlay's objects, for a test to change."""
    return copy.deepcopy(parsed(overlay))


def find(docs: list[cm.Doc], kind: str, name: str | None = None) -> cm.Doc:
    for doc in docs:
        if doc.get("kind") == kind and (name is None or cm.name_of(doc) == name):
            return doc
    raise unittest.SkipTest(f"this project has no {kind} {name or ''}")


def http_deployment(docs: list[cm.Doc]) -> cm.Doc:
    """A Deployment with an HTTP port (gateway or api), behind a Service and an HPA."""
    for doc in docs:
        if doc.get("kind") == "Deployment" and container(doc).get("ports"):
            return doc
    raise AssertionError("no HTTP Deployment rendered")


def container(doc: cm.Doc) -> dict[str, Any]:
    first: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return first


def triggers(docs: list[cm.Doc]) -> Iterator[dict[str, Any]]:
    yield from find(docs, "ScaledObject")["spec"]["triggers"]


class RenderedOverlays(unittest.TestCase):
    def test_dev_and_prod_have_no_findings(self) -> None:
        for overlay in ("dev", "prod"):
            with self.subTest(overlay=overlay):
                self.assertEqual(cm.check(rendered(overlay), pinned=overlay == "prod"), [])

    def test_prod_deploys_images_by_digest_that_ci_writes(self) -> None:
        images = [container(d)["image"] for d in rendered("prod") if d["kind"] == "Deployment"]
        self.assertTrue(images)
        for image in images:
            self.assertRegex(image, cm.DIGEST)
        # The committed placeholder: a release (after make k8s-pin) refuses it.
        findings = cm.check(rendered("prod"), pinned=True, release=True)
        self.assertIn("placeholder digest", " ".join(findings))

    def test_every_container_runs_as_a_uid_of_10000_or_more(self) -> None:
        for overlay in ("dev", "prod"):
            for doc in rendered(overlay):
                if doc["kind"] in cm.WORKLOAD_KINDS:
                    pod = doc["spec"]["template"]["spec"]
                    for cont in pod["containers"]:
                        uid = (cont.get("securityContext") or {}).get(
                            "runAsUser", pod["securityContext"].get("runAsUser")
                        )
                        self.assertGreaterEqual(uid, cm.MIN_UID, f"{overlay} {cm.ref_of(doc)}")

    def test_the_code_uses_the_stream_and_group_of_the_triggers(self) -> None:
        docs = rendered("dev")
        find(docs, "ScaledObject")
        self.assertTrue(CODE, "K8S_CODE names no source directory of the bus code")
        self.assertEqual(cm.check_code(docs, CODE), [])

    def test_committed_sources_hold_no_secret(self) -> None:
        self.assertEqual(cm.check_sources(ROOT), [])

    def test_monitoring_opens_every_metrics_port_to_the_scraper_only(self) -> None:
        """The base denies all ingress: the metrics port every pod serves (METRICS_PORT) is
        reachable from the monitoring namespace through monitoring/'s policy, and only with it."""
        docs = rendered("prod")
        kustomization = yaml.safe_load((ROOT / "monitoring" / "kustomization.yaml").read_text())
        policy = yaml.safe_load((ROOT / "monitoring" / "networkpolicy.yaml").read_text())
        policy["metadata"]["namespace"] = kustomization["namespace"]
        scraped = cm.Manifests([*docs, policy])
        self.assertEqual(cm.check([*docs, policy], pinned=True), [])

        def admitted(m: cm.Manifests, pod: cm.Pod) -> bool:
            return any(
                cm.selects(p["spec"].get("podSelector"), pod.labels)
                and any(
                    "metrics" in {port.get("port") for port in rule.get("ports") or []}
                    for rule in p["spec"].get("ingress") or []
                )
                for p in m.of_kind("NetworkPolicy")
                if cm.namespace_of(p) == pod.namespace
            )

        self.assertTrue(scraped.pods)
        for pod in scraped.pods:
            with self.subTest(pod=pod.ref):
                (served,) = [c for c in pod.containers if c["name"] == pod.name]
                ports = {p.get("name"): p["containerPort"] for p in served.get("ports") or []}
                env = {e["name"]: e.get("value") for e in served.get("env") or []}
                self.assertEqual(str(ports.get("metrics")), env.get("METRICS_PORT"))
                self.assertTrue(admitted(scraped, pod), "monitoring/ does not admit the scraper")
                self.assertFalse(admitted(cm.Manifests(docs), pod), "metrics open without it")

    def test_core_leaves_out_the_keda_objects(self) -> None:
        kinds = {doc["kind"] for doc in cm.core(rendered("prod"))}
        self.assertIn("Deployment", kinds)
        self.assertFalse(kinds & {"ScaledObject", "TriggerAuthentication"})


class EachRuleCatchesItsMistake(unittest.TestCase):
    """Break one thing in a copy of the rendered prod overlay; the named finding must appear."""

    def setUp(self) -> None:
        self.docs = rendered("prod")

    def assert_finding(self, text: str) -> None:
        findings = cm.check(self.docs)
        self.assertTrue(any(text in f for f in findings), f"no finding with {text!r}: {findings}")

    def test_service_selector_without_pods(self) -> None:
        service = find(self.docs, "Service")
        service["spec"]["selector"] = {"app.kubernetes.io/name": "typo"}
        self.assert_finding("matches no pod template")

    def test_service_target_port_not_declared(self) -> None:
        find(self.docs, "Service")["spec"]["ports"][0]["targetPort"] = "web"
        self.assert_finding("targetPort 'web' is not a port of")

    def test_deployment_selector_not_matching_its_pods(self) -> None:
        http_deployment(self.docs)["spec"]["selector"]["matchLabels"]["tier"] = "x"
        self.assert_finding("spec.selector does not match its pod template labels")

    def test_pdb_with_both_budgets(self) -> None:
        find(self.docs, "PodDisruptionBudget")["spec"]["minAvailable"] = 1
        self.assert_finding("sets both minAvailable and maxUnavailable")

    def test_probe_on_an_undeclared_port(self) -> None:
        container(http_deployment(self.docs))["readinessProbe"]["httpGet"]["port"] = 9999
        self.assert_finding("readinessProbe port 9999 is not a container port")

    def test_liveness_on_the_readiness_endpoint(self) -> None:
        container(http_deployment(self.docs))["livenessProbe"]["httpGet"]["path"] = "/readyz"
        self.assert_finding("livenessProbe is not GET /healthz")

    def test_worker_without_liveness(self) -> None:
        del container(find(self.docs, "Deployment", "worker"))["livenessProbe"]
        self.assert_finding("no livenessProbe")

    def test_two_autoscalers_on_one_deployment(self) -> None:
        hpa = copy.deepcopy(find(self.docs, "HorizontalPodAutoscaler"))
        hpa["metadata"]["name"] = "second"
        self.docs.append(hpa)
        self.assert_finding("more than one autoscaler")

    def test_hpa_next_to_the_scaled_object(self) -> None:
        find(self.docs, "ScaledObject")
        hpa = copy.deepcopy(find(self.docs, "HorizontalPodAutoscaler"))
        hpa["spec"]["scaleTargetRef"]["name"] = "worker"
        self.docs.append(hpa)
        self.assert_finding("Deployment/worker: more than one autoscaler")

    def test_fixed_replicas_under_an_autoscaler(self) -> None:
        http_deployment(self.docs)["spec"]["replicas"] = 2
        self.assert_finding("sets spec.replicas although")

    def test_cpu_autoscaling_without_cpu_requests(self) -> None:
        del container(http_deployment(self.docs))["resources"]["requests"]["cpu"]
        self.assert_finding("scales on CPU but")

    def test_trigger_on_another_stream(self) -> None:
        next(triggers(self.docs))["metadata"]["stream"] = "jobs:predict"
        self.assert_finding("is not a bus stream")

    def test_trigger_on_another_group(self) -> None:
        next(triggers(self.docs))["metadata"]["consumerGroup"] = "workers"
        self.assert_finding("consumerGroup 'workers' is not 'ml-workers'")

    def test_trigger_with_undocumented_metadata(self) -> None:
        next(triggers(self.docs))["metadata"]["lagcount"] = "5"
        self.assert_finding("unknown metadata ['lagcount']")

    def test_misspelt_keda_field(self) -> None:
        spec = find(self.docs, "ScaledObject")["spec"]
        spec["pollingIntervall"] = spec.pop("pollingInterval")
        self.assert_finding("unknown fields ['pollingIntervall'] in ScaledObject.spec")

    def test_lag_trigger_that_cannot_wake_from_zero(self) -> None:
        for trigger in triggers(self.docs):
            trigger["metadata"].pop("activationLagCount", None)
        self.assert_finding("lagCount without activationLagCount")

    def test_more_partitions_than_triggers(self) -> None:
        find(self.docs, "ScaledObject")
        find(self.docs, "ConfigMap")["data"]["BUS_PARTITIONS"] = "2"
        self.assert_finding("partition 1 has no backlog and no in-flight trigger")

    def test_in_flight_target_below_the_batch(self) -> None:
        for trigger in triggers(self.docs):
            if "pendingEntriesCount" in trigger["metadata"]:
                trigger["metadata"]["pendingEntriesCount"] = "1"
        self.assert_finding("is below BATCH_SIZE")

    def test_keda_reading_another_secret(self) -> None:
        for target in find(self.docs, "TriggerAuthentication")["spec"]["secretTargetRef"]:
            target["name"] = "other"
        self.assert_finding("Secret other is not the Secret the scaled pods read")

    def test_no_default_deny(self) -> None:
        self.docs.remove(find(self.docs, "NetworkPolicy", "default-deny"))
        self.assert_finding("no default-deny ingress NetworkPolicy")
        self.assert_finding("no default-deny egress NetworkPolicy")

    def test_no_dns_egress(self) -> None:
        self.docs.remove(find(self.docs, "NetworkPolicy", "allow-dns-egress"))
        self.assert_finding("no egress to DNS")

    def test_redis_client_without_egress_to_redis(self) -> None:
        self.docs.remove(find(self.docs, "NetworkPolicy", "allow-redis-egress"))
        self.assert_finding("reads REDIS_URL but no egress to Redis")

    def test_redis_egress_on_another_port(self) -> None:
        policy = find(self.docs, "NetworkPolicy", "allow-redis-egress")
        policy["spec"]["egress"][0]["ports"][0]["port"] = 6380
        self.assert_finding("reads REDIS_URL but no egress to Redis")

    def test_gateway_without_egress_to_the_ml_service(self) -> None:
        self.docs.remove(find(self.docs, "NetworkPolicy", "allow-gateway-egress-to-ml-service"))
        self.assert_finding("ML_URL names Service/ml-service but no egress rule admits")

    def test_egress_to_pods_that_do_not_exist(self) -> None:
        policy = find(self.docs, "NetworkPolicy", "allow-gateway-egress-to-ml-service")
        policy["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"] = {"app": "typo"}
        self.assert_finding("to.podSelector {'matchLabels': {'app': 'typo'}} matches no pod")

    def test_service_unreachable_through_the_policies(self) -> None:
        name = cm.name_of(http_deployment(self.docs))
        policy = find(self.docs, "NetworkPolicy", f"allow-ingress-controller-to-{name}")
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] = "nobody"
        self.assert_finding(f"Service/{name}: no NetworkPolicy admits traffic")

    def test_policy_on_an_undeclared_port(self) -> None:
        name = cm.name_of(http_deployment(self.docs))
        policy = find(self.docs, "NetworkPolicy", f"allow-ingress-controller-to-{name}")
        policy["spec"]["ingress"][0]["ports"][0]["port"] = "debug"
        self.assert_finding("port 'debug' is not a port of")

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

    def test_prod_image_by_tag(self) -> None:
        cont = container(http_deployment(self.docs))
        cont["image"] = cont["image"].split("@", 1)[0] + ":1.0.0"
        self.assertEqual(cm.check(self.docs), [])  # a fixed tag is enough outside prod
        findings = cm.check(self.docs, pinned=True)
        self.assertTrue(any("is not pinned by digest" in f for f in findings), findings)

    def test_a_pinned_digest_passes_a_release(self) -> None:
        digest = "@sha256:" + "ab" * 32
        for doc in self.docs:
            if doc["kind"] in cm.WORKLOAD_KINDS:
                for cont in doc["spec"]["template"]["spec"]["containers"]:
                    if cont["image"].endswith(cm.PLACEHOLDER_DIGEST):
                        cont["image"] = cont["image"].split("@", 1)[0] + digest
        self.assertEqual(cm.check(self.docs, pinned=True, release=True), [])

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

    def test_grace_period_shorter_than_the_drain(self) -> None:
        spec = http_deployment(self.docs)["spec"]["template"]["spec"]
        spec["terminationGracePeriodSeconds"] = 5
        self.assert_finding("terminationGracePeriodSeconds 5 leaves no time")

    def test_no_pre_stop_pause(self) -> None:
        del container(http_deployment(self.docs))["lifecycle"]
        self.assert_finding("no preStop pause")

    def test_literal_secret_value(self) -> None:
        env = container(http_deployment(self.docs))["env"]
        env.append({"name": "API_KEYS", "value": "k"})
        self.assert_finding("API_KEYS has a literal value")

    def test_secret_in_the_config_map(self) -> None:
        find(self.docs, "ConfigMap")["data"]["ML_API_KEY"] = "k"
        self.assert_finding("ML_API_KEY looks like a secret")

    def test_key_missing_from_the_secret(self) -> None:
        data = find(self.docs, "Secret")["data"]
        data.pop("API_KEYS")
        self.assert_finding("has no key API_KEYS")


class CodeAndSources(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_code_on_another_stream_is_reported(self) -> None:
        docs = [{"kind": "ScaledObject"}]
        (self.tmp / "bus.py").write_text('STREAM = "jobs:predict"\nGROUP = "ml-workers"\n')
        self.assertEqual(len(cm.check_code(docs, [self.tmp])), 1)
        (self.tmp / "bus.py").write_text('def key(p):\n    return f"{{jobs:{p}}}:predict"\n')
        self.assertIn("consumer group", " ".join(cm.check_code(docs, [self.tmp])))
        (self.tmp / "bus.ts").write_text('export const GROUP = "ml-workers";\n')
        self.assertEqual(cm.check_code(docs, [self.tmp]), [])

    def copy_sources(self) -> Path:
        root = self.tmp / "k8s"
        shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".venv", ".build"))
        return root

    def test_committed_secret_is_reported(self) -> None:
        root = self.copy_sources()
        (root / "base" / "secret.yaml").write_text("apiVersion: v1\nkind: Secret\n")
        self.assertIn("a Secret in a committed file", " ".join(cm.check_sources(root)))

    def test_secrets_file_not_ignored_is_reported(self) -> None:
        root = self.copy_sources()
        (root / ".gitignore").write_text(".venv/\n")
        self.assertIn("is not listed in", " ".join(cm.check_sources(root)))

    def test_example_with_a_real_looking_secret_is_reported(self) -> None:
        root = self.copy_sources()
        example = root / "overlays" / "prod" / "secrets.env.example"
        example.write_text(example.read_text() + "API_KEYS=abc123\n")
        self.assertIn("API_KEYS is not a replace-with-", " ".join(cm.check_sources(root)))


if __name__ == "__main__":
    unittest.main()
