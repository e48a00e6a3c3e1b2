"""Redis Streams worker: `python -m <package>.worker` (run as many as you like).

Delivery is at least once, results are committed exactly once (protocol: contracts/README.md):
- entries of every partition are read in micro-batches by the consumer group and predicted in one
  vectorised call; if that call raises, the batch is retried row by row and only the rows that
  raise fail (they are redelivered, and dead-lettered after MAX_DELIVERIES);
- marking jobs running and committing them (results, `done` events, XACK, removal from
  `deadlines`) are one atomic script each per partition; inside, a job no longer in `deadlines`
  (finished elsewhere) is acknowledged, not written again;
- a batch computing longer than MIN_IDLE_MS/2 re-claims its entries (heartbeat), so nobody else
  takes them over; entries idle longer than MIN_IDLE_MS (their worker died) are taken over;
- a batch computing longer than COMPUTE_TIMEOUT_MS (a hung model call) is abandoned by a watchdog
  thread: the health file is marked, the entries are released for redelivery at once (the next
  claim counts a delivery, so a job that hangs every time is dead-lettered after MAX_DELIVERIES),
  and the process exits with status 3 (a hung call cannot be cancelled) for its supervisor
  (`make run`, Kubernetes) to restart it; trimming then moves past those entries again;
- time is Redis's (`TIME`, see bus.RedisClock): deadlines and horizons written on another host
  are compared with the same clock;
- every RECLAIM_INTERVAL_MS: reclaim, fail jobs past their deadline, trim each job stream below
  the oldest entry still pending or undelivered, remove consumers idle and empty for
  CONSUMER_IDLE_MAX_MS;
- SIGTERM/SIGINT: stop reading at once, finish and commit the batch in hand, exit 0.

`python -m <package>.worker --check` exits 0 while a worker on this machine is alive (it touches
WORKER_HEALTH_FILE at least every few seconds) and not over COMPUTE_TIMEOUT_MS: the container
healthcheck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from pydantic import ValidationError
from redis.asyncio import RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import NoScriptError, ResponseError, WatchError
from redis.typing import EncodableT, FieldT, StreamIdT

from . import metrics, tracing
from .bus import (
    CLOCK,
    DEAD_MAXLEN,
    GROUP,
    JOB_ID_RE,
    JOB_TTL_S,
    TERMINAL,
    UNAVAILABLE,
    Client,
    Partition,
    connect,
    ensure_groups,
    event_fields,
    event_json,
    now_ms,
    partition_index,
    partitions,
)
from .logs import configure_logging, request_id_var
from .schemas import PredictRequest, PredictResponse
from .settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # the model (scikit-learn) is imported by `serve`, so `--check` starts fast
    from .model import Model, Prediction

log = logging.getLogger(f"{__package__}.worker")  # also when run as __main__

Entry = tuple[str, dict[str, str]]
Pipe: TypeAlias = Pipeline | ClusterPipeline
MODEL_ERROR = "model error"
SWEEP_LIMIT = 100
FAST_PREDICT_S = 0.005  # a model call quicker than this runs on the event loop (no thread hop)
EXIT_COMPUTE_TIMEOUT = 3  # exit status of a worker that gave up a hung batch
OVER_TIME = "over-time"  # first word of the health file once a batch is past COMPUTE_TIMEOUT_MS
RELEASE_WAIT_S = 2.0  # how long the watchdog waits for the release before it exits anyway

# The two transactions of every batch, as scripts: atomic like MULTI, but the check "is the job
# still unfinished?" happens inside, so each costs one round trip and no WATCH retry. All keys are
# in one partition, hence one cluster slot. A job is unfinished while it is in `deadlines`; only a
# job missing there (finished, or queued without a deadline) needs its status read.
_UNFINISHED = """
local function unfinished(deadline, key)
  if deadline then return true, false end
  local status = redis.call('HGET', key, 'status')
  if not status then return true, true end
  return status ~= 'done' and status ~= 'failed', false
