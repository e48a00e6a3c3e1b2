"""check_manifests.network: default deny, allow rules that select something, egress per need."""

from __future__ import annotations

import unittest

import yaml

from check_manifests import check
from check_manifests.manifests import Doc, Manifests, Pod, name_of, namespace_of, selects

from .support import ROOT, BreakProd, find, http_deployment, rendered


class Monitoring(unittest.TestCase):
    def test_monitoring_opens_every_metrics_port_to_the_scraper_only(self) -> None:
        """The base denies all ingress: the metrics port every pod serves (METRICS_PORT) is
        reachable from the monitoring namespace through monitoring/'s policy, and only with it."""
        docs = rendered("prod")
        kustomization = yaml.safe_load((ROOT / "monitoring" / "kustomization.yaml").read_text())
        policy = yaml.safe_load((ROOT / "monitoring" / "networkpolicy.yaml").read_text())
        policy["metadata"]["namespace"] = kustomization["namespace"]
        scraped = Manifests([*docs, policy])
        self.assertEqual(check([*docs, policy], pinned=True), [])

        def admitted(m: Manifests, pod: Pod) -> bool:
            return any(
                selects(p["spec"].get("podSelector"), pod.labels)
                and any(
                    "metrics" in {port.get("port") for port in rule.get("ports") or []}
                    for rule in p["spec"].get("ingress") or []
                )
                for p in m.of_kind("NetworkPolicy")
                if namespace_of(p) == pod.namespace
            )

        self.assertTrue(scraped.pods)
        for pod in scraped.pods:
            with self.subTest(pod=pod.ref):
                (served,) = [c for c in pod.containers if c["name"] == pod.name]
                ports = {p.get("name"): p["containerPort"] for p in served.get("ports") or []}
                env = {e["name"]: e.get("value") for e in served.get("env") or []}
                self.assertEqual(str(ports.get("metrics")), env.get("METRICS_PORT"))
                self.assertTrue(admitted(scraped, pod), "monitoring/ does not admit the scraper")
                self.assertFalse(admitted(Manifests(docs), pod), "metrics open without it")


def public(docs: list[Doc]) -> str:
    return name_of(find(docs, "Ingress"))


class EachRuleCatchesItsMistake(BreakProd):
    def test_no_default_deny(self) -> None:
        self.docs.remove(find(self.docs, "NetworkPolicy", "default-deny"))
        self.assert_finding("no default-deny ingress NetworkPolicy")
        self.assert_finding("no default-deny egress NetworkPolicy")

    def test_ingress_without_a_class(self) -> None:
        del find(self.docs, "Ingress")["spec"]["ingressClassName"]
        self.assert_finding("no ingressClassName")

    def test_ingress_class_whose_controller_is_not_admitted(self) -> None:
        name = f"allow-ingress-controller-to-{public(self.docs)}"
        self.docs.remove(find(self.docs, "NetworkPolicy", name))
        self.assert_finding("no NetworkPolicy admits its controller's namespace ingress-nginx")

    def test_no_dns_egress(self) -> None:
        self.docs.remove(find(self.docs, "NetworkPolicy", "allow-dns-egress"))
        self.assert_finding("no egress to DNS")

    def test_redis_client_without_egress_to_redis(self) -> None:
        self.docs.remove(find(self.docs, "NetworkPolicy", "allow-redis-egress"))
        self.assert_finding("reads REDIS_URL but no egress to Redis")

    def test_redis_egress_open_beyond_the_in_cluster_redis(self) -> None:
        docs = rendered("dev")
        self.assertEqual(check(docs), [])
        del find(docs, "NetworkPolicy", "allow-redis-egress")["spec"]["egress"][0]["to"]
        findings = check(docs)
        self.assertTrue(any("open to addresses outside" in f for f in findings), findings)

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
        name = name_of(http_deployment(self.docs))
        policy = find(self.docs, "NetworkPolicy", f"allow-ingress-controller-to-{name}")
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] = "nobody"
        self.assert_finding(f"Service/{name}: no NetworkPolicy admits traffic")

    def test_policy_on_an_undeclared_port(self) -> None:
        name = name_of(http_deployment(self.docs))
        policy = find(self.docs, "NetworkPolicy", f"allow-ingress-controller-to-{name}")
        policy["spec"]["ingress"][0]["ports"][0]["port"] = "debug"
        self.assert_finding("port 'debug' is not a port of")
