"""Redis Streams job bus: names and helpers shared by the producer and the worker.

Protocol (shared with the other side of the bus; see README "Job bus"):
- jobs go on the stream `jobs:predict`, read by the consumer group `ml-workers`;
- entries that cannot be processed end in `jobs:predict:dead`;
- lifecycle events (`queued`, `running`, `done`, `failed`) go on `jobs:events`,
  one entry per event with the fields `id` (job id) and `event` (JSON job event);
- the job's state lives in the hash `job:{id}` (status, result, error, processed, ...).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

STREAM = "jobs:predict"
GROUP = "ml-workers"
DEAD_STREAM = "jobs:predict:dead"
EVENTS_STREAM = "jobs:events"
STREAM_MAXLEN = 100_000
DEAD_MAXLEN = 10_000
EVENTS_MAXLEN = 10_000
JOB_TTL_S = 86_400
TERMINAL = frozenset({"done", "failed"})
JOB_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
JOB_ID_RE = re.compile(JOB_ID_PATTERN)


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def idempotency_key(key: str) -> str:
    return f"idem:{key}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def event_fields(
    job_id: str, kind: str, status: str, *, result: str | None = None, error: str | None = None
) -> dict[str, str]:
    """Fields of one `jobs:events` entry; `result` is the JSON text of a predict response."""
    event: dict[str, Any] = {"id": job_id, "type": kind, "status": status, "ts": now_ms()}
    if result is not None:
        event["result"] = json.loads(result)
    if error is not None:
        event["error"] = error
    return {"id": job_id, "event": json.dumps(event, separators=(",", ":"))}


async def ensure_group(redis: Redis) -> None:
    """Create the consumer group at id 0 (not `$`), so jobs added before it exist are kept."""
    try:
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
