"""check_manifests.workloads: selectors, probes, autoscalers, graceful shutdown."""

from __future__ import annotations

import copy
import unittest

from check_manifests import check

from .support import ROOT, BreakProd, container, find, http_deployment, rendered


class RenderedOverlays(unittest.TestCase):
    def test_dev_and_prod_have_no_findings(self) -> None:
        for overlay in ("dev", "prod"):
            with self.subTest(overlay=overlay):
                self.assertEqual(check(rendered(overlay), pinned=overlay == "prod"), [])


class Readme(unittest.TestCase):
    def test_the_cpu_requests_it_states_are_the_overlays(self) -> None:
        """The README's sizing advice (HTTP_PROCESSES=1 for the CPU request) quotes each
        overlay's request of the public Deployment, not a number of its own."""
        readme = ROOT.parent.parent / "README.md"
        lines = [line for line in readme.read_text().splitlines() if "HTTP_PROCESSES=1" in line]
        if not lines:
            raise unittest.SkipTest("the README gives no CPU sizing advice")
        for overlay in ("dev", "prod"):
            cpu = container(http_deployment(rendered(overlay)))["resources"]["requests"]["cpu"]
            for line in lines:
                with self.subTest(overlay=overlay):
                    self.assertIn(str(cpu), line)


class EachRuleCatchesItsMistake(BreakProd):
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

    def test_deployment_without_a_pdb(self) -> None:
        for deployment in [d for d in self.docs if d.get("kind") == "Deployment"]:
            name = deployment["metadata"]["name"]
            self.docs.remove(find(self.docs, "PodDisruptionBudget", name))
            self.assert_finding(f"Deployment/{name}: no PodDisruptionBudget")

    def test_probe_on_an_undeclared_port(self) -> None:
        container(http_deployment(self.docs))["readinessProbe"]["httpGet"]["port"] = 9999
        self.assert_finding("readinessProbe port 9999 is not a container port")

    def test_liveness_on_the_readiness_endpoint(self) -> None:
        container(http_deployment(self.docs))["livenessProbe"]["httpGet"]["path"] = "/readyz"
        self.assert_finding("livenessProbe is not GET /healthz")

    def test_http_service_without_liveness(self) -> None:
        del container(http_deployment(self.docs))["livenessProbe"]
        self.assert_finding("no livenessProbe")

    def test_two_autoscalers_on_one_deployment(self) -> None:
        hpa = copy.deepcopy(find(self.docs, "HorizontalPodAutoscaler"))
        hpa["metadata"]["name"] = "second"
        self.docs.append(hpa)
        self.assert_finding("more than one autoscaler")

    def test_autoscaler_of_a_missing_workload(self) -> None:
        find(self.docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] = "typo"
        self.assert_finding("the target Deployment/typo does not exist")

    def test_fixed_replicas_under_an_autoscaler(self) -> None:
        http_deployment(self.docs)["spec"]["replicas"] = 2
        self.assert_finding("sets spec.replicas although")

    def test_cpu_autoscaling_without_cpu_requests(self) -> None:
        del container(http_deployment(self.docs))["resources"]["requests"]["cpu"]
        self.assert_finding("scales on CPU but")

    def test_grace_period_shorter_than_the_drain(self) -> None:
        spec = http_deployment(self.docs)["spec"]["template"]["spec"]
        spec["terminationGracePeriodSeconds"] = 5
        self.assert_finding("terminationGracePeriodSeconds 5 leaves no time")

    def test_no_pre_stop_pause(self) -> None:
        del container(http_deployment(self.docs))["lifecycle"]
        self.assert_finding("no preStop pause")
