"""Health, readiness, prediction and model metadata."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from .model import Model
from .schemas import Health, ModelInfo, PredictRequest, PredictResponse, Problem, Readiness

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Malformed request"},
    401: {"model": Problem, "description": "Missing or invalid X-API-Key"},
    413: {"model": Problem, "description": "Request body too large"},
}


def get_model(request: Request) -> Model:
    model: Model = request.app.state.model
    return model


ModelDep = Annotated[Model, Depends(get_model)]

health = APIRouter(tags=["health"])
api = APIRouter(responses=ERRORS)


@health.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@health.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: the model is loaded and dependencies answer",
    responses={503: {"model": Readiness, "description": "Not ready"}},
)
async def readyz(request: Request) -> Readiness | JSONResponse:
    loaded = getattr(request.app.state, "model", None) is not None
    checks = {"model": "ok" if loaded else "not loaded"}
    for name, check in request.app.state.readiness_checks.items():
        try:
            await asyncio.wait_for(check(), timeout=2)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready", with the reason
            log.warning("readiness check failed", extra={"check": name, "error": repr(exc)})
            checks[name] = f"error: {type(exc).__name__}"
    if all(value == "ok" for value in checks.values()):
        return Readiness(status="ready", checks=checks)
    body = Readiness(status="not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=503)


@api.post("/predict", response_model=PredictResponse, tags=["model"])
async def predict(body: PredictRequest, model: ModelDep) -> PredictResponse:
    """Classify one iris flower from its four measurements."""
    # The demo model answers in ~0.2 ms, less than a thread-pool hop costs, so it runs on the
    # event loop. A model that takes milliseconds belongs in `await asyncio.to_thread(...)` or a
    # process pool (or make this a plain `def`, which FastAPI runs in its thread pool).
    prediction = model.predict([body.features])[0]
    return PredictResponse(
        label=prediction.label,
        probabilities=prediction.probabilities,
        model_version=model.metadata.version,
    )


@api.get("/model", response_model=ModelInfo, tags=["model"])
async def model_info(model: ModelDep) -> ModelInfo:
    """Metadata of the loaded model."""
    meta = asdict(model.metadata)
    return ModelInfo(**{**meta, "labels": list(meta["labels"]), "features": list(meta["features"])})
