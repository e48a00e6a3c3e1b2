"""Redis Streams worker: `python -m <package>.worker` (run as many as you like).

Delivery is at least once, results are committed exactly once:
- entries are read in micro-batches by the consumer group and predicted in one vectorised call;
- the result, the `processed` counter, the `done` event and the XACK go in ONE transaction,
  guarded by WATCH on the job hashes, so a job finished elsewhere is acknowledged, not redone;
- entries idle longer than MIN_IDLE_MS (their worker died) are taken over with XAUTOCLAIM;
- after MAX_DELIVERIES attempts, or at once for an invalid entry, the entry goes to the
  dead-letter stream with the error and the job is marked failed;
- SIGTERM/SIGINT: stop reading, finish and commit the batch in hand, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .bus import (
    DEAD_MAXLEN,
    DEAD_STREAM,
    EVENTS_MAXLEN,
    EVENTS_STREAM,
    GROUP,
    JOB_ID_RE,
    JOB_TTL_S,
    STREAM,
    TERMINAL,
    ensure_group,
    event_fields,
    job_key,
    now_ms,
)
from .logs import configure_logging, request_id_var
from .model import Model, Prediction, load_model
from .schemas import PredictRequest, PredictResponse
from .settings import Settings, SettingsError, load_settings

log = logging.getLogger(f"{__package__}.worker")  # also when run as __main__

Entry = tuple[str, dict[str, str]]


class InvalidEntryError(Exception):
    """The entry breaks the job-entry contract: retrying cannot help."""


@dataclass(slots=True)
class Job:
    entry_id: str
    job_id: str
    request: PredictRequest
    request_id: str | None
    duplicates: list[str] = field(default_factory=list)  # same job delivered twice in a batch


def parse_entry(entry_id: str, fields: dict[str, str]) -> Job:
    if fields.get("v") != "1" or fields.get("type") != "predict":
        raise InvalidEntryError("unsupported entry: v must be '1' and type 'predict'")
    job_id = fields.get("job_id", "")
    if not JOB_ID_RE.match(job_id):
        raise InvalidEntryError("job_id is not a uuid")
    try:
        request = PredictRequest.model_validate_json(fields.get("payload", ""))
    except ValidationError as exc:
        raise InvalidEntryError(f"invalid payload: {exc.errors(include_url=False)}") from None
    return Job(entry_id, job_id, request, fields.get("request_id") or None)


class Worker:
    def __init__(
        self, redis: Redis, model: Model, settings: Settings, name: str | None = None
    ) -> None:
        self.redis = redis
        self.model = model
        self.settings = settings
        self.name = name or settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        self.stopping = asyncio.Event()
        self._next_reclaim = 0.0

    def stop(self) -> None:
        """Finish the batch in hand, then return from `run`."""
        if not self.stopping.is_set():
            log.info("worker stopping", extra={"worker": self.name})
        self.stopping.set()

    async def run(self) -> None:
        await ensure_group(self.redis)
        log.info("worker started", extra={"worker": self.name, "stream": STREAM, "group": GROUP})
        # First our own pending entries (after a restart under the same name), then new ones.
        cursor = "0"
        while not self.stopping.is_set():
            try:
                if time.monotonic() >= self._next_reclaim:
                    await self.reclaim()
                    self._next_reclaim = time.monotonic() + self.settings.min_idle_ms / 2000
                reply = await self.redis.xreadgroup(
                    GROUP,
                    self.name,
                    {STREAM: cursor},
                    count=self.settings.batch_size,
                    block=None if cursor != ">" else self.settings.block_ms,
                )
                streams = cast("list[tuple[str, list[Entry]]]", reply)
                entries = streams[0][1] if streams else []
                if cursor != ">":
                    cursor = entries[-1][0] if entries else ">"
                await self.handle(entries)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("consumer group missing, creating it")
                await ensure_group(self.redis)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.error("redis unavailable, retrying", extra={"error": repr(exc)})
                await asyncio.sleep(1)
        log.info("worker stopped", extra={"worker": self.name})

    async def handle(self, entries: Iterable[Entry]) -> None:
        jobs: dict[str, Job] = {}
        for entry_id, fields in entries:
            if not fields:  # trimmed from the stream while pending: nothing left to run
                log.error("entry lost to stream trimming", extra={"entry_id": entry_id})
                await self.redis.xack(STREAM, GROUP, entry_id)
                continue
            try:
                job = parse_entry(entry_id, fields)
            except InvalidEntryError as exc:
                await self.dead_letter(entry_id, fields, str(exc))
                continue
            if job.job_id in jobs:
                jobs[job.job_id].duplicates.append(entry_id)
            else:
                jobs[job.job_id] = job
        if not jobs:
            return
        todo = await self._start(list(jobs.values()))
        if todo:
            done, failed = await self._compute(todo)
            await self._record_failures(failed)
            await self._commit(done)

    async def _start(self, jobs: list[Job]) -> list[Job]:
        """Acknowledge jobs already finished (idempotent redelivery); mark the rest running."""
        started: list[Job] = []

        def build(pipe: Pipeline, statuses: dict[str, str | None]) -> None:
            started.clear()
            for job in jobs:
                key = job_key(job.job_id)
                if statuses[job.job_id] in TERMINAL:
                    pipe.xack(STREAM, GROUP, job.entry_id, *job.duplicates)
                    continue
                started.append(job)
                pipe.hset(key, mapping={"status": "running", "started_at": str(now_ms())})
                pipe.expire(key, JOB_TTL_S)
                pipe.xadd(
                    EVENTS_STREAM,
                    event_fields(job.job_id, "running", "running"),  # type: ignore[arg-type]
                    maxlen=EVENTS_MAXLEN,
                    approximate=True,
                )

        await self._guarded([job.job_id for job in jobs], build)
        skipped = len(jobs) - len(started)
        if skipped:
            log.info("acknowledged already finished jobs", extra={"count": skipped})
        return started

    async def _compute(
        self, jobs: list[Job]
    ) -> tuple[list[tuple[Job, Prediction]], list[tuple[Job, str]]]:
        if self.settings.worker_delay_ms:
            await asyncio.sleep(self.settings.worker_delay_ms * len(jobs) / 1000)
        fail_on = self.settings.worker_fail_on
        runnable = [job for job in jobs if fail_on is None or job.request.features[0] != fail_on]
        failed = [(job, "features[0] equals WORKER_FAIL_ON") for job in jobs if job not in runnable]
        try:
            predictions = await asyncio.to_thread(
                self.model.predict, [job.request.features for job in runnable]
            )
        except Exception as exc:  # a model error is retried, then dead-lettered
            log.exception("prediction failed")
            return [], failed + [(job, f"{type(exc).__name__}: {exc}") for job in runnable]
        return list(zip(runnable, predictions, strict=True)), failed

    async def _record_failures(self, failed: list[tuple[Job, str]]) -> None:
        """Keep the entry pending (it is redelivered after MIN_IDLE_MS) and note the error."""
        if not failed:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for job, error in failed:
                token = request_id_var.set(job.request_id)
                log.error("job failed, will retry", extra={"job_id": job.job_id, "error": error})
                request_id_var.reset(token)
                pipe.hset(job_key(job.job_id), "error", error)
                pipe.expire(job_key(job.job_id), JOB_TTL_S)
            await pipe.execute()

    async def _commit(self, done: list[tuple[Job, Prediction]]) -> None:
        if not done:
            return
        version = self.model.metadata.version

        def build(pipe: Pipeline, statuses: dict[str, str | None]) -> None:
            for job, prediction in done:
                ids = (job.entry_id, *job.duplicates)
                if statuses[job.job_id] not in TERMINAL:
                    key = job_key(job.job_id)
                    result = PredictResponse(
                        label=prediction.label,
                        probabilities=prediction.probabilities,
                        model_version=version,
                    ).model_dump_json()
                    finished = str(now_ms())
                    pipe.hset(
                        key, mapping={"status": "done", "result": result, "finished_at": finished}
                    )
                    pipe.hdel(key, "error")
                    pipe.hincrby(key, "processed", 1)
                    pipe.expire(key, JOB_TTL_S)
                    pipe.xadd(
                        EVENTS_STREAM,
                        event_fields(job.job_id, "done", "done", result=result),  # type: ignore[arg-type]
                        maxlen=EVENTS_MAXLEN,
                        approximate=True,
                    )
                pipe.xack(STREAM, GROUP, *ids)

        await self._guarded([job.job_id for job, _ in done], build)
        log.info("batch committed", extra={"worker": self.name, "count": len(done)})

    async def dead_letter(
        self,
        entry_id: str,
        fields: dict[str, str],
        error: str | None,
        deliveries: int | None = None,
    ) -> None:
        """Move an entry to the dead-letter stream and fail its job, in one transaction."""
        if deliveries is None:
            info = await self.redis.xpending_range(STREAM, GROUP, entry_id, entry_id, 1)
            deliveries = int(info[0]["times_delivered"]) if info else 1
        job_id = fields.get("job_id", "")
        known = bool(JOB_ID_RE.match(job_id))
        if error is None:
            error = f"gave up after {deliveries} deliveries"
            last = await self.redis.hget(job_key(job_id), "error") if known else None
            if isinstance(last, str):
                error += f": {last}"
        reason = error

        def build(pipe: Pipeline, statuses: dict[str, str | None]) -> None:
            if known and statuses[job_id] in TERMINAL:
                pipe.xack(STREAM, GROUP, entry_id)
                return
            dead = {**fields, "error": reason, "deliveries": str(deliveries), "source_id": entry_id}
            pipe.xadd(DEAD_STREAM, dead, maxlen=DEAD_MAXLEN, approximate=True)  # type: ignore[arg-type]
            if known:
                key = job_key(job_id)
                pipe.hset(
                    key, mapping={"status": "failed", "error": reason, "finished_at": str(now_ms())}
                )
                pipe.hincrby(key, "processed", 1)
                pipe.expire(key, JOB_TTL_S)
                pipe.xadd(
                    EVENTS_STREAM,
                    event_fields(job_id, "failed", "failed", error=reason),  # type: ignore[arg-type]
                    maxlen=EVENTS_MAXLEN,
                    approximate=True,
                )
            pipe.xack(STREAM, GROUP, entry_id)

        await self._guarded([job_id] if known else [], build)
        log.error(
            "entry dead-lettered",
            extra={
                "entry_id": entry_id,
                "job_id": job_id,
                "deliveries": deliveries,
                "error": error,
            },
        )

    async def reclaim(self) -> None:
        """Dead-letter entries delivered MAX_DELIVERIES times, then take over idle ones."""
        min_idle = self.settings.min_idle_ms
        pending = await self.redis.xpending_range(STREAM, GROUP, "-", "+", 100, idle=min_idle)
        exhausted = {
            p["message_id"]: int(p["times_delivered"])
            for p in pending
            if int(p["times_delivered"]) >= self.settings.max_deliveries
        }
        if exhausted:
            claimed = cast(
                "list[Entry]",
                await self.redis.xclaim(STREAM, GROUP, self.name, min_idle, list(exhausted)),
            )
            for entry_id, fields in claimed:
                await self.dead_letter(entry_id, fields or {}, None, exhausted[entry_id])
        cursor = "0-0"
        while not self.stopping.is_set():
            cursor, entries, deleted = await self.redis.xautoclaim(
                STREAM, GROUP, self.name, min_idle, start_id=cursor, count=self.settings.batch_size
            )
            if deleted:
                log.error("pending entries were trimmed: jobs lost", extra={"entry_ids": deleted})
            if entries:
                log.info("reclaimed idle entries", extra={"count": len(entries)})
                await self.handle(await self._dead_letter_exhausted(entries))
            if cursor == "0-0":
                break

    async def _dead_letter_exhausted(self, claimed: list[Entry]) -> list[Entry]:
        """Dead-letter claimed entries already tried MAX_DELIVERIES times; return the others.

        Closes the gap between the XPENDING check and XAUTOCLAIM, so that no entry is tried
        more than MAX_DELIVERIES times.
        """
        ids = [entry_id for entry_id, _ in claimed]
        info = await self.redis.xpending_range(
            STREAM, GROUP, ids[0], ids[-1], 2 * len(ids) + 100, consumername=self.name
        )
        # The claim itself counted as a delivery: attempts so far = times_delivered - 1.
        attempts = {p["message_id"]: int(p["times_delivered"]) - 1 for p in info}
        runnable: list[Entry] = []
        for entry_id, fields in claimed:
            tries = attempts.get(entry_id, 0)
            if fields and tries >= self.settings.max_deliveries:
                await self.dead_letter(entry_id, fields, None, tries)
            else:
                runnable.append((entry_id, fields))
        return runnable

    async def _guarded(
        self, job_ids: list[str], build: Callable[[Pipeline, dict[str, str | None]], None]
    ) -> None:
        """Run the commands `build` queues in one MULTI; retry if a watched job hash changed."""
        keys = [job_key(job_id) for job_id in job_ids]
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    if keys:
                        await pipe.watch(*keys)
                    statuses = await self._statuses(job_ids)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    build(pipe, statuses)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def _statuses(self, job_ids: list[str]) -> dict[str, str | None]:
        if not job_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(job_key(job_id), "status")
            values: list[str | None] = await pipe.execute()
        return dict(zip(job_ids, values, strict=True))


async def serve(settings: Settings) -> None:
    model = load_model(settings.model_path)
    redis = Redis.from_url(settings.redis_url, decode_responses=True, health_check_interval=30)
    worker = Worker(redis, model, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await redis.aclose()


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(str(exc))
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
