"""The worker's state, shared by the layers of `Worker` (one module per concern)."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio import RedisCluster

from .. import metrics
from ..bus import Client, Partition, partitions
from ..settings import Settings
from .entries import Entry, Job
from .scripts import COMMIT_SCRIPT, START_SCRIPT

if TYPE_CHECKING:  # the model (scikit-learn) is imported by `serve`, so `--check` starts fast
    from ..model import Model


@dataclass(frozen=True, slots=True)
class Computing:
    """The batch whose model call is running: what the watchdog gives up when it overruns."""

    deadline: float  # time.monotonic()
    held: dict[Partition, list[str]]  # entry ids this worker holds, by partition
    jobs: tuple[Job, ...] = ()  # the jobs being computed (named in the log when abandoned)


class WorkerBase:
    """Connections, settings and the state the layers share; no behaviour."""

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
        self._carried_at = 0.0  # time.monotonic() when the carried entries were read
        # Batches of the last read still waiting for their turn, and when the batch in hand was
        # read or claimed: entries idle long are re-claimed before they compute (see _predict).
        self._waiting: list[tuple[Partition, list[Entry]]] = []
        self._read_at = 0.0
        self.stopping = asyncio.Event()
        self._reads: dict[int, asyncio.Task[Any]] = {}
        self._next_maintenance = 0.0
        self._last_beat = 0.0
        self._fast_model = False  # measured: True while model calls average < FAST_PREDICT_S
        self._predict_s: float | None = None
        self._computing: Computing | None = None  # read by the watchdog thread
        self._abandoned = False  # a batch overran: no more heartbeats, the process is exiting
        metrics.register_worker_metrics()  # only a worker process exports the worker's metrics
        self._start_script = redis.register_script(START_SCRIPT)
        self._commit_script = redis.register_script(COMMIT_SCRIPT)
