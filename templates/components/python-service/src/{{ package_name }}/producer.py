"""Producer side of the job bus: enqueue a prediction job and read its status for its owner."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from . import metrics, tracing
from .bus import (
    CLOCK,
    GROUP,
    JOB_TTL_S,
    TERMINAL,
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
from .job_ids import NO_OWNER, issue_job_id, issued_to, owner_id
from .schemas import JobStatus, PredictRequest, PredictResponse

log = logging.getLogger(__name__)

BACKLOG_CACHE_S = 1.0
DEADLINE_EXCEEDED = "deadline exceeded"
# Fails one job still queued or running past its deadline, as the workers' sweep does: status
# failed, error "deadline exceeded", finished_at now, processed + 1, a `failed` event; the job
# leaves `deadlines` either way. A lost job (no hash) is never re-created. Atomic, so a worker
# committing the same job comes wholly before or after it. Returns {failed?, the hash after}.
# KEYS: deadlines, events, job hash. ARGV: now, events MINID, job id, failed event.
EXPIRE_SCRIPT = f"""
local failed = 0
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
if score and tonumber(score) <= tonumber(ARGV[1]) then
  local status = redis.call('HGET', KEYS[3], 'status')
  if status and status ~= 'done' and status ~= 'failed' then
    redis.call('HSET', KEYS[3], 'status', 'failed', 'error', '{DEADLINE_EXCEEDED}',
      'finished_at', ARGV[1])
    redis.call('HINCRBY', KEYS[3], 'processed', 1)
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[2], '*', 'id', ARGV[3], 'event', ARGV[4])
    failed = 1
  end
  redis.call('ZREM', KEYS[1], ARGV[3])
end
return {{failed, redis.call('HGETALL', KEYS[3])}}
"""
# Removes an idempotency key only while it still holds this request's claim (KEYS: the key;
# ARGV: the value this request set): a later request's claim is never removed.
RELEASE_IF_EQUAL = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
# An idempotency key younger than this whose job does not exist yet belongs to a request still in
# flight; an older one was left by a request that died between the claim and the write.
IDEMPOTENCY_IN_FLIGHT_S = 10.0
# What `Producer.get` answers when it has no job to show: "unknown" (never issued to this caller:
# unknown, or another key's job, 404) or "gone" (issued to this caller, no longer in Redis, 410).
Missing = Literal["unknown", "gone"]


class QueueFullError(Exception):
    """Too many jobs wait already; the caller should retry after `retry_after` seconds."""

    def __init__(self, backlog: int, retry_after: int = 5) -> None:
        super().__init__(f"{backlog} jobs are waiting")
        self.backlog = backlog
        self.retry_after = retry_after


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with a different request body."""


