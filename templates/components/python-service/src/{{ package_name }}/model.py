"""The model behind the API: a small interface (`Model`) and the iris demo that implements it.

Replace the demo by writing a class with the same methods (see README, "Replace the demo model")
and returning it from `load_model`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import joblib
import numpy as np
import sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

log = logging.getLogger(__name__)

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


class ModelLoadError(RuntimeError):
    """The artifact is missing its checksum, fails it, or cannot be read."""


class InjectedFaultError(RuntimeError):
    """Raised by the demo model for a batch holding a MODEL_FAULT_ON row (a test hook)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    probabilities: dict[str, float]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    version: str
    labels: tuple[str, ...]
    features: tuple[str, ...]
    source: Literal["artifact", "trained-in-memory"]
    sha256: str
    accuracy: float | None


class Model(Protocol):
    """What the API and the worker need from a model. Implement it to serve your own."""

    @property
    def metadata(self) -> ModelMetadata: ...

    def predict(self, rows: Sequence[Sequence[float]]) -> list[Prediction]:
        """Predict a batch of rows (vectorised); one Prediction per row, in order."""
        ...


class SklearnClassifier:
    """Any fitted scikit-learn classifier with `predict_proba` (the demo: iris)."""

    def __init__(
        self,
        estimator: Pipeline,
        labels: Sequence[str],
        metadata: ModelMetadata,
        fault_on: float | None = None,
        hang_on: float | None = None,
    ):
        self._estimator = estimator
        self._labels = tuple(labels)
        self._metadata = metadata
        self._fault_on = fault_on
        self._hang_on = hang_on
        self._linear = linear_softmax(estimator)

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, rows: Sequence[Sequence[float]]) -> list[Prediction]:
        if not rows:
            return []
        if self._fault_on is not None and any(row[0] == self._fault_on for row in rows):
            # Test hook (MODEL_FAULT_ON): the whole batch call fails, like a real model would on
            # one bad row; the worker must then fail that row alone.
            raise InjectedFaultError(f"MODEL_FAULT_ON: a row has sepal_length {self._fault_on}")
        if self._hang_on is not None and any(row[0] == self._hang_on for row in rows):
            # Test hook (MODEL_HANG_ON): the call never returns, like a native call that hangs;
            # the worker must give the batch up after COMPUTE_TIMEOUT_MS.
            while True:
                time.sleep(3_600)
        matrix = np.asarray(rows, dtype=np.float64)
        if self._linear is not None:
            probabilities = self._linear(matrix)
        else:
            # Callers validate rows first (bounded, finite floats), so scikit-learn's own
            # finiteness scan is skipped: about a third of the cost of a one-row prediction.
            with sklearn.config_context(assume_finite=True):
                probabilities = self._estimator.predict_proba(matrix)
        predictions = []
        for row in probabilities:
            scores = {label: round(float(p), 6) for label, p in zip(self._labels, row, strict=True)}
            label = self._labels[int(np.argmax(row))]
            predictions.append(Prediction(label=label, probabilities=scores))
        return predictions


def linear_softmax(estimator: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """StandardScaler + multinomial LogisticRegression (the demo) as two numpy operations.

    scikit-learn checks its input on every call, ~0.6 ms, while the arithmetic takes ~20 µs: for
    one-row requests that check is most of the latency. The scaler is folded into the weights,
    and the result is compared with `predict_proba` at load time; any other estimator (or any
    mismatch) returns None and keeps using scikit-learn.
    """
    steps = [step for _, step in getattr(estimator, "steps", [])]
    if len(steps) != 2 or not isinstance(steps[0], StandardScaler):
        return None
    scaler, linear = steps
    if not isinstance(linear, LogisticRegression) or len(linear.classes_) < 3:
        return None
    mean = scaler.mean_ if scaler.with_mean else np.zeros(scaler.n_features_in_)
    scale = scaler.scale_ if scaler.with_std else np.ones(scaler.n_features_in_)
    weights = (linear.coef_ / scale).T
    bias = linear.intercept_ - (mean / scale) @ linear.coef_.T

    def proba(matrix: np.ndarray) -> np.ndarray:
        scores = matrix @ weights + bias
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        result: np.ndarray = scores / scores.sum(axis=1, keepdims=True)
        return result

    probe = np.vstack([mean, mean + scale, mean - 2 * scale, np.zeros_like(mean)])
    with sklearn.config_context(assume_finite=True):
        expected = estimator.predict_proba(probe)
    return proba if np.allclose(proba(probe), expected, rtol=1e-9, atol=1e-12) else None


def train_iris() -> dict[str, Any]:
    """Train the demo deterministically on the iris data bundled with scikit-learn (no download)."""
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=0.2, random_state=0, stratify=iris.target
    )
    estimator = make_pipeline(StandardScaler(), LogisticRegression(random_state=0))
    estimator.fit(x_train, y_train)
    return {
        "name": "iris-logistic-regression",
        "estimator": estimator,
        "labels": [str(name) for name in iris.target_names],
        "features": list(FEATURES),
        "accuracy": round(float(estimator.score(x_test, y_test)), 4),
        "sklearn_version": sklearn.__version__,
    }


def dump_bundle(bundle: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(bundle, buffer)
    return buffer.getvalue()


def save_artifact(bundle: dict[str, Any], path: Path) -> str:
    """Write `path` and `path.sha256` (sha256sum format); return the digest."""
    data = dump_bundle(bundle)
    digest = hashlib.sha256(data).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    checksum_path(path).write_text(f"{digest}  {path.name}\n")
    return digest


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _from_bundle(
    bundle: dict[str, Any],
    digest: str,
    source: Literal["artifact", "trained-in-memory"],
    fault_on: float | None,
    hang_on: float | None,
) -> SklearnClassifier:
    metadata = ModelMetadata(
        name=str(bundle["name"]),
        version=digest[:12],
        labels=tuple(bundle["labels"]),
        features=tuple(bundle["features"]),
        source=source,
        sha256=digest,
        accuracy=bundle.get("accuracy"),
    )
    return SklearnClassifier(bundle["estimator"], bundle["labels"], metadata, fault_on, hang_on)


def load_model(path: Path, *, fault_on: float | None = None, hang_on: float | None = None) -> Model:
    """Load the artifact at `path` after checking its sha256; train in memory if it is absent.

    Joblib artifacts are pickles, which run code when loaded: only load files your own build
    wrote, and never a path that comes from a request. `fault_on` (MODEL_FAULT_ON, tests only)
    makes `predict` raise for any batch with a row whose first feature equals it; `hang_on`
    (MODEL_HANG_ON, tests only) makes it never return for such a batch.
    """
    if not path.exists():
        log.warning("no model artifact, training in memory", extra={"model_path": str(path)})
        bundle = train_iris()
        digest = hashlib.sha256(dump_bundle(bundle)).hexdigest()
        return _from_bundle(bundle, digest, "trained-in-memory", fault_on, hang_on)
    sums = checksum_path(path)
    if not sums.exists():
        raise ModelLoadError(f"{sums} is missing: refusing to load an unverified artifact")
    fields = sums.read_text().split()
    expected = fields[0] if fields else ""
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelLoadError(f"{path}: sha256 {actual} does not match {sums} ({expected})")
    try:
        bundle = joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot load the artifact: {exc}") from exc
    log.info("model loaded", extra={"model_path": str(path), "sha256": actual})
    return _from_bundle(bundle, actual, "artifact", fault_on, hang_on)
