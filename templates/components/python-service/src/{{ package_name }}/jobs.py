"""Asynchronous jobs: submit a prediction to the worker queue and read its status.

Jobs belong to the API key that created them: another key's job answers 404 exactly like an
unknown id, and an id issued to this key that Redis no longer has answers 410 (job_ids.py).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request, Response, status

from .bus import JOB_ID_PATTERN, UNAVAILABLE
from .logs import describe, request_id_var
from .producer import (
    IdempotencyConflictError,
    IdempotencyInFlightError,
    Producer,
    QueueFullError,
)
from .routes import ERRORS
from .schemas import JobAccepted, JobStatus, PredictRequest, Problem

log = logging.getLogger(__name__)

UNAVAILABLE_RETRY_AFTER_S = 2
JOB_LOST = (
    "job lost: it was accepted but the job store no longer has it (lost, or expired 24 h after "
    "it was created); submit it again if you still need it"
)
UNAVAILABLE_RESPONSE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": Problem,
        "description": "Job store unavailable or queue full: retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    }
}

router = APIRouter(prefix="/jobs", tags=["jobs"], responses={**ERRORS, **UNAVAILABLE_RESPONSE})


def get_producer(request: Request) -> Producer:
    """One producer per app (it caches the backlog), built on the app's Redis client."""
    state = request.app.state
    producer: Producer | None = getattr(state, "producer", None)
    if producer is None:
        settings = state.settings
        producer = Producer(
            state.redis,
            partitions=settings.bus_partitions,
            max_backlog=settings.jobs_max_backlog,
            deadline_ms=settings.job_deadline_ms,
            events_retention_ms=settings.events_retention_ms,
        )
        state.producer = producer
    return producer


ProducerDep = Annotated[Producer, Depends(get_producer)]


def owner_key(request: Request) -> bytes:
    """sha256 of the caller's API key, set by require_api_key (which answered 401 without one)."""
    digest: bytes | None = getattr(request.state, "api_key_digest", None)
    if digest is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API key",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return digest


OwnerDep = Annotated[bytes, Depends(owner_key)]


def unavailable(exc: BaseException) -> HTTPException:
    """Redis down or timing out: 503 with Retry-After; the details go to the log only."""
    log.error("redis unavailable", extra={"error": describe(exc)})
    return HTTPException(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        detail="service temporarily unavailable",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={
        409: {
            "model": Problem,
            "description": "A request with this Idempotency-Key is still in progress: retry "
            "after Retry-After seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    },
)
async def create_job(
    body: PredictRequest,
    response: Response,
    producer: ProducerDep,
    owner: OwnerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=r"^[A-Za-z0-9._:-]{1,128}$",
            description="Repeat a request safely: the same key and body return the same job for "
            "24 h; the same key with another body is refused (422)",
        ),
    ] = None,
) -> JobAccepted:
    """Queue a prediction; the worker computes it. Poll GET /jobs/{id} for the result."""
    try:
        submitted = await producer.submit(
            body,
            request_id=request_id_var.get(),
            owner_key=owner,
            idempotency=idempotency_key,
        )
    except QueueFullError as exc:
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="job queue is full",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    except IdempotencyConflictError as exc:
        # Shaped like every other 422 (a validation error list), pointing at the header.
        problem = {
            "type": "idempotency_conflict",
            "loc": ["header", "Idempotency-Key"],
            "msg": "this Idempotency-Key was already used with a different request body",
            "input": idempotency_key,
        }
        raise HTTPException(status_code=422, detail=[problem]) from exc
    except IdempotencyInFlightError as exc:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail="a request with this Idempotency-Key is in progress",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    except UNAVAILABLE as exc:
        raise unavailable(exc) from exc
    response.headers["Location"] = f"/jobs/{submitted.id}"
    return JobAccepted(id=submitted.id)


@router.get(
    "/{job_id}",
    response_model=JobStatus,
    response_model_exclude_none=True,
    responses={
        404: {
            "model": Problem,
            "description": "No such job for this API key (unknown, or another key's)",
        },
        410: {
            "model": Problem,
            "description": "The job was accepted for this API key but the job store no longer "
            "has it: lost (e.g. Redis restarted empty) or expired 24 h after it was created "
            "(an id does not say when it was issued)",
        },
    },
)
async def read_job(
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)],
    producer: ProducerDep,
    owner: OwnerDep,
) -> JobStatus:
    """Status of a job, with its result once done or its error once failed (a job still queued
    or running past its deadline is failed first: "deadline exceeded")."""
    try:
        job = await producer.get(job_id, owner)
    except UNAVAILABLE as exc:
        raise unavailable(exc) from exc
    if isinstance(job, JobStatus):
        return job
    if job == "gone":
        raise HTTPException(status_code=status.HTTP_410_GONE, detail=JOB_LOST)
    raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="job not found")