end
"""
# KEYS: deadlines, events, job hash... ARGV: now, events MINID, TTL, (job id, event)...
START_SCRIPT = (
    _UNFINISHED
    + """
local n = #KEYS - 2
local ids = {}
for i = 1, n do ids[i] = ARGV[2 + 2 * i] end
local deadlines = redis.call('ZMSCORE', KEYS[1], unpack(ids))
local started = {}
for i = 1, n do
  local key = KEYS[2 + i]
  local run, missing = unfinished(deadlines[i], key)
  if run then
    redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1])
    if missing then redis.call('EXPIRE', key, ARGV[3]) end
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[2], '*', 'id', ids[i], 'event', ARGV[3 + 2 * i])
    started[i] = 1
  else
    started[i] = 0
  end
end
return started
"""
)
# KEYS: deadlines, events, stream, job hash... ARGV: group, now, events MINID, TTL, started_at,
# number of entry ids m, m entry ids to acknowledge, then (job id, result, done event, running
# event or "" if the job was marked running already) per job.
COMMIT_SCRIPT = (
    _UNFINISHED
    + """
local n = #KEYS - 3
local m = tonumber(ARGV[6])
local base = 6 + m
local ids = {}
for i = 1, n do ids[i] = ARGV[base + 4 * i - 3] end
local deadlines = redis.call('ZMSCORE', KEYS[1], unpack(ids))
local committed = 0
for i = 1, n do
  local key = KEYS[3 + i]
  local run, missing = unfinished(deadlines[i], key)
  if run then
    local result, done, running = ARGV[base + 4 * i - 2], ARGV[base + 4 * i - 1], ARGV[base + 4 * i]
    if running ~= '' then
      redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'id', ids[i], 'event', running)
      redis.call('HSET', key, 'started_at', ARGV[5])
    end
    redis.call('HSET', key, 'status', 'done', 'result', result, 'finished_at', ARGV[2])
    redis.call('HINCRBY', key, 'processed', 1)
    if missing then redis.call('EXPIRE', key, ARGV[4]) end
    redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 'id', ids[i], 'event', done)
    committed = committed + 1
  end
