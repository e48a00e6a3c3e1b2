"""Liveness: the health file `--check` reads, and the watchdog that gives up a hung batch."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import cast

from redis.typing import StreamIdT

from .. import tracing
from ..bus import GROUP, Partition, connect_sync
from ..logs import request_id_var
from ..settings import Settings, release_wait_ms, watchdog_tick_ms
from .base import Computing, WorkerBase
from .entries import log

EXIT_COMPUTE_TIMEOUT = 3  # exit status of a worker that gave up a hung batch
OVER_TIME = "over-time"  # first word of the health file once a batch is past COMPUTE_TIMEOUT_MS


class Liveness(WorkerBase):
    """The health file and the compute watchdog."""

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

    def start_watchdog(self, on_timeout: Callable[[], None]) -> threading.Thread:
        """A daemon thread that gives up a batch past COMPUTE_TIMEOUT_MS, then calls `on_timeout`
        (which must end the process: the hung call itself cannot be cancelled)."""
        tick = max(watchdog_tick_ms(self.settings.compute_timeout_ms), 1) / 1000

        def watch() -> None:
            while True:
                time.sleep(tick)
                computing = self._computing
                if computing is not None and time.monotonic() >= computing.deadline:
                    self.abandon(computing)
                    on_timeout()
                    return

        thread = threading.Thread(target=watch, name="compute-watchdog", daemon=True)
        thread.start()
        return thread

    def abandon(self, computing: Computing) -> None:
        """Mark the health file, then release the batch's entries for redelivery, from this
        thread over a connection of its own: the hung call may block the event loop."""
        self._abandoned = True
        count = sum(len(ids) for ids in computing.held.values())
        log.error(
            "compute timeout: batch abandoned, exiting",
            extra={
                "compute_timeout_ms": self.settings.compute_timeout_ms,
                "entries": count,
                "job_ids": [job.job_id for job in computing.jobs],
            },
        )
        for job in computing.jobs:
            token = request_id_var.set(job.request_id)
            with tracing.job_context(job.fields):
                log.error(
                    "compute timeout: job released for another delivery",
                    extra={"job_id": job.job_id, "entry_id": job.entry_id},
                )
            request_id_var.reset(token)
        try:
            self.settings.worker_health_file.write_text(
                f"{OVER_TIME}: a batch exceeded COMPUTE_TIMEOUT_MS\n"
            )
        except OSError as exc:
            log.warning("cannot mark the health file", extra={"error": repr(exc)})
        errors: list[BaseException] = []

        def release() -> None:
            try:
                self._release(computing.held)
            except Exception as exc:
                errors.append(exc)

        wait_s = release_wait_ms(self.settings.compute_timeout_ms) / 1000
        releasing = threading.Thread(target=release, name="release", daemon=True)
        releasing.start()
        releasing.join(wait_s)
        if releasing.is_alive() or errors:
            error = repr(errors[0]) if errors else f"no answer within {wait_s}s"
            log.error(
                "could not release the abandoned entries: reclaimed after MIN_IDLE_MS",
                extra={"error": error},
            )

    def _release(self, held: dict[Partition, list[str]]) -> None:
        """Make the entries claimable now: XCLAIM to ourselves with IDLE = MIN_IDLE_MS (JUSTID,
        no delivery counted here; the worker that claims them next counts one)."""
        wait_s = release_wait_ms(self.settings.compute_timeout_ms) / 1000
        client = connect_sync(self.settings.redis_url, timeout_s=wait_s)
        try:
            for part, ids in held.items():
                if ids:
                    client.xclaim(
                        part.stream,
                        GROUP,
                        self.name,
                        0,
                        cast("list[StreamIdT]", ids),
                        idle=self.settings.min_idle_ms,
                        justid=True,
                    )
        finally:
            client.close()


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


def exit_now() -> None:
    """Exit at once with EXIT_COMPUTE_TIMEOUT: a normal exit would wait for the hung thread."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(EXIT_COMPUTE_TIMEOUT)
