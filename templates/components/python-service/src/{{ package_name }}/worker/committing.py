"""Committing: marking jobs running, writing results exactly once, dead-lettering, as
scripts or guarded transactions (one partition, one slot)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import NoScriptError, WatchError
from redis.typing import EncodableT, FieldT

from .. import metrics, tracing
from ..bus import (
    DEAD_MAXLEN,
    GROUP,
    TERMINAL,
    Partition,
    event_fields,
    event_json,
    now_ms,
)
from ..logs import request_id_var
from ..schemas import PredictResponse
from .computing import Compute
from .entries import MODEL_ERROR, DeadLetter, Job, Pipe, bounded, log

if TYPE_CHECKING:  # the model (scikit-learn) is imported by `serve`, so `--check` starts fast
    from ..model import Prediction


@dataclass(frozen=True, slots=True)
class States:
    """What a guarded transaction knows about its jobs, read after WATCH."""

    finished: frozenset[str]  # done or failed: never written again
    missing: frozenset[str]  # no job hash (lost: evicted, expired): never created again


class Committing(Compute):
    """Every write of a job's outcome."""

    async def _start(self, part: Partition, jobs: list[Job]) -> list[Job]:
        """Mark jobs running; acknowledge those already finished (idempotent redelivery)."""
        now = now_ms()
        args: list[EncodableT] = [now, now - self.settings.events_retention_ms]
        for job in jobs:
            args += [job.job_id, event_json(job.job_id, "running", "running")]
        keys = [part.deadlines, part.events, *(part.job(job.job_id) for job in jobs)]
        flags = cast("list[int]", await self._start_script(keys=keys, args=args))
        started = [job for job, flag in zip(jobs, flags, strict=True) if flag]
        finished = [
            entry
            for job, flag in zip(jobs, flags, strict=True)
            if not flag
            for entry in job.entry_ids
        ]
        if finished:
            # Finished, or lost (no job hash: the script never re-creates one; the gateway then
            # answers 410 "job lost" and its watchers get a final `failed` event).
            log.info("acknowledged finished or lost jobs", extra={"count": len(finished)})
            await self.redis.xack(part.stream, GROUP, *finished)
        return started

    async def _commit(
        self,
        part: Partition,
        done: list[tuple[Job, Prediction]],
        started_at: int | None,
        *,
        read_next: bool = False,
    ) -> None:
        """Results, `done` events (with `running` first if `started_at`), XACK and removal from
        `deadlines`: one atomic script; with `read_next`, the next XREADGROUP rides along."""
        if not done:
            return
        version = self.model.metadata.version
        now = now_ms()
        entry_ids = [entry for job, _ in done for entry in job.entry_ids]
        minid = now - self.settings.events_retention_ms
        args: list[EncodableT] = [GROUP, now, minid, started_at or now, len(entry_ids)]
        args += entry_ids
        for job, prediction in done:
            result = PredictResponse(
                label=prediction.label,
                probabilities=prediction.probabilities,
                model_version=version,
            ).model_dump_json()
            done_event = event_json(job.job_id, "done", "done", result=result)
            running = "" if started_at is None else event_json(job.job_id, "running", "running")
            args += [job.job_id, result, done_event, running]
        keys = [
            part.deadlines,
            part.events,
            part.stream,
            *(part.job(job.job_id) for job, _ in done),
        ]
        created = [job.fields.get("created_at", "") for job, _ in done]
        if not read_next:
            committed = await self._commit_script(keys=keys, args=args)
            metrics.JOBS_COMPLETED.inc(int(committed))
            metrics.observe_latency(created, now)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._commit_script.sha, len(keys), *keys, *args)
            pipe.xreadgroup(
                GROUP,
                self.name,
                {unit_part.stream: ">" for unit_part in self.parts},
                count=self.settings.batch_size,
            )
            committed, reply = await pipe.execute(raise_on_error=False)
        if isinstance(committed, NoScriptError):  # a restarted or failed-over Redis
            committed = await self._commit_script(keys=keys, args=args)
        elif isinstance(committed, Exception):
            raise committed
        metrics.JOBS_COMPLETED.inc(int(committed))
        metrics.observe_latency(created, now)
        if isinstance(reply, Exception):
            raise reply
        if not self._carried:
            self._carried_at = time.monotonic()
        self._carried.extend(self._by_partition(reply))

    async def _failed(self, part: Partition, failed: list[tuple[Job, Exception]]) -> None:
        """Leave failed entries pending for a retry; dead-letter those out of deliveries."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job, _ in failed:
                pipe.xpending_range(part.stream, GROUP, job.entry_id, job.entry_id, 1)
            replies = cast("list[list[dict[str, Any]]]", await pipe.execute())
        exhausted: list[DeadLetter] = []
        for (job, exc), reply in zip(failed, replies, strict=True):
            deliveries = int(reply[0]["times_delivered"]) if reply else 1
            detail = bounded(f"{type(exc).__name__}: {exc}")
            token = request_id_var.set(job.request_id)
            with tracing.job_context(job.fields):
                log.error(
                    "prediction failed",
                    extra={"job_id": job.job_id, "deliveries": deliveries, "error": detail},
                )
            request_id_var.reset(token)
            if deliveries < self.settings.max_deliveries:
                metrics.JOBS_RETRIED.inc()
            else:
                exhausted.append(
                    DeadLetter(
                        job.entry_id, job.fields, job.job_id, MODEL_ERROR, detail, deliveries
                    )
                )
        if exhausted:
            await self.dead_letter(part, exhausted)

    async def dead_letter(self, part: Partition, letters: list[DeadLetter]) -> None:
        """Move entries to the dead-letter stream and fail their jobs, in one transaction."""
        job_ids = [letter.job_id for letter in letters if letter.job_id is not None]

        def build(pipe: Pipe, states: States) -> None:
            now = str(now_ms())
            for letter in letters:
                job_id = letter.job_id
                if job_id is not None and job_id in states.finished:
                    continue  # a lost job (states.missing) still leaves its dead letter
                dead: dict[FieldT, EncodableT] = dict(letter.fields.items())
                dead.update(
                    error=letter.detail,
                    deliveries=str(letter.deliveries),
                    source_id=letter.entry_id,
                )
                pipe.xadd(part.dead, dead, maxlen=DEAD_MAXLEN, approximate=True)
                if job_id is not None:
                    self._fail(pipe, part, job_id, letter.error, now, states)
            pipe.xack(part.stream, GROUP, *(letter.entry_id for letter in letters))
            if job_ids:
                pipe.zrem(part.deadlines, *job_ids)

        await self._guarded(part, job_ids, build)
        metrics.JOBS_DEAD_LETTERED.inc(len(letters))
        for letter in letters:
            if letter.job_id is not None:
                metrics.JOBS_FAILED.labels(metrics.failure_reason(letter.error)).inc()
            # The entry's own trace and request id, as on every line about its job.
            token = request_id_var.set(letter.fields.get("request_id") or None)
            with tracing.job_context(letter.fields):
                log.error(
                    "entry dead-lettered",
                    extra={
                        "entry_id": letter.entry_id,
                        "job_id": letter.job_id,
                        "deliveries": letter.deliveries,
                        "error": letter.detail,
                    },
                )
            request_id_var.reset(token)

    def _fail(
        self, pipe: Pipe, part: Partition, job_id: str, error: str, now: str, states: States
    ) -> None:
        if job_id in states.missing:
            return  # lost: writing would create a hash with no owner and no TTL
        key = part.job(job_id)
        pipe.hset(key, mapping={"status": "failed", "error": error, "finished_at": now})
        pipe.hincrby(key, "processed", 1)
        self._event(pipe, part, job_id, "failed", "failed", error=error)

    def _event(
        self,
        pipe: Pipe,
        part: Partition,
        job_id: str,
        kind: str,
        status: str,
        *,
        result: str | None = None,
        error: str | None = None,
    ) -> None:
        event = event_json(job_id, kind, status, result=result, error=error)
        pipe.xadd(
            part.events,
            event_fields(job_id, event),
            minid=str(now_ms() - self.settings.events_retention_ms),
            approximate=True,
        )

    async def _guarded(
        self,
        part: Partition,
        job_ids: list[str],
        build: Callable[[Pipe, States], None],
    ) -> None:
        """Run what `build` queues in one MULTI; retry if a watched job hash changed meanwhile."""
        keys = [part.job(job_id) for job_id in job_ids]
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    if keys:
                        await pipe.watch(*keys)
                    states = await self._states(part, job_ids)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    build(pipe, states)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def _states(self, part: Partition, job_ids: list[str]) -> States:
        """Every job's status (one round trip): finished ones are never written again, missing
        ones (lost) never created again. Dead letters and deadlines are rare: no shortcut."""
        unknown = list(dict.fromkeys(job_ids))
        if not unknown:
            return States(frozenset(), frozenset())
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in unknown:
                pipe.hget(part.job(job_id), "status")
            statuses = cast("list[str | None]", await pipe.execute())
        return States(
            frozenset(j for j, s in zip(unknown, statuses, strict=True) if s in TERMINAL),
            frozenset(j for j, s in zip(unknown, statuses, strict=True) if s is None),
        )
