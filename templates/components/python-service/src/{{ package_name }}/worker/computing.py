"""Computing: the model call, on the event loop while it is fast, else in a thread (heartbeat)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

from redis.typing import StreamIdT

from ..bus import GROUP, UNAVAILABLE, Partition
from ..settings import min_idle_floor_ms
from .base import Computing
from .entries import FAST_PREDICT_S, Job, log
from .reading import Reading

if TYPE_CHECKING:  # the model (scikit-learn) is imported by `serve`, so `--check` starts fast
    from ..model import Prediction


class Compute(Reading):
    """One vectorised model call per batch, row by row only when it raises."""

    async def _predict(self, part: Partition, jobs: list[Job]) -> list[Prediction | Exception]:
        """Run the model: on the event loop while it is fast, else in a thread, re-claiming the
        entries while it computes (heartbeat) so that nobody takes them over."""
        rows = [job.request.features for job in jobs]
        entry_ids = [entry for job in jobs for entry in job.entry_ids]
        if time.monotonic() - self._read_at > self._refresh_after_s():
            # These entries waited for their turn (other partitions' batches, maintenance):
            # re-claim them first, so that none is idle MIN_IDLE_MS before this batch is done or
            # given up, whatever it waited.
            await self._heartbeat(part, entry_ids)
        timeout_s = self.settings.compute_timeout_ms / 1000
        held = self._held(part, entry_ids)
        self._computing = Computing(time.monotonic() + timeout_s, held, tuple(jobs))
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

    def _refresh_after_s(self) -> float:
        """How long entries may wait before they compute without a re-claim: half the slack
        MIN_IDLE_MS leaves above COMPUTE_TIMEOUT_MS and the watchdog's tick and release."""
        return (
            self.settings.min_idle_ms - min_idle_floor_ms(self.settings.compute_timeout_ms)
        ) / 2000

    def _held(self, part: Partition, entry_ids: list[str]) -> dict[Partition, list[str]]:
        """Every entry this worker holds now: the batch in hand, then those waiting their turn
        (the rest of the last read, entries read along with a commit, a concurrent read)."""
        held: dict[Partition, list[str]] = {part: list(entry_ids)}
        for other, entries in [*self._waiting, *self._carried, *self._held_reads()]:
            held.setdefault(other, []).extend(entry_id for entry_id, _ in entries)
        return held

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
        held = self._held(part, entry_ids)
        try:
            for stream_part, ids in held.items():
                if self._abandoned:
                    return
                claimed = cast("list[StreamIdT]", ids)
                await self.redis.xclaim(
                    stream_part.stream, GROUP, self.name, 0, claimed, justid=True
                )
        except UNAVAILABLE as exc:
            log.error("heartbeat failed", extra={"error": repr(exc)})
        log.info("entries re-claimed", extra={"count": sum(len(ids) for ids in held.values())})
