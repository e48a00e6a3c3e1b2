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

MAX_DETAIL = 2_000  # the most characters of error text a log line or dead letter carries

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


def not_utf8(text: str) -> bool:
    """Whether `text` came from bytes that are not UTF-8 (bus.ENCODING_ERRORS made them lone
    surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def parse_entry(entry_id: str, fields: dict[str, str]) -> Job:
    if fields.get("v") != "1" or fields.get("type") != "predict":
        raise InvalidEntryError("invalid entry", "unsupported entry: v must be '1', type 'predict'")
    job_id = fields.get("job_id", "")
    if not JOB_ID_RE.match(job_id):
        raise InvalidEntryError("invalid entry", "job_id is not a uuid")
    payload = fields.get("payload", "")
    if not_utf8(payload):
        raise InvalidEntryError("invalid payload", "invalid payload: not valid UTF-8")
    try:
        request = PredictRequest.model_validate_json(payload)
    except ValidationError as exc:
        # Never the input itself: a 5 MB payload would be logged and stored whole.
        errors = exc.errors(include_url=False, include_input=False)
        raise InvalidEntryError(
            "invalid payload", bounded(f"invalid payload ({exc.error_count()} errors): {errors}")
        ) from None
    request_id = fields.get("request_id") or None
    if request_id is not None and not_utf8(request_id):
        request_id = None
    return Job(entry_id, job_id, fields, request, request_id)


def bounded(detail: str) -> str:
    """Operators' error text, cut to MAX_DETAIL characters (logs, dead-letter entries)."""
    return detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 1] + "…"