end
redis.call('XACK', KEYS[3], ARGV[1], unpack(ARGV, 7, base))
redis.call('ZREM', KEYS[1], unpack(ids))
return committed
"""
)


class InvalidEntryError(Exception):
    """The entry breaks the job-entry contract: retrying cannot help."""

    def __init__(self, public: str, detail: str) -> None:
        super().__init__(detail)
        self.public = public


@dataclass(slots=True)
class Job:
    entry_id: str
    job_id: str
    fields: dict[str, str]
    request: PredictRequest
    request_id: str | None
    duplicates: list[str] = field(default_factory=list)  # same job delivered twice in a batch

    @property
    def entry_ids(self) -> list[str]:
        return [self.entry_id, *self.duplicates]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry_id: str
    fields: dict[str, str]
    job_id: str | None  # the job to fail, if the entry names one of this partition
    error: str  # short public message, stored in the job hash and its `failed` event
    detail: str  # what went wrong, for operators: the log and the dead-letter entry
    deliveries: int


@dataclass(frozen=True, slots=True)
class Computing:
    """The batch whose model call is running: what the watchdog gives up when it overruns."""

    deadline: float  # time.monotonic()
    held: dict[Partition, list[str]]  # entry ids this worker holds, by partition


@dataclass(frozen=True, slots=True)
class States:
    """What a guarded transaction knows about its jobs, read after WATCH."""

    finished: frozenset[str]  # done or failed: never written again
    missing: frozenset[str]  # no job hash: a write must give it a TTL


def parse_entry(entry_id: str, fields: dict[str, str]) -> Job:
    if fields.get("v") != "1" or fields.get("type") != "predict":
        raise InvalidEntryError("invalid entry", "unsupported entry: v must be '1', type 'predict'")
    job_id = fields.get("job_id", "")
    if not JOB_ID_RE.match(job_id):
        raise InvalidEntryError("invalid entry", "job_id is not a uuid")
    try:
        request = PredictRequest.model_validate_json(fields.get("payload", ""))
    except ValidationError as exc:
        raise InvalidEntryError(
            "invalid payload", f"invalid payload: {exc.errors(include_url=False)}"
        ) from None
    return Job(entry_id, job_id, fields, request, fields.get("request_id") or None)


class Worker:
    def __init__(
        self, redis: Client, model: Model, settings: Settings, name: str | None = None
    ) -> None:
        self.redis = redis
        self.model = model
        self.settings = settings
        self.name = name or settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        self.parts = partitions(settings.bus_partitions)
        self._by_stream = {part.stream: part for part in self.parts}
        # One XREADGROUP covers every partition on one node; a cluster needs one per partition
        # (each is a different slot), and they run concurrently.
        self.cluster = isinstance(redis, RedisCluster)
        self.units = [[part] for part in self.parts] if self.cluster else [self.parts]
        # Single node: the next batch is read in the same round trip as the commit of this one.
        self._carried: list[tuple[Partition, list[Entry]]] = []
        self.stopping = asyncio.Event()
        self._reads: dict[int, asyncio.Task[Any]] = {}
        self._next_maintenance = 0.0
        self._last_beat = 0.0
        self._fast_model = False  # measured: True while model calls average < FAST_PREDICT_S
        self._predict_s: float | None = None
        self._computing: Computing | None = None  # read by the watchdog thread
        self._abandoned = False  # a batch overran: no more heartbeats, the process is exiting
        self._start_script = redis.register_script(START_SCRIPT)
        self._commit_script = redis.register_script(COMMIT_SCRIPT)

    def stop(self) -> None:
        """Finish the batch in hand, then return from `run`."""
        if not self.stopping.is_set():
            log.info("worker stopping", extra={"worker": self.name})
        self.stopping.set()

    async def run(self) -> None:
        log.info(
            "worker started",
            extra={"worker": self.name, "partitions": len(self.parts), "group": GROUP},
        )
        ready = False
        while not self.stopping.is_set():
            try:
                if not ready:
                    await CLOCK.sync(self.redis)
                    await ensure_groups(self.redis, self.parts)
                    await self.drain_own_pending()  # after a restart under the same name
                    ready = True
                if time.monotonic() >= self._next_maintenance:
                    await self.maintain()
                    self._next_maintenance = (
                        time.monotonic() + self.settings.reclaim_interval_ms / 1000
                    )
                for part, entries in await self._read():
                    full = len(entries) >= self.settings.batch_size
                    await self.handle(part, entries, read_next=full and not self.cluster)
                self.beat()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    await self._pause("redis refused a command", exc)
                    continue
                log.warning("consumer group missing, creating it")
                ready = False
            except UNAVAILABLE as exc:
                await self._pause("redis unavailable, retrying", exc)
        await self._cancel_reads()
        with contextlib.suppress(*UNAVAILABLE):
            # A read cancelled by the stop may have been given entries: finish them now rather
            # than leaving them to a reclaim after MIN_IDLE_MS.
            await self.drain_own_pending()
        log.info("worker stopped", extra={"worker": self.name})

    async def _pause(self, message: str, exc: BaseException) -> None:
        log.error(message, extra={"error": repr(exc)})
        self.beat()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=1)

    def beat(self) -> None:
        """Touch the health file (at most once a second) for `--check`; empty means healthy."""
        now = time.monotonic()
        if now - self._last_beat < 1 or self._abandoned:
            return
        self._last_beat = now
        try:
            self.settings.worker_health_file.write_bytes(b"")
        except OSError as exc:
            log.warning("cannot touch the health file", extra={"error": repr(exc)})

    # -- hung model calls ---------------------------------------------------------------------

    def start_watchdog(
        self, loop: asyncio.AbstractEventLoop, on_timeout: Callable[[], None]
    ) -> threading.Thread:
        """A daemon thread that gives up a batch past COMPUTE_TIMEOUT_MS, then calls `on_timeout`
        (which must end the process: the hung call itself cannot be cancelled)."""
        tick = min(1.0, self.settings.compute_timeout_ms / 4_000)

        def watch() -> None:
            while True:
                time.sleep(tick)
                computing = self._computing
                if computing is not None and time.monotonic() >= computing.deadline:
                    self.abandon(computing, loop)
                    on_timeout()
                    return

        thread = threading.Thread(target=watch, name="compute-watchdog", daemon=True)
        thread.start()
        return thread

    def abandon(self, computing: Computing, loop: asyncio.AbstractEventLoop) -> None:
        """Mark the health file, then release the batch's entries for redelivery (from the event
        loop, free unless the hung call blocks it; then they are reclaimed after MIN_IDLE_MS)."""
        self._abandoned = True
        count = sum(len(ids) for ids in computing.held.values())
        log.error(
            "compute timeout: batch abandoned, exiting",
            extra={"compute_timeout_ms": self.settings.compute_timeout_ms, "entries": count},
        )
        try:
            self.settings.worker_health_file.write_text(
                f"{OVER_TIME}: a batch exceeded COMPUTE_TIMEOUT_MS\n"
            )
        except OSError as exc:
            log.warning("cannot mark the health file", extra={"error": repr(exc)})
        release = asyncio.run_coroutine_threadsafe(self._release(computing.held), loop)
        try:
            release.result(timeout=RELEASE_WAIT_S)
        except Exception as exc:
            release.cancel()
            log.error(
                "could not release the abandoned entries: reclaimed after MIN_IDLE_MS",
                extra={"error": repr(exc)},
            )

    async def _release(self, held: dict[Partition, list[str]]) -> None:
        """Make the entries claimable now: XCLAIM to ourselves with IDLE = MIN_IDLE_MS (JUSTID,
        no delivery counted here; the worker that claims them next counts one)."""
        for part, ids in held.items():
            await self.redis.xclaim(
                part.stream,
                GROUP,
                self.name,
                0,
                cast("list[StreamIdT]", ids),
                idle=self.settings.min_idle_ms,
                justid=True,
            )

    # -- reading ----------------------------------------------------------------------------

    async def _read(self) -> list[tuple[Partition, list[Entry]]]:
        """New entries from any partition; returns early (empty) when the worker stops."""
        if self._carried:
            carried, self._carried = self._carried, []
            return carried
        for index in range(len(self.units)):
            if index not in self._reads:
                self._issue_read(index)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait([stop, *self._reads.values()], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        batches: list[tuple[Partition, list[Entry]]] = []
        for index, task in list(self._reads.items()):
            if task.done():
                del self._reads[index]
                got = self._by_partition(task.result())
                batches.extend(got)
                if self.cluster and any(len(e) >= self.settings.batch_size for _, e in got):
                    # Busy stream: read the next batch while this one is handled.
                    self._issue_read(index)
        return batches

    def _issue_read(self, index: int) -> None:
        self._reads[index] = asyncio.ensure_future(
            self.redis.xreadgroup(
                GROUP,
                self.name,
                {part.stream: ">" for part in self.units[index]},
                count=self.settings.batch_size,
                block=self.settings.block_ms,
            )
        )

    def _by_partition(self, reply: Any) -> list[tuple[Partition, list[Entry]]]:
        streams = cast("list[tuple[str, list[Entry]]]", reply or [])
        return [(self._by_stream[stream], entries) for stream, entries in streams if entries]

    async def _cancel_reads(self) -> None:
        reads = list(self._reads.values())
        self._reads.clear()
        for task in reads:
            task.cancel()
        for task in reads:
            with contextlib.suppress(asyncio.CancelledError, *UNAVAILABLE):
                await task

    def _held_reads(self) -> list[tuple[Partition, list[Entry]]]:
        """Entries a concurrent read already took and that wait for their turn."""
        held: list[tuple[Partition, list[Entry]]] = []
        for task in self._reads.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                held.extend(self._by_partition(task.result()))
        return held

    async def drain_own_pending(self) -> None:
        """Process the entries delivered to this consumer name and not acknowledged, once."""
        for part in self.parts:
            cursor = "0"
            while True:
                reply = await self.redis.xreadgroup(
                    GROUP, self.name, {part.stream: cursor}, count=self.settings.batch_size
                )
                entries = [entries for _, entries in self._by_partition(reply)]
                if not entries:
                    break
                cursor = entries[0][-1][0]
                # Reading our own history counts a delivery, like a claim: a job that made this
                # worker hang (and restart under the same name) ends dead-lettered too.
                await self.handle(part, await self._dead_letter_exhausted(part, entries[0]))

    # -- one batch --------------------------------------------------------------------------

    async def handle(
        self, part: Partition, entries: Sequence[Entry], *, read_next: bool = False
    ) -> None:
        """Run one batch. `read_next`: read the next batch along with the commit (busy stream)."""
        jobs: dict[str, Job] = {}
        invalid: list[DeadLetter] = []
        lost: list[str] = []
        for entry_id, fields in entries:
            if not fields:  # deleted from the stream while pending (by hand: trimming never does)
                lost.append(entry_id)
                continue
            job_id = self._own_job_id(part, fields)
            try:
                job = parse_entry(entry_id, fields)
                if job_id is None:
                    raise InvalidEntryError("invalid entry", "job_id of another partition")
            except InvalidEntryError as exc:
                invalid.append(DeadLetter(entry_id, fields, job_id, exc.public, str(exc), 1))
                continue
            if job.job_id in jobs:
                jobs[job.job_id].duplicates.append(entry_id)
            else:
                jobs[job.job_id] = job
        if lost:
            log.error("entries deleted while pending", extra={"entry_ids": lost})
            await self.redis.xack(part.stream, GROUP, *lost)
        if invalid:
            await self.dead_letter(part, invalid)
        if not jobs:
            return
        started_at = now_ms()
        # A fast model (a few ms) is marked `running` in the commit itself: the separate round
        # trip would cost more than the prediction. A slow one is marked before it computes.
        fresh = self._fast_model and not self.settings.worker_delay_ms
        todo = list(jobs.values()) if fresh else await self._start(part, list(jobs.values()))
        if not todo:
            return
        outcomes = await self._predict(part, todo)
        done = [
            (job, out)
            for job, out in zip(todo, outcomes, strict=True)
            if not isinstance(out, Exception)
        ]
        failed = [
            (job, out)
            for job, out in zip(todo, outcomes, strict=True)
            if isinstance(out, Exception)
        ]
        await self._commit(part, done, started_at if fresh else None, read_next=read_next)
        if failed:
            await self._failed(part, failed)
        if tracing.exporting():
            outcome = [e if isinstance(e, Exception) else None for e in outcomes]
            ended = now_ms()
            spans = [(j.job_id, j.fields, e) for j, e in zip(todo, outcome, strict=True)]
            tracing.record_job_spans(spans, started_at, ended)

    def _own_job_id(self, part: Partition, fields: dict[str, str]) -> str | None:
        """The entry's job id if it is a uuid that belongs to this partition."""
        job_id = fields.get("job_id", "")
        if JOB_ID_RE.match(job_id) and partition_index(job_id, len(self.parts)) == part.index:
            return job_id
        return None

    async def _start(self, part: Partition, jobs: list[Job]) -> list[Job]:
        """Mark jobs running; acknowledge those already finished (idempotent redelivery)."""
        now = now_ms()
        args: list[EncodableT] = [now, now - self.settings.events_retention_ms, JOB_TTL_S]
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
            log.info("acknowledged already finished jobs", extra={"count": len(finished)})
            await self.redis.xack(part.stream, GROUP, *finished)
        return started

    async def _predict(self, part: Partition, jobs: list[Job]) -> list[Prediction | Exception]:
        """Run the model: on the event loop while it is fast, else in a thread, re-claiming the
        entries while it computes (heartbeat) so that nobody takes them over."""
        rows = [job.request.features for job in jobs]
        entry_ids = [entry for job in jobs for entry in job.entry_ids]
        held: dict[Partition, list[str]] = {part: entry_ids}
        for other, entries in self._held_reads():
            held.setdefault(other, []).extend(entry_id for entry_id, _ in entries)
        timeout_s = self.settings.compute_timeout_ms / 1000
        self._computing = Computing(time.monotonic() + timeout_s, held)
        try:
            if self._fast_model and not self.settings.worker_delay_ms:
                return self._timed_predict(rows)
            call = asyncio.ensure_future(asyncio.to_thread(self._timed_predict, rows))
            interval = self.settings.min_idle_ms / 2000
            while True:
                done, _ = await asyncio.wait([call], timeout=interval)
                if done:
                    return call.result()
                if not self._abandoned:  # once given up, the batch keeps no claim on its entries
                    await self._heartbeat(part, entry_ids)
        finally:
            self._computing = None

    def _timed_predict(self, rows: list[list[float]]) -> list[Prediction | Exception]:
        started = time.perf_counter()
        outcomes = self._predict_rows(rows)
        took = time.perf_counter() - started
        # A moving average, so that one call slowed down by a busy machine changes nothing.
        average = took if self._predict_s is None else 0.9 * self._predict_s + 0.1 * took
        self._predict_s = average
        self._fast_model = average < FAST_PREDICT_S
        return outcomes

    def _predict_rows(self, rows: list[list[float]]) -> list[Prediction | Exception]:
        """One vectorised call; if it raises, one call per row, so only bad rows fail."""
        if self.settings.worker_delay_ms:
            time.sleep(self.settings.worker_delay_ms * len(rows) / 1000)
        try:
            predictions: list[Prediction | Exception] = list(self.model.predict(rows))
            if len(predictions) != len(rows):
                raise RuntimeError(f"{len(predictions)} predictions for {len(rows)} rows")
            return predictions
        except Exception as exc:
            if len(rows) == 1:
                return [exc]
            log.warning("batch prediction failed, retrying row by row", extra={"error": repr(exc)})
        outcomes: list[Prediction | Exception] = []
        for row in rows:
            try:
                outcomes.append(self.model.predict([row])[0])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _heartbeat(self, part: Partition, entry_ids: list[str]) -> None:
        """Reset the idle time of the entries in hand (XCLAIM JUSTID counts no delivery)."""
        self.beat()
        held: dict[Partition, list[StreamIdT]] = {part: list(entry_ids)}
        for other, entries in self._held_reads():
            held.setdefault(other, []).extend(entry_id for entry_id, _ in entries)
        try:
            for stream_part, ids in held.items():
                if self._abandoned:
                    return
                await self.redis.xclaim(stream_part.stream, GROUP, self.name, 0, ids, justid=True)
        except UNAVAILABLE as exc:
            log.error("heartbeat failed", extra={"error": repr(exc)})
        log.info("long batch: entries re-claimed", extra={"count": len(entry_ids)})

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
        args: list[EncodableT] = [GROUP, now, minid, JOB_TTL_S, started_at or now, len(entry_ids)]
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
            detail = f"{type(exc).__name__}: {exc}"
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
                    continue
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
            log.error(
                "entry dead-lettered",
                extra={
                    "entry_id": letter.entry_id,
                    "job_id": letter.job_id,
                    "deliveries": letter.deliveries,
                    "error": letter.detail,
                },
            )

    def _fail(
        self, pipe: Pipe, part: Partition, job_id: str, error: str, now: str, states: States
    ) -> None:
        key = part.job(job_id)
        pipe.hset(key, mapping={"status": "failed", "error": error, "finished_at": now})
        pipe.hincrby(key, "processed", 1)
        if job_id in states.missing:
            pipe.expire(key, JOB_TTL_S)
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

    # -- maintenance --------------------------------------------------------------------------

    async def maintain(self) -> None:
        await CLOCK.sync(self.redis)  # deadlines were written by other hosts' producers
        for part in self.parts:
            if self.stopping.is_set():
                return
            await self.reclaim(part)
            await self.sweep_deadlines(part)
            await self.trim(part)
            await self.prune_consumers(part)
            self.beat()

    async def reclaim(self, part: Partition) -> None:
        """Take over entries idle longer than MIN_IDLE_MS; dead-letter those tried too often."""
        cursor = "0-0"
        while not self.stopping.is_set():
            cursor, claimed, deleted = await self.redis.xautoclaim(
                part.stream,
                GROUP,
                self.name,
                self.settings.min_idle_ms,
                start_id=cursor,
                count=self.settings.batch_size,
            )
            if deleted:
                log.error("pending entries were deleted by hand", extra={"entry_ids": deleted})
            if claimed:
                log.info("reclaimed idle entries", extra={"count": len(claimed)})
                await self.handle(part, await self._dead_letter_exhausted(part, claimed))
            if cursor == "0-0":
                break

    async def _dead_letter_exhausted(self, part: Partition, claimed: list[Entry]) -> list[Entry]:
        """Dead-letter claimed entries already tried MAX_DELIVERIES times; return the others."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, _ in claimed:
                pipe.xpending_range(part.stream, GROUP, entry_id, entry_id, 1)
            replies = cast("list[list[dict[str, Any]]]", await pipe.execute())
        runnable: list[Entry] = []
        exhausted: list[DeadLetter] = []
        for (entry_id, fields), reply in zip(claimed, replies, strict=True):
            # The claim itself counted as a delivery: attempts so far = times_delivered - 1.
            attempts = int(reply[0]["times_delivered"]) - 1 if reply else 0
            if fields and attempts >= self.settings.max_deliveries:
                error = f"gave up after {attempts} deliveries"
                job_id = self._own_job_id(part, fields)
                exhausted.append(DeadLetter(entry_id, fields, job_id, error, error, attempts))
            else:
                runnable.append((entry_id, fields))
        if exhausted:
            await self.dead_letter(part, exhausted)
        metrics.JOBS_RETRIED.inc(len(runnable))
        return runnable

    async def sweep_deadlines(self, part: Partition) -> None:
        """End jobs still queued or running past their deadline: `failed`, deadline exceeded."""
        while not self.stopping.is_set():
            job_ids = cast(
                "list[str]",
                await self.redis.zrangebyscore(
                    part.deadlines, "-inf", now_ms(), start=0, num=SWEEP_LIMIT
                ),
            )
            if job_ids:
                await self._expire(part, job_ids)
            if len(job_ids) < SWEEP_LIMIT:
                return

    async def _expire(self, part: Partition, job_ids: list[str]) -> None:
        expired: list[str] = []

        def build(pipe: Pipe, states: States) -> None:
            expired.clear()
            now = str(now_ms())
            for job_id in job_ids:
                if job_id not in states.finished:  # a finished job only leaves `deadlines`
                    expired.append(job_id)
                    self._fail(pipe, part, job_id, "deadline exceeded", now, states)
            pipe.zrem(part.deadlines, *job_ids)

        await self._guarded(part, job_ids, build, exact=True)
        if expired:
            metrics.JOBS_FAILED.labels("deadline_exceeded").inc(len(expired))
            log.error("jobs failed: deadline exceeded", extra={"job_ids": expired})

    async def trim(self, part: Partition) -> None:
        """XTRIM MINID below the oldest entry any group still needs: never a pending entry.

        Entries older than a group's last-delivered id and not pending are acknowledged, so the
        safe point is min(oldest pending id, successor of the last-delivered id) over groups.
        """
        safe: str | None = None
        for group in await self.redis.xinfo_groups(part.stream):
            if group["name"] == GROUP:
                metrics.observe_group(part.index, group.get("lag"), group["pending"])
            point = entry_id_after(str(group["last-delivered-id"]))
            if int(group["pending"]):
                summary = await self.redis.xpending(part.stream, group["name"])
                if summary.get("min"):
                    point = older(point, str(summary["min"]))
            safe = point if safe is None else older(safe, point)
        if safe is not None:
            await self.redis.xtrim(part.stream, minid=safe, approximate=True)

    async def prune_consumers(self, part: Partition) -> None:
        """Remove consumers idle longer than CONSUMER_IDLE_MAX_MS that hold no entry."""
        for consumer in await self.redis.xinfo_consumers(part.stream, GROUP):
            name = str(consumer["name"])
            idle = int(consumer["idle"])
            if (
                name == self.name
                or int(consumer["pending"])
                or idle < self.settings.consumer_idle_max_ms
            ):
                continue
            removed = int(await self.redis.xgroup_delconsumer(part.stream, GROUP, name))
            if removed:  # it read entries between XINFO and here: its jobs meet their deadline
                log.error(
                    "removed consumer held entries", extra={"consumer": name, "pending": removed}
                )
            else:
                log.info("removed idle consumer", extra={"consumer": name, "idle_ms": idle})

    # -- transactions -------------------------------------------------------------------------

    async def _guarded(
        self,
        part: Partition,
        job_ids: list[str],
        build: Callable[[Pipe, States], None],
        *,
        exact: bool = False,
    ) -> None:
        """Run what `build` queues in one MULTI; retry if a watched job hash changed meanwhile.

        `exact` reads every job's status instead of trusting `deadlines` membership.
        """
        keys = [part.job(job_id) for job_id in job_ids]
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    if keys:
                        await pipe.watch(*keys)
                    states = await self._states(part, job_ids, exact=exact)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    build(pipe, states)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    async def _states(self, part: Partition, job_ids: list[str], *, exact: bool) -> States:
        """A job is unfinished while it is in `deadlines`; only the others need a status read."""
        if not job_ids:
            return States(frozenset(), frozenset())
        if exact:
            unknown = job_ids
        else:
            scores = await self.redis.zmscore(part.deadlines, job_ids)
            unknown = [job for job, score in zip(job_ids, scores, strict=True) if score is None]
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


def entry_id_after(entry_id: str) -> str:
    """The smallest stream id greater than `entry_id`."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def older(a: str, b: str) -> str:
    """The smaller of two stream ids."""
    return min(a, b, key=lambda entry_id: tuple(int(part) for part in entry_id.split("-")))


