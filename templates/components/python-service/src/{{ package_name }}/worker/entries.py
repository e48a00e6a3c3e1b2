"""What the worker reads: a job entry of the stream, parsed and checked, or a dead letter."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TypeAlias

from pydantic import ValidationError
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from ..bus import JOB_ID_RE
from ..schemas import PredictRequest

log = logging.getLogger(__package__)  # "<package>.worker", also when run as __main__

Entry = tuple[str, dict[str, str]]

Pipe: TypeAlias = Pipeline | ClusterPipeline

MODEL_ERROR = "model error"

SWEEP_LIMIT = 100

FAST_PREDICT_S = 0.005  # a model call quicker than this runs on the event loop (no thread hop)


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
