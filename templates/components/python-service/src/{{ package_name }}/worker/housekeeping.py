"""Housekeeping, every RECLAIM_INTERVAL_MS: reclaim idle entries, fail jobs past their deadline,
trim the streams, prune idle consumers; and, after a restart, the entries this name still holds."""

from __future__ import annotations

import time
from typing import Any, cast

from .. import metrics
from ..bus import CLOCK, GROUP, Partition, now_ms
from .batch import Batch
from .committing import States
from .entries import SWEEP_LIMIT, DeadLetter, Entry, Pipe, log


class Housekeeping(Batch):
    """Keeping the streams and the group healthy between batches."""

    async def drain_own_pending(self) -> None:
        """Process the entries delivered to this consumer name and not acknowledged, once."""
        for part in self.parts:
            cursor = "0"
            while True:
                # One at a time: every entry here is a redelivery (see reclaim).
                reply = await self.redis.xreadgroup(
                    GROUP, self.name, {part.stream: cursor}, count=1
                )
                self._read_at = time.monotonic()
                entries = [entries for _, entries in self._by_partition(reply)]
                if not entries:
                    break
                cursor = entries[0][-1][0]
                # Reading our own history counts a delivery, like a claim: a job that made this
                # worker hang (and restart under the same name) ends dead-lettered too.
                await self.handle(part, await self._dead_letter_exhausted(part, entries[0]))

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
        """Take over entries idle longer than MIN_IDLE_MS; dead-letter those tried too often.

        One entry at a time, each computed alone: an entry left by a worker that died or gave up
        a hung batch may be the one that hangs, and must not take the others down with it again.
        """
        cursor = "0-0"
        while not self.stopping.is_set():
            cursor, claimed, deleted = await self.redis.xautoclaim(
                part.stream, GROUP, self.name, self.settings.min_idle_ms, start_id=cursor, count=1
            )
            self._read_at = time.monotonic()
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
                # A finished job only leaves `deadlines`; so does a lost one (no hash), which the
                # gateway reports as 410 "job lost" (never re-created without its owner).
                if job_id not in states.finished and job_id not in states.missing:
                    expired.append(job_id)
                    self._fail(pipe, part, job_id, "deadline exceeded", now, states)
            pipe.zrem(part.deadlines, *job_ids)

        await self._guarded(part, job_ids, build)
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


def entry_id_after(entry_id: str) -> str:
    """The smallest stream id greater than `entry_id`."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def older(a: str, b: str) -> str:
    """The smaller of two stream ids."""
    return min(a, b, key=lambda entry_id: tuple(int(part) for part in entry_id.split("-")))
