"""Producer side of the job bus: enqueue a prediction job and read its status."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .bus import (
    EVENTS_MAXLEN,
    EVENTS_STREAM,
    GROUP,
    JOB_TTL_S,
    STREAM,
    STREAM_MAXLEN,
    ensure_group,
    event_fields,
    idempotency_key,
    job_key,
    now_ms,
)
from .schemas import JobStatus, PredictRequest, PredictResponse


class QueueFullError(Exception):
    """Too many jobs wait already; the caller should retry after `retry_after` seconds."""

    def __init__(self, backlog: int, retry_after: int = 5) -> None:
        super().__init__(f"{backlog} jobs are waiting")
        self.backlog = backlog
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Submitted:
    id: str
    created: bool


async def backlog(redis: Redis) -> int:
    """Entries not yet delivered (lag) plus delivered but not acknowledged (pending)."""
    try:
        groups = await redis.xinfo_groups(STREAM)
    except ResponseError:  # the stream does not exist yet
        groups = []
    for group in groups:
        if group["name"] == GROUP:
            lag = group.get("lag")
            if lag is None:  # Redis cannot tell after deletions; count the whole stream
                lag = await redis.xlen(STREAM)
            return int(lag) + int(group["pending"])
    # Whichever side starts first creates the group (at id 0, so nothing is skipped).
    await ensure_group(redis)
    return int(await redis.xlen(STREAM))


async def submit(
    redis: Redis,
    request: PredictRequest,
    *,
    request_id: str | None = None,
    idempotency: str | None = None,
    max_backlog: int = 50_000,
) -> Submitted:
    """Enqueue a predict job: job hash + stream entry + `queued` event in one transaction.

    With an idempotency key, a repeated call within 24 h returns the first job's id.
    Raises QueueFullError instead of growing the stream towards its MAXLEN, where trimming
    would silently drop entries still pending.
    """
    waiting = await backlog(redis)
    if waiting > max_backlog:
        raise QueueFullError(waiting)
    job_id = str(uuid.uuid4())
    if idempotency is not None:
        previous = await redis.set(
            idempotency_key(idempotency), job_id, nx=True, get=True, ex=JOB_TTL_S
        )
        if isinstance(previous, str):
            return Submitted(id=previous, created=False)
    created_at = str(now_ms())
    entry = {
        "v": "1",
        "job_id": job_id,
        "type": "predict",
        "payload": request.model_dump_json(),
        "created_at": created_at,
    }
    if request_id:
        entry["request_id"] = request_id[:128]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            job_key(job_id),
            mapping={"status": "queued", "created_at": created_at, "request_id": request_id or ""},
        )
        pipe.expire(job_key(job_id), JOB_TTL_S)
        pipe.xadd(STREAM, entry, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
        pipe.xadd(
            EVENTS_STREAM,
            event_fields(job_id, "queued", "queued"),  # type: ignore[arg-type]
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )
        await pipe.execute()
    return Submitted(id=job_id, created=True)


async def get_job(redis: Redis, job_id: str) -> JobStatus | None:
    fields = cast("dict[str, str]", await redis.hgetall(job_key(job_id)))
    if not fields or "status" not in fields:
        return None
    status = fields["status"]
    return JobStatus.model_validate(
        {
            "id": job_id,
            "status": status,
            "result": PredictResponse.model_validate_json(fields["result"])
            if status == "done" and fields.get("result")
            else None,
            "error": (fields.get("error") or "unknown error") if status == "failed" else None,
        }
    )
