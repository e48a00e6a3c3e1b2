"""Redis Streams worker: `python -m <package>.worker` (run as many as you like).

Delivery is at least once, results are committed exactly once (protocol: contracts/README.md):
- entries of every partition are read in micro-batches by the consumer group and predicted in one
  vectorised call; if that call raises, the batch is retried row by row and only the rows that
  raise fail (they are redelivered, and dead-lettered after MAX_DELIVERIES);
- marking jobs running and committing them (results, `done` events, XACK, removal from
  `deadlines`) are one atomic script each per partition; inside, a job no longer in `deadlines`
  (finished elsewhere) is acknowledged, not written again;
- MIN_IDLE_MS is at least COMPUTE_TIMEOUT_MS plus the watchdog's tick and release wait (checked
  at start): an entry is never idle that long while its worker computes it, so nobody else takes
  it over (and hangs on it too) before its worker gives it up; entries that waited for their
  turn are re-claimed before they compute, and a batch computing in a thread re-claims its
  entries every MIN_IDLE_MS/2 (heartbeat); entries idle longer than MIN_IDLE_MS (their worker
  died or gave them up) are taken over, one at a time;
- an entry delivered before (reclaimed, or read again after a restart) is computed alone: when a
  batch is abandoned, only the row that hangs keeps hanging, and only it reaches MAX_DELIVERIES;
- a batch computing longer than COMPUTE_TIMEOUT_MS (a hung model call) is abandoned by a watchdog
  thread: the health file is marked, the entries are released for redelivery at once, from the
  watchdog thread over a connection of its own (the hung call may block the loop) (the next
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
import signal
import sys
import time
from collections.abc import Sequence

from redis.exceptions import ResponseError

from .. import metrics, tracing
from ..bus import (
    CLOCK,
    GROUP,
    UNAVAILABLE,
    PartitionCountError,
    check_partitions,
    connect,
    ensure_groups,
)
from ..logs import configure_logging
from ..settings import Settings, SettingsError, load_settings
from .entries import log
from .housekeeping import Housekeeping
from .liveness import EXIT_COMPUTE_TIMEOUT, OVER_TIME, check_health, exit_now

PACKAGE = __name__.rpartition(".")[0]  # the service's package: `<package>.worker` is this one

__all__ = ["EXIT_COMPUTE_TIMEOUT", "OVER_TIME", "Worker", "main", "serve"]


class Worker(Housekeeping):
    """The consumer: reads, computes and commits batches until stopped.

    Built in layers, one module each, every layer using only those before it: base (the state)
    → liveness (health file, watchdog) → reading → computing (the model call) → committing (every
    write of an outcome) → batch (`handle`) → housekeeping (reclaim, deadlines, trimming,
    consumers) → this loop.
    """

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
            self._waiting = []
            try:
                if not ready:
                    await CLOCK.sync(self.redis)
                    await check_partitions(self.redis, len(self.parts))
                    await ensure_groups(self.redis, self.parts)
                    await self.drain_own_pending()  # after a restart under the same name
                    ready = True
                if time.monotonic() >= self._next_maintenance:
                    await self.maintain()
                    self._next_maintenance = (
                        time.monotonic() + self.settings.reclaim_interval_ms / 1000
                    )
                batches = await self._read()
                while batches:
                    part, entries = batches.pop(0)
                    self._waiting = batches  # held too: re-claimed, released with the batch
                    full = len(entries) >= self.settings.batch_size
                    await self.handle(part, entries, read_next=full and not self.cluster)
                self._waiting = []
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


async def serve(settings: Settings) -> None:
    from ..model import load_model  # heavy: only the worker itself needs it

    model = load_model(
        settings.model_path, fault_on=settings.model_fault_on, hang_on=settings.model_hang_on
    )
    tracing.configure_tracing(f"{PACKAGE}-worker")
    port = settings.metrics_port
    metrics.serve_metrics(settings.host, metrics.WORKER_METRICS_PORT if port is None else port)
    # Socket reads must outlast a blocking XREADGROUP (BLOCK_MS) before they time out.
    redis = connect(settings.redis_url, timeout_s=settings.block_ms / 1000 + 10)
    worker = Worker(redis, model, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    worker.start_watchdog(exit_now)
    try:
        await worker.run()
    finally:
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__name__}", description="Redis Streams job worker"
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
    try:
        asyncio.run(serve(settings))
    except PartitionCountError as exc:
        log.critical("refusing to start", extra={"error": str(exc)})
        sys.exit(str(exc))
