"""check_manifests.schemas: every rendered object against its schema (kubernetes-validate for the
Kubernetes kinds, the vendored CRD schemas for the custom resources, nothing else admitted)."""

from __future__ import annotations

import unittest

from check_manifests import schemas
from check_manifests.manifests import Doc

from .support import container, find, http_deployment, rendered

K8S_VERSION = "1.32"


class SchemaCase(unittest.TestCase):
    def assert_invalid(self, doc: Doc, text: str) -> None:
        findings = list(schemas.validate(doc, K8S_VERSION))
        self.assertTrue(any(text in f for f in findings), f"no finding with {text!r}: {findings}")


class RenderedObjects(SchemaCase):
    def test_every_rendered_object_is_valid(self) -> None:
        for name in ("dev", "prod", "monitoring"):
            with self.subTest(rendered=name):
                self.assertEqual(schemas.check(rendered(name), K8S_VERSION), [])

    def test_the_custom_resources_are_checked_against_a_vendored_schema(self) -> None:
        kinds = {doc["kind"] for doc in rendered("monitoring") if schemas.crd_schema(doc)}
        self.assertEqual(kinds, {"PodMonitor", "PrometheusRule"})

    def test_misspelt_field_of_a_kubernetes_kind(self) -> None:
        deployment = http_deployment(rendered("prod"))
        container(deployment)["imagePullPolicyy"] = "Always"
        self.assert_invalid(deployment, "'imagePullPolicyy' was unexpected")

    def test_misspelt_podmonitor_field(self) -> None:
        monitor = find(rendered("monitoring"), "PodMonitor")
        monitor["spec"]["podMetricsEndpoint"] = monitor["spec"].pop("podMetricsEndpoints")
        self.assert_invalid(monitor, "spec: Additional properties are not allowed")

    def test_podmonitor_interval_that_is_no_duration(self) -> None:
        monitor = find(rendered("monitoring"), "PodMonitor")
        monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
        self.assert_invalid(monitor, "spec.podMetricsEndpoints.0.interval: '15 seconds' does not")

    def test_podmonitor_port_of_the_wrong_type(self) -> None:
        monitor = find(rendered("monitoring"), "PodMonitor")
        monitor["spec"]["podMetricsEndpoints"][0]["port"] = 9464
        self.assert_invalid(monitor, "9464 is not of type 'string'")

    def test_alert_rule_with_an_unknown_field(self) -> None:
        rule = find(rendered("monitoring"), "PrometheusRule")
        rule["spec"]["groups"][0]["rules"][0]["summary"] = "moved out of annotations"
        self.assert_invalid(rule, "spec.groups.0.rules.0: Additional properties are not allowed")

    def test_kind_without_a_schema_is_refused(self) -> None:
        widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        self.assert_invalid(widget, "Widget/w: Couldn't find schema for kind Widget")


class Structural(unittest.TestCase):
    def test_undeclared_fields_are_refused_unless_kept(self) -> None:
        schema = {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
                "raw": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"b": {"type": "string"}},
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "note": {"type": "string", "nullable": True},
            },
        }
        strict = schemas.structural(schema)
        self.assertIs(strict["additionalProperties"], False)
        self.assertIs(strict["properties"]["spec"]["additionalProperties"], False)
        self.assertIs(strict["properties"]["raw"]["additionalProperties"], True)
        self.assertEqual(strict["properties"]["labels"]["additionalProperties"], {"type": "string"})
        self.assertEqual(strict["properties"]["note"]["type"], ["string", "null"])
