"""deploy/k8s/monitoring: the alert rules and the dashboards against the code and their tests.

`make k8s-rules` runs the rules' unit tests (tests/rules_test.yaml, promtool); these checks need
no promtool: every alert has a case there that fires, and every metric an alert or a dashboard
queries is one the project's code registers (a renamed metric would leave them silent).
"""

from __future__ import annotations

import json
import re
import unittest
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from .support import CODE, ROOT

RULES = ROOT / "monitoring" / "prometheusrule.yaml"
RULES_TEST = ROOT / "tests" / "rules_test.yaml"
DASHBOARDS = ROOT / "monitoring" / "grafana"
# Series Prometheus makes itself for every target.
BUILT_IN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# The series each metric type exposes (prometheus_client adds _total to a counter's name; the
# Node client takes the name as given, _total included).
SUFFIXES = {
    "Counter": ("_total",),
    "CounterMetricFamily": ("_total",),
    "Gauge": ("",),
    "GaugeMetricFamily": ("",),
    "Histogram": ("_bucket", "_count", "_sum"),
    "Summary": ("_count", "_sum", ""),
}
PYTHON_METRIC = re.compile(r'\b(Counter|Gauge|Histogram|Summary|\w+MetricFamily)\(\s*"([\w:]+)"')
NODE_METRIC = re.compile(r'new (Counter|Gauge|Histogram|Summary)\(\{\s*name: "([\w:]+)"')
# PromQL words that are not metric names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
KEYWORDS |= {"unless", "bool", "offset", "inf", "nan"}


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


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana label_values query) reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"label_values\(\s*([\w:]+)\s*,[^)]*\)", r" \1 ", expr)
    words = re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)(?!\w)(\s*\()?", expr)
    return {m[1] for m in words if not m[2] and m[1].lower() not in KEYWORDS}


def exposed_names(sources: Iterable[Path]) -> set[str]:
    """Every series name the metrics registered in these Python and TypeScript files expose."""
    names = set(BUILT_IN)
    for path in sources:
        pattern = PYTHON_METRIC if path.suffix == ".py" else NODE_METRIC
        for kind, name in pattern.findall(path.read_text(encoding="utf-8")):
            suffixes = SUFFIXES.get(kind, ("",))
            base = name.removesuffix("_total") if "_total" in suffixes else name
            names |= {base + suffix for suffix in suffixes}
    return names


def code_files() -> Iterator[Path]:
    """The services' sources (make k8s-test's K8S_CODE), without their tests and dependencies."""
    skip = {"node_modules", ".venv", "dist", "tests", "test", "__pycache__"}
    for root in CODE or [ROOT.parent.parent]:
        for path in sorted(root.rglob("*")):
            if path.suffix in {".py", ".ts"} and not skip & set(path.parts):
                yield path


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if isinstance(variable.get("query"), str) and variable.get("type") == "query":
            yield variable["query"]
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop()
        panels += panel.get("panels", [])
        yield from (t["expr"] for t in panel.get("targets", []) if "expr" in t)


def queries() -> dict[str, list[str]]:
    """Every query of the alert rules and the dashboards, by where it is."""
    found = {f"{RULES.name} {r['alert']}": [r["expr"]] for r in alert_rules(load_yaml(RULES))}
    for path in sorted(DASHBOARDS.glob("*.json")):
        found[path.name] = list(dashboard_queries(json.loads(path.read_text(encoding="utf-8"))))
    return found


def unknown_metrics(found: dict[str, list[str]], exposed: set[str]) -> list[str]:
    return [
        f"{where}: {name} is not a metric of the code"
        for where, exprs in found.items()
        for name in sorted(set().union(*map(metric_names, exprs)) - exposed)
    ]


class MetricsOfTheCode(unittest.TestCase):
    def setUp(self) -> None:
        self.exposed = exposed_names(code_files())
        self.found = queries()

    def test_every_queried_metric_is_registered_by_the_code(self) -> None:
        self.assertIn("http_server_request_duration_seconds_count", self.exposed)
        self.assertEqual(unknown_metrics(self.found, self.exposed), [])

    def test_every_alert_and_dashboard_queries_a_metric(self) -> None:
        for where, exprs in self.found.items():
            with self.subTest(where=where):
                self.assertTrue(set().union(*map(metric_names, exprs)) - BUILT_IN)

    def test_a_mutated_name_in_a_rule_is_caught(self) -> None:
        where, exprs = next(iter(self.found.items()))
        name = sorted(metric_names(exprs[0]) - BUILT_IN)[0]
        self.found[where] = [exprs[0].replace(name, name + "x")]
        self.assertEqual(
            unknown_metrics(self.found, self.exposed),
            [f"{where}: {name}x is not a metric of the code"],
        )

    def test_suffixes_follow_the_metric_type(self) -> None:
        # A Python counter is read as <name>_total, a histogram by its _bucket/_count/_sum.
        self.assertNotIn("http_server_request_duration_seconds", self.exposed)
        self.assertNotIn("http_server_request_duration_seconds_total", self.exposed)
        self.assertEqual(
            metric_names('sum by (le) (rate(a_bucket{x=~"$v"}[5m])) / on (j) b unless c[1m:]'),
            {"a_bucket", "b", "c"},
        )


class Dashboards(unittest.TestCase):
    def test_uids_are_valid_and_name_the_project(self) -> None:
        """Two projects' dashboards in one Grafana must not replace each other."""
        kustomization = load_yaml(ROOT / "monitoring" / "kustomization.yaml")
        project = kustomization["labels"][0]["pairs"]["app.kubernetes.io/part-of"]
        uids = [
            json.loads(path.read_text(encoding="utf-8"))["uid"]
            for path in sorted(DASHBOARDS.glob("*.json"))
        ]
        self.assertTrue(uids)
        self.assertEqual(len(set(uids)), len(uids))
        for uid in uids:
            with self.subTest(uid=uid):
                self.assertRegex(uid, r"^[a-zA-Z0-9_-]{1,40}$")
                self.assertTrue(uid.startswith(project[:35]), project)


class Readme(unittest.TestCase):
    """The metrics table of the project's README describes this project's code, not another's."""

    def setUp(self) -> None:
        readme = ROOT.parent.parent / "README.md"
        self.rows = {
            line.split("`")[1]: line
            for line in readme.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `")
        }
        self.code = "\n".join(p.read_text(encoding="utf-8") for p in code_files())

    def test_the_route_example_is_a_route_of_the_code(self) -> None:
        row = self.rows["http_server_request_duration_seconds"]
        route = re.search(r"route template \(`([^`]+)`\)", row)
        if route is None:
            self.fail(f"no route template example: {row}")
        self.assertIn(f'"{route[1]}"', self.code)

    def test_the_dependencies_are_the_checks_of_the_code(self) -> None:
        row = self.rows["dependency_up"]
        named = re.search(r"a dependency \((.*?)\) answers", row)
        names = set(re.findall(r"`([a-z][a-z-]*)`", named[1])) if named else set()
        check = r'name: "([a-z-]+)"|readiness_checks\["([a-z-]+)"\]'
        registered = set(re.findall(check, self.code))
        self.assertEqual(names - {n for pair in registered for n in pair}, set())


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
