"""Request and response models: strict, closed, bounded (they are the OpenAPI contract)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# One iris measurement in centimetres; finite and bounded so the model never sees absurd input.
Feature = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class PredictRequest(Strict):
    features: list[Feature] = Field(
        min_length=4,
        max_length=4,
        description="[sepal_length, sepal_width, petal_length, petal_width] in cm",
        examples=[[5.1, 3.5, 1.4, 0.2]],
    )


class PredictResponse(Strict):
    label: str = Field(min_length=1, examples=["setosa"])
    probabilities: dict[str, Probability] = Field(min_length=1)
    model_version: str = Field(min_length=1)


class ModelInfo(Strict):
    name: str
    version: str
    labels: list[str]
    features: list[str]
    source: Literal["artifact", "trained-in-memory"]
    sha256: str
    accuracy: float | None = Field(description="hold-out accuracy measured at training time")


class Health(Strict):
    status: Literal["ok"] = "ok"


class Readiness(Strict):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


class Problem(Strict):
    detail: str


JobState = Literal["queued", "running", "done", "failed"]


class JobAccepted(Strict):
    id: str


class JobStatus(Strict):
    id: str
    status: JobState
    result: PredictResponse | None = None
    error: str | None = None