class IdempotencyInFlightError(Exception):
    """A request with this Idempotency-Key is still being enqueued: retry after `retry_after` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


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
    # partition index -> the measurement in flight, which the requests of a burst wait for
    _measuring: dict[int, asyncio.Task[int]] = field(init=False, default_factory=dict)
    _expire: AsyncScript = field(init=False)
    _release: AsyncScript = field(init=False)

    def __post_init__(self) -> None:
        self._parts = partitions(self.partitions)
        self._expire = self.redis.register_script(EXPIRE_SCRIPT)
        self._release = self.redis.register_script(RELEASE_IF_EQUAL)

    def partition(self, job_id: str) -> Partition:
        return self._parts[partition_index(job_id, self.partitions)]

    async def backlog(self, part: Partition) -> int:
        """Entries not yet delivered (lag) plus delivered but not acknowledged (pending), as
        measured at most BACKLOG_CACHE_S ago plus the jobs admitted here since. One measurement
        per partition at a time: the requests that arrive meanwhile wait for it."""
        cached = self._backlog.get(part.index)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        task = self._measuring.get(part.index)
        if task is None:
            task = asyncio.ensure_future(self._measure(part))
            self._measuring[part.index] = task
        # Shielded: a request cancelled while waiting (its client left) must not cancel the
        # measurement the others wait for.
        return await asyncio.shield(task)

    async def _measure(self, part: Partition) -> int:
        try:
            value = await self._read_backlog(part)
            self._backlog[part.index] = (value, time.monotonic() + BACKLOG_CACHE_S)
            return value
        finally:
            self._measuring.pop(part.index, None)

    async def _admit(self, part: Partition) -> None:
        """Counts one job against the partition's backlog, or raises QueueFullError. The check
        and the count have no await between them, so the requests of a burst are admitted one by
        one against the same estimate (checked before and counted after the write, they all saw
        the same backlog and all got in, far past the limit). A job admitted but not written
        (a replayed idempotency key, Redis unreachable) stays counted until the next
        measurement, at most BACKLOG_CACHE_S later: the estimate errs towards refusing."""
        await self.backlog(part)
        waiting, expires = self._backlog[part.index]
        if waiting >= self.max_backlog:
            raise QueueFullError(waiting)
        self._backlog[part.index] = (waiting + 1, expires)

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
        owner_key: bytes = NO_OWNER,
        idempotency: str | None = None,
    ) -> Submitted:
        """Enqueue a predict job: hash, deadline, stream entry and `queued` event in one MULTI.

        `owner_key` is the sha256 of the caller's API key: the job's id is tagged with it and
        its hash records its owner (job_ids.owner_id, never the key), so only that key reads it.

        Raises QueueFullError when the partition's backlog reached `max_backlog` (the stream is
        never trimmed past an undelivered or pending entry, so backpressure is what bounds it),
        IdempotencyConflictError when `idempotency` was used with another body,
        IdempotencyInFlightError while the request that took `idempotency` is still writing its
        job, and one of bus.UNAVAILABLE when Redis cannot be reached.
        """
        job_id = issue_job_id(owner_key)
        part = self.partition(job_id)
        await self._admit(part)
        payload = request.model_dump_json()
        # Deadlines are checked by workers on other hosts: Redis's clock. Read before the
        # idempotency key is taken, so a Redis that cannot answer leaves nothing behind.
        await CLOCK.refresh(self.redis)
        idem: tuple[str, str] | None = None
        if idempotency is not None:
            digest = hashlib.sha256(payload.encode()).hexdigest()
            idem = (idempotency_key(owner_key, idempotency), f"{job_id} {digest}")
            earlier = await self._claim(*idem)
            if earlier is not None:
                return Submitted(id=earlier, created=False)
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
                        "owner": owner_id(owner_key),
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
                await self._forget(*idem)
            raise
        metrics.JOBS_ACCEPTED.inc()
        return Submitted(id=job_id, created=True)

    async def _claim(self, idem: str, value: str) -> str | None:
        """Takes the idempotency key for this request (None), or returns the id of the job an
        earlier request with the same key and body created.

        The earlier job must exist: a key whose job was never written (its request died between
        the claim and the write, or its clean-up failed) is taken over once it is older than
        IDEMPOTENCY_IN_FLIGHT_S; before that it is a request in flight, and the caller is told
        to retry (IdempotencyInFlightError) rather than given an id nothing will ever answer.
        """
        digest = value.partition(" ")[2]
        in_flight_s = IDEMPOTENCY_IN_FLIGHT_S
        for _ in range(2):
            previous = await self.redis.set(idem, value, nx=True, get=True, ex=JOB_TTL_S)
            if not isinstance(previous, str):
                return None
            earlier_id, _, earlier_digest = previous.partition(" ")
            if earlier_digest != digest:
                raise IdempotencyConflictError
            if await self.redis.exists(self.partition(earlier_id).job(earlier_id)):
                return earlier_id
            age_s = JOB_TTL_S - await self.redis.pttl(idem) / 1000
            in_flight_s = IDEMPOTENCY_IN_FLIGHT_S - age_s
            if in_flight_s > 0:
                break
            await self._release(keys=[idem], args=[previous])
        raise IdempotencyInFlightError(max(1, math.ceil(in_flight_s)))

    async def _forget(self, idem: str, value: str) -> None:
        """Releases this request's claim on the idempotency key (never a later request's)."""
        try:
            await self._release(keys=[idem], args=[value])
        except UNAVAILABLE as exc:
            log.error("cannot remove the idempotency key", extra={"error": repr(exc)})

    async def get(self, job_id: str, owner_key: bytes = NO_OWNER) -> JobStatus | Missing:
        """The job as its owner may see it, failed first when past its deadline.

        An id not issued to this caller is "unknown" without asking Redis, so another key's job
        and an id that never existed answer alike (404); an id issued to this caller that Redis
        no longer has is "gone" (410: lost, or expired 24 h after it was created).
        """
        if not issued_to(job_id, owner_key):
            return "unknown"
        part = self.partition(job_id)
        fields = cast("dict[str, str]", await self.redis.hgetall(part.job(job_id)))
        if fields.get("status") is None:
            return "gone"
        # The tag already binds the id to the key; the recorded owner is checked as well.
        if fields.get("owner") != owner_id(owner_key):
            return "unknown"
        if fields["status"] not in TERMINAL and fields.get("deadline"):
            await CLOCK.refresh(self.redis)  # the deadline was set by Redis's clock too
            if int(fields["deadline"]) <= now_ms():
                fields = await self._fail_past_deadline(part, job_id)
        status = fields.get("status")
        if status is None:
            return "gone"
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

    async def _fail_past_deadline(self, part: Partition, job_id: str) -> dict[str, str]:
        """Fail a job still queued or running past its deadline (as a worker's sweep would, so
        GET is right even when no worker runs); the job's hash after, empty if it is gone."""
        now = now_ms()
        event = event_json(job_id, "failed", "failed", error=DEADLINE_EXCEEDED)
        keys = [part.deadlines, part.events, part.job(job_id)]
        args: list[EncodableT] = [now, now - self.events_retention_ms, job_id, event]
        failed, flat = cast("list[Any]", await self._expire(keys=keys, args=args))
        if failed:
            metrics.JOBS_FAILED.labels("deadline_exceeded").inc()
            log.error("jobs failed: deadline exceeded", extra={"job_ids": [job_id]})
        pairs = cast("list[str]", flat)
        return dict(zip(pairs[::2], pairs[1::2], strict=True))
