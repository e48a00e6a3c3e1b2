"""check_manifests.keda and the KEDA objects' schemas: the worker's ScaledObject watches the
stream and group the code uses, on every partition, with credentials from the pods' Secret."""

from __future__ import annotations

import copy
import shutil
import tempfile
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from check_manifests import check, schemas
from check_manifests.keda import check_code
from check_manifests.manifests import Doc

from .support import CODE, BreakProd, container, find, rendered

K8S_VERSION = "1.32"


def triggers(docs: list[Doc]) -> Iterator[dict[str, Any]]:
    yield from find(docs, "ScaledObject")["spec"]["triggers"]


class Schemas(unittest.TestCase):
    def assert_invalid(self, doc: Doc, text: str) -> None:
        findings = list(schemas.validate(doc, K8S_VERSION))
        self.assertTrue(any(text in f for f in findings), f"no finding with {text!r}: {findings}")

    def test_keda_objects_are_checked_against_a_vendored_schema(self) -> None:
        kinds = {doc["kind"] for doc in rendered("prod") if schemas.crd_schema(doc)}
        self.assertEqual(kinds, {"ScaledObject", "TriggerAuthentication"})

    def test_misspelt_scaledobject_field(self) -> None:
        scaled = find(rendered("prod"), "ScaledObject")
        scaled["spec"]["pollingIntervall"] = scaled["spec"].pop("pollingInterval")
        self.assert_invalid(scaled, "spec: Additional properties are not allowed")

    def test_scaledobject_field_of_the_wrong_type(self) -> None:
        scaled = find(rendered("prod"), "ScaledObject")
        scaled["spec"]["minReplicaCount"] = "zero"
        self.assert_invalid(scaled, "spec.minReplicaCount: 'zero' is not of type 'integer'")

    def test_trigger_metadata_that_is_not_a_string(self) -> None:
        scaled = find(rendered("prod"), "ScaledObject")
        next(triggers([scaled]))["metadata"]["lagCount"] = 256
        self.assert_invalid(scaled, "spec.triggers.0.metadata.lagCount: 256 is not of type")

    def test_misspelt_trigger_authentication_field(self) -> None:
        auth = find(rendered("prod"), "TriggerAuthentication")
        auth["spec"]["secretTargetRef"][0]["secret"] = auth["spec"]["secretTargetRef"][0]["name"]
        self.assert_invalid(auth, "'secret' was unexpected")

    def test_keda_api_version_without_a_schema(self) -> None:
        scaled = find(rendered("prod"), "ScaledObject")
        scaled["apiVersion"] = "keda.sh/v1beta1"
        self.assert_invalid(scaled, "Couldn't find schema for kind ScaledObject")


class EachRuleCatchesItsMistake(BreakProd):
    def test_worker_without_liveness(self) -> None:
        del container(find(self.docs, "Deployment", "worker"))["livenessProbe"]
        self.assert_finding("no livenessProbe")

    def test_hpa_next_to_the_scaled_object(self) -> None:
        hpa = copy.deepcopy(find(self.docs, "HorizontalPodAutoscaler"))
        hpa["spec"]["scaleTargetRef"]["name"] = "worker"
        self.docs.append(hpa)
        self.assert_finding("Deployment/worker: more than one autoscaler")

    def test_trigger_of_another_scaler(self) -> None:
        next(triggers(self.docs))["type"] = "redis"
        self.assert_finding("type 'redis' is not a Redis Streams scaler")

    def test_trigger_on_another_stream(self) -> None:
        next(triggers(self.docs))["metadata"]["stream"] = "jobs:predict"
        self.assert_finding("is not a bus stream")

    def test_trigger_on_another_group(self) -> None:
        next(triggers(self.docs))["metadata"]["consumerGroup"] = "workers"
        self.assert_finding("consumerGroup 'workers' is not 'ml-workers'")

    def test_trigger_with_metadata_the_scaler_ignores(self) -> None:
        next(triggers(self.docs))["metadata"]["lagcount"] = "5"
        self.assert_finding("metadata ['lagcount'] unknown to the redis-streams scaler")

    def test_trigger_metadata_from_env_is_known(self) -> None:
        next(triggers(self.docs))["metadata"]["passwordFromEnv"] = "REDIS_PASSWORD"
        self.assertFalse([f for f in check(self.docs) if "unknown to" in f])

    def test_lag_trigger_that_cannot_wake_from_zero(self) -> None:
        for trigger in triggers(self.docs):
            trigger["metadata"].pop("activationLagCount", None)
        self.assert_finding("lagCount without activationLagCount")

    def test_more_partitions_than_triggers(self) -> None:
        find(self.docs, "ConfigMap")["data"]["BUS_PARTITIONS"] = "2"
        self.assert_finding("partition 1 has no backlog and no in-flight trigger")

    def test_in_flight_target_below_the_batch(self) -> None:
        for trigger in triggers(self.docs):
            if "pendingEntriesCount" in trigger["metadata"]:
                trigger["metadata"]["pendingEntriesCount"] = "1"
        self.assert_finding("is below BATCH_SIZE")

    def test_trigger_without_authentication(self) -> None:
        del next(triggers(self.docs))["authenticationRef"]
        self.assert_finding("no authenticationRef")

    def test_keda_reading_another_secret(self) -> None:
        for target in find(self.docs, "TriggerAuthentication")["spec"]["secretTargetRef"]:
            target["name"] = "other"
        self.assert_finding("Secret other is not the Secret the scaled pods read")

    def test_keda_reading_a_key_the_secret_lacks(self) -> None:
        find(self.docs, "Secret")["data"].pop("REDIS_PASSWORD")
        self.assert_finding("has no key REDIS_PASSWORD")

    def test_authentication_parameter_the_scaler_ignores(self) -> None:
        find(self.docs, "TriggerAuthentication")["spec"]["secretTargetRef"][2]["parameter"] = "pw"
        self.assert_finding("parameter 'pw' unknown to redis-streams")


class Code(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_the_code_uses_the_stream_and_group_of_the_triggers(self) -> None:
        docs = rendered("dev")
        self.assertTrue(CODE, "K8S_CODE names no source directory of the bus code")
        self.assertEqual(check_code(docs, CODE), [])

    def test_code_on_another_stream_is_reported(self) -> None:
        docs = [{"kind": "ScaledObject"}]
        (self.tmp / "bus.py").write_text('STREAM = "jobs:predict"\nGROUP = "ml-workers"\n')
        self.assertEqual(len(check_code(docs, [self.tmp])), 1)
        (self.tmp / "bus.py").write_text('def key(p):\n    return f"{{jobs:{p}}}:predict"\n')
        self.assertIn("consumer group", " ".join(check_code(docs, [self.tmp])))
        (self.tmp / "bus.ts").write_text('export const GROUP = "ml-workers";\n')
        self.assertEqual(check_code(docs, [self.tmp]), [])
