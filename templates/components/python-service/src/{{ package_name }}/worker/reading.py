"""Reading: XREADGROUP over every partition (one read per node, or per partition in a cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, cast

from ..bus import GROUP, UNAVAILABLE, Partition
from .entries import Entry
from .liveness import Liveness


class Reading(Liveness):
    """New entries, read concurrently with the batch in hand where that helps."""

    async def _read(self) -> list[tuple[Partition, list[Entry]]]:
        """New entries from any partition; returns early (empty) when the worker stops."""
        if self._carried:
            carried, self._carried = self._carried, []
            self._read_at = self._carried_at
            return carried
        for index in range(len(self.units)):
            if index not in self._reads:
                self._issue_read(index)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait([stop, *self._reads.values()], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        self._read_at = time.monotonic()
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
