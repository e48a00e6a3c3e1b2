"""Asynchronous jobs: submit a prediction to the worker queue and read its status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request, Response, status
from redis.asyncio import Redis

from .bus import JOB_ID_PATTERN
from .logs import request_id_var
from .producer import QueueFullError, get_job, submit
from .routes import ERRORS
from .schemas import JobAccepted, JobStatus, PredictRequest, Problem

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERRORS)


def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(get_redis)]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses={503: {"model": Problem, "description": "Queue full: retry after Retry-After s"}},
)
async def create_job(
    body: PredictRequest,
    request: Request,
    response: Response,
    redis: RedisDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=r"^[A-Za-z0-9._:-]{1,128}$",
            description="Repeat a request safely: the same key returns the same job for 24 h",
        ),
    ] = None,
) -> JobAccepted:
    """Queue a prediction; the worker computes it. Poll GET /jobs/{id} for the result."""
    try:
        submitted = await submit(
            redis,
            body,
            request_id=request_id_var.get(),
            idempotency=idempotency_key,
            max_backlog=request.app.state.settings.max_backlog,
        )
    except QueueFullError as exc:
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="job queue is full",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    response.headers["Location"] = f"/jobs/{submitted.id}"
    return JobAccepted(id=submitted.id)


@router.get(
    "/{job_id}",
    response_model=JobStatus,
    response_model_exclude_none=True,
    responses={404: {"model": Problem, "description": "Unknown or expired job"}},
)
async def read_job(
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)], redis: RedisDep
) -> JobStatus:
    """Status of a job, with its result once done or its error once failed."""
    job = await get_job(redis, job_id)
    if job is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="job not found")
    return job
