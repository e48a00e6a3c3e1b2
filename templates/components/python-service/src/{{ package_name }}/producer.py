"""Producer side of the job bus: enqueue a prediction job and read its status."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import cast

from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from . import metrics, tracing
from .bus import (
    CLOCK,
    GROUP,
    JOB_TTL_S,
    UNAVAILABLE,
    Client,
    Partition,
    ensure_groups,
    event_fields,
    event_json,
    idempotency_key,
    now_ms,
    partition_index,
    partitions,
)
from .schemas import JobStatus, PredictRequest, PredictResponse

log = logging.getLogger(__name__)

BACKLOG_CACHE_S = 1.0


class QueueFullError(Exception):
    """Too many jobs wait already; the caller should retry after `retry_after` seconds."""

    def __init__(self, backlog: int, retry_after: int = 5) -> None:
        super().__init__(f"{backlog} jobs are waiting")
        self.backlog = backlog
        self.retry_after = retry_after


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True, slots=True)
class Submitted:
    id: str
    created: bool


@dataclass(slots=True)
class Producer:
    """Enqueues jobs on the bus; one per process (it caches each partition's backlog ≤ 1 s)."""

    redis: Client
    partitions: int = 1
    max_backlog: int = 50_000
    deadline_ms: int = 300_000
    events_retention_ms: int = 600_000
    _parts: list[Partition] = field(init=False)
    # partition index -> (backlog when read + jobs enqueued here since, monotonic expiry)
    _backlog: dict[int, tuple[int, float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._parts = partitions(self.partitions)

    def partition(self, job_id: str) -> Partition:
        return self._parts[partition_index(job_id, self.partitions)]

    async def backlog(self, part: Partition) -> int:
        """Entries not yet delivered (lag) plus delivered but not acknowledged (pending)."""
        cached = self._backlog.get(part.index)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        value = await self._read_backlog(part)
        self._backlog[part.index] = (value, time.monotonic() + BACKLOG_CACHE_S)
        return value

    async def _read_backlog(self, part: Partition) -> int:
        try:
            groups = await self.redis.xinfo_groups(part.stream)
        except ResponseError:  # the stream does not exist yet
            groups = []
        for group in groups:
            if group["name"] == GROUP:
                lag = group.get("lag")
                if lag is None:  # Redis cannot tell after deletions: count the whole stream
                    lag = await self.redis.xlen(part.stream)
                return int(lag) + int(group["pending"])
        # Whichever side starts first creates the group (at id 0, so nothing is skipped).
        await ensure_groups(self.redis, [part])
        return int(await self.redis.xlen(part.stream))

    async def submit(
        self,
        request: PredictRequest,
        *,
        request_id: str | None = None,
        api_key: str = "",
        idempotency: str | None = None,
    ) -> Submitted:
        """Enqueue a predict job: hash, deadline, stream entry and `queued` event in one MULTI.

        Raises QueueFullError when the partition's backlog reached `max_backlog` (the stream is
        never trimmed past an undelivered or pending entry, so backpressure is what bounds it),
        IdempotencyConflictError when `idempotency` was used with another body, and one of
        bus.UNAVAILABLE when Redis cannot be reached.
        """
        job_id = str(uuid.uuid4())
        part = self.partition(job_id)
        waiting = await self.backlog(part)
        if waiting >= self.max_backlog:
            raise QueueFullError(waiting)
        payload = request.model_dump_json()
        idem: str | None = None
        if idempotency is not None:
            idem = idempotency_key(api_key, idempotency)
            digest = hashlib.sha256(payload.encode()).hexdigest()
            previous = await self.redis.set(
                idem, f"{job_id} {digest}", nx=True, get=True, ex=JOB_TTL_S
            )
            if isinstance(previous, str):
                first_id, _, first_digest = previous.partition(" ")
                if first_digest != digest:
                    raise IdempotencyConflictError
                return Submitted(id=first_id, created=False)
        await CLOCK.refresh(self.redis)  # deadlines are checked by workers on other hosts
        created = now_ms()
        entry: dict[FieldT, EncodableT] = {
            "v": "1",
            "job_id": job_id,
            "type": "predict",
            "payload": payload,
            "created_at": str(created),
        }
        if request_id:
            entry["request_id"] = request_id[:128]
        if traceparent := tracing.current_traceparent():
            entry["traceparent"] = traceparent
        deadline = created + self.deadline_ms
        key = part.job(job_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    key,
                    mapping={
                        "status": "queued",
                        "created_at": str(created),
                        "deadline": str(deadline),
                        "request_id": request_id or "",
                    },
                )
                pipe.expire(key, JOB_TTL_S)
                pipe.zadd(part.deadlines, {job_id: deadline})
                pipe.xadd(part.stream, entry)  # no MAXLEN: producers never trim the job stream
                pipe.xadd(
                    part.events,
                    event_fields(job_id, event_json(job_id, "queued", "queued")),
                    minid=str(created - self.events_retention_ms),
                    approximate=True,
                )
                await pipe.execute()
        except UNAVAILABLE:
            if idem is not None:  # a retry with the same key must be able to create the job
                await self._forget(idem)
            raise
        self._backlog[part.index] = (waiting + 1, self._backlog[part.index][1])
        metrics.JOBS_ACCEPTED.inc()
        return Submitted(id=job_id, created=True)

    async def _forget(self, idem: str) -> None:
        try:
            await self.redis.delete(idem)
        except UNAVAILABLE as exc:
            log.error("cannot remove the idempotency key", extra={"error": repr(exc)})

    async def get(self, job_id: str) -> JobStatus | None:
        fields = cast(
            "dict[str, str]", await self.redis.hgetall(self.partition(job_id).job(job_id))
        )
        status = fields.get("status")
        if status is None:
            return None
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