def health_max_age_s(settings: Settings) -> float:
    """How stale the health file may get: a live worker touches it far more often."""
    return max(30.0, 3 * settings.block_ms / 1000, settings.min_idle_ms / 1000)


def check_health(settings: Settings) -> int:
    path = settings.worker_health_file
    try:
        age = time.time() - path.stat().st_mtime
        state = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        sys.stderr.write(f"unhealthy: {path} does not exist (no worker started here)\n")
        return 1
    if state.startswith(OVER_TIME):
        sys.stderr.write(f"unhealthy: {state}\n")
        return 1
    if age > health_max_age_s(settings):
        sys.stderr.write(f"unhealthy: {path} was last touched {age:.0f}s ago\n")
        return 1
    return 0


async def serve(settings: Settings) -> None:
    from .model import load_model  # heavy: only the worker itself needs it

    model = load_model(
        settings.model_path, fault_on=settings.model_fault_on, hang_on=settings.model_hang_on
    )
    tracing.configure_tracing(f"{__package__}-worker")
    port = settings.metrics_port
    metrics.serve_metrics(settings.host, metrics.WORKER_METRICS_PORT if port is None else port)
    # Socket reads must outlast a blocking XREADGROUP (BLOCK_MS) before they time out.
    redis = connect(settings.redis_url, timeout_s=settings.block_ms / 1000 + 10)
    worker = Worker(redis, model, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    worker.start_watchdog(loop, exit_now)
    try:
        await worker.run()
    finally:
        await redis.aclose()


def exit_now() -> None:
    """Exit at once with EXIT_COMPUTE_TIMEOUT: a normal exit would wait for the hung thread."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(EXIT_COMPUTE_TIMEOUT)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}.worker", description="Redis Streams job worker"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if a worker on this machine touched WORKER_HEALTH_FILE recently (healthcheck)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(str(exc))
    if args.check:
        sys.exit(check_health(settings))
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
