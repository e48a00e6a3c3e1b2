"""One batch: parse the entries, start, compute and commit their jobs."""

from __future__ import annotations

from collections.abc import Sequence

from .. import tracing
from ..bus import GROUP, JOB_ID_RE, Partition, now_ms, partition_index
from .committing import Committing
from .entries import DeadLetter, Entry, InvalidEntryError, Job, log, parse_entry


class Batch(Committing):
    """`handle`: from entries read (or reclaimed) to committed outcomes."""

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
