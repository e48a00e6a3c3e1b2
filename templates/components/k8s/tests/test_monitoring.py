"""deploy/k8s/monitoring: the alert rules and the dashboards against the code and their tests.

`make k8s-rules` runs the rules' unit tests (tests/rules_test.yaml, promtool); these checks need
no promtool: every alert has a case there that fires.
"""

from __future__ import annotations

import unittest
from pathlib import Path
from typing import Any

import yaml

from .support import ROOT

RULES = ROOT / "monitoring" / "prometheusrule.yaml"
RULES_TEST = ROOT / "tests" / "rules_test.yaml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerting rules of a PrometheusRule object."""
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def firing_cases(tests: dict[str, Any]) -> set[str]:
    """The alert names that some case of a promtool test file expects to fire."""
    return {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }


class EveryAlertIsTested(unittest.TestCase):
    def test_every_alert_has_a_case_that_fires(self) -> None:
        alerts = {rule["alert"] for rule in alert_rules(load_yaml(RULES))}
        self.assertTrue(alerts)
        self.assertEqual(alerts - firing_cases(load_yaml(RULES_TEST)), set())

    def test_a_missing_case_is_caught(self) -> None:
        tests = load_yaml(RULES_TEST)
        for test in tests["tests"]:
            test["alert_rule_test"] = [
                c for c in test.get("alert_rule_test", []) if c["alertname"] != "DependencyDown"
            ]
        self.assertNotIn("DependencyDown", firing_cases(tests))
