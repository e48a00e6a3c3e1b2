"""Health, readiness, prediction and model metadata."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse

from .logs import describe
from .model import Model
from .schemas import Health, ModelInfo, PredictRequest, PredictResponse, Problem, Readiness

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Malformed request"},
    401: {"model": Problem, "description": "Missing or invalid X-API-Key"},
    413: {"model": Problem, "description": "Request body too large"},
    415: {"model": Problem, "description": "Request body is not application/json"},
}
# Seconds a client should wait before retrying when a dependency (Redis) is unavailable.
RETRY_AFTER_S = 5


async def require_json_body(request: Request) -> None:
    """Operations that take a body take JSON: any other Content-Type (or none) is a 415."""
    if getattr(request.scope.get("route"), "body_field", None) is None:
        return
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail="request body must be application/json",
        )


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
    summary="Readiness: this process can serve (the model is loaded)",
    responses={503: {"model": Readiness, "description": "Not ready: retry after Retry-After s"}},
)
async def readyz(request: Request, verbose: str | None = None) -> Readiness | JSONResponse:
    """Ready when this process can serve: its model is loaded. A dependency outage (Redis) does
    not make it unready (the routes that need it answer 503 + Retry-After themselves, the others
    keep serving); `?verbose` runs each dependency check and shows its result."""
    loaded = getattr(request.app.state, "model", None) is not None
    checks = {"model": "ok" if loaded else "not loaded"}
    if verbose is not None:
        for name, check in request.app.state.readiness_checks.items():
            try:
                await asyncio.wait_for(check(), timeout=2)
                checks[name] = "ok"
            except Exception as exc:  # shown as unavailable; the reason goes to the log only
                failure = {"check": name, "error": describe(exc)}
                log.warning("dependency check failed", extra=failure)
                checks[name] = "unavailable"
    if loaded:
        return Readiness(status="ready", checks=checks)
    body = Readiness(status="not ready", checks=checks)
    return JSONResponse(
        body.model_dump(), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


@api.post("/predict", response_model=PredictResponse, tags=["model"])
async def predict(body: PredictRequest, model: ModelDep) -> PredictResponse:
    """Classify one iris flower from its four measurements."""
    # The demo model answers in ~0.2 ms, less than a thread-pool hop costs, so it runs on the
    # event loop. A model that takes milliseconds blocks every other request meanwhile: move it
    # off the loop (README, "Heavier models": run_in_threadpool, a process pool or the worker).
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
