"""check_manifests.secrets: secrets in the rendered objects and in the committed sources."""

from __future__ import annotations

import shutil
import tempfile
import unittest
from pathlib import Path

from check_manifests.secrets import check_sources

from .support import ROOT, BreakProd, container, find, http_deployment


class EachRuleCatchesItsMistake(BreakProd):
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


class CommittedSources(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_committed_sources_hold_no_secret(self) -> None:
        self.assertEqual(check_sources(ROOT), [])

    def copy_sources(self) -> Path:
        root = self.tmp / "k8s"
        shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".venv", ".build"))
        return root

    def test_committed_secret_is_reported(self) -> None:
        root = self.copy_sources()
        (root / "base" / "secret.yaml").write_text("apiVersion: v1\nkind: Secret\n")
        self.assertIn("a Secret in a committed file", " ".join(check_sources(root)))

    def test_secrets_file_not_ignored_is_reported(self) -> None:
        root = self.copy_sources()
        (root / ".gitignore").write_text(".venv/\n")
        self.assertIn("is not listed in", " ".join(check_sources(root)))

    def test_example_with_a_real_looking_secret_is_reported(self) -> None:
        root = self.copy_sources()
        example = root / "overlays" / "prod" / "secrets.env.example"
        example.write_text(example.read_text() + "API_KEYS=abc123\n")
        self.assertIn("API_KEYS is not a replace-with-", " ".join(check_sources(root)))
