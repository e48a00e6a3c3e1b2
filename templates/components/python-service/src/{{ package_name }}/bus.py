"""Redis Streams job bus, protocol v1.1: names and helpers shared by the producer and the worker.

The full protocol is in contracts/README.md (hybrid) or the README's "Job bus" section. In short:
- a job lives in partition `p = crc32(job_id) % BUS_PARTITIONS`; every key of a partition carries
  the hash tag `{jobs:p}`, so each transaction touches one Redis Cluster slot;
- `{jobs:p}:predict` is the job stream (consumer group `ml-workers`), `{jobs:p}:dead` the
  dead letters, `{jobs:p}:events` the lifecycle events, `{jobs:p}:job:<id>` the job hash and
  `{jobs:p}:deadlines` a sorted set of unfinished jobs by deadline;
- a job is unfinished exactly while it is a member of `deadlines`: every transaction that ends a
  job (done, dead letter, deadline) removes it there, atomically with the status it writes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast
from urllib.parse import unquote, urlsplit

from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.cluster import ClusterNode as SyncClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.typing import EncodableT, FieldT

GROUP = "ml-workers"
DEAD_MAXLEN = 10_000
JOB_TTL_S = 86_400
TERMINAL = frozenset({"done", "failed"})
CLOCK_SYNC_S = 30.0  # how often a process re-reads Redis's clock (TIME)
JOB_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
JOB_ID_RE = re.compile(JOB_ID_PATTERN)
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)

Client: TypeAlias = Redis | RedisCluster
# What an unreachable, timing out or failing Redis raises (clients answer 503, never 500).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisError,
    RedisClusterException,
    OSError,
    asyncio.TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Partition:
    """The keys of one partition; `{jobs:N}` is a Redis Cluster hash tag."""

    index: int
    stream: str
    dead: str
    events: str
    deadlines: str

    @classmethod
    def of(cls, index: int) -> Partition:
        tag = f"{{jobs:{index}}}"
        return cls(index, f"{tag}:predict", f"{tag}:dead", f"{tag}:events", f"{tag}:deadlines")

    def job(self, job_id: str) -> str:
        return f"{{jobs:{self.index}}}:job:{job_id}"


def partitions(count: int) -> list[Partition]:
    return [Partition.of(index) for index in range(count)]


def partition_index(job_id: str, count: int) -> int:
    """`crc32(utf8(job_id)) % count`: the same choice as the gateway's."""
    return zlib.crc32(job_id.encode()) % count


def partition_of(job_id: str, count: int) -> Partition:
    return Partition.of(partition_index(job_id, count))


def idempotency_key(owner_key: bytes, key: str) -> str:
    """Scoped to the caller (`owner_key`: sha256 of its API key), as the gateway's: two API keys
    choosing the same Idempotency-Key never share a job."""
    return f"idem:{owner_key.hex()[:16]}:{key}"


class RedisClock:
    """Milliseconds since the epoch by Redis's clock (`TIME`), not this host's.

    The gateway, the workers and the producers run on different hosts: a deadline written by one
    and checked by another, or a trimming horizon compared with stream ids (which Redis stamps),
    must use one clock. `sync` measures the offset of the local clock from Redis's (half the
    round trip corrects for latency); `now_ms` adds it to the local clock, so reading the time
    costs no round trip. Callers re-sync regularly (`refresh`), which also follows a local clock
    that jumps.
    """

    def __init__(self) -> None:
        self.offset_ms = 0
        self._synced_at: float | None = None  # time.monotonic() of the last sync

    async def sync(self, redis: Client) -> None:
        before = time.time_ns()
        reply = await redis.time()
        after = time.time_ns()
        if isinstance(reply, dict):  # a cluster client may answer per node: any one will do
            reply = next(iter(reply.values()))
        seconds, micros = reply
        local_ms = (before + after) // 2_000_000
        self.offset_ms = int(seconds) * 1_000 + int(micros) // 1_000 - local_ms
        self._synced_at = time.monotonic()

    async def refresh(self, redis: Client, max_age_s: float = CLOCK_SYNC_S) -> None:
        """Sync unless the last sync is more recent than `max_age_s`."""
        if self._synced_at is None or time.monotonic() - self._synced_at >= max_age_s:
            await self.sync(redis)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


# One clock per process (every service of this process talks to one Redis).
CLOCK = RedisClock()


def now_ms() -> int:
    """Now by Redis's clock (see RedisClock): deadlines, horizons and timestamps use this."""
    return CLOCK.now_ms()


def event_json(
    job_id: str, kind: str, status: str, *, result: str | None = None, error: str | None = None
) -> str:
    """A `job-event.schema.json` object; `result` is the JSON text of a predict response."""
    event = {"id": job_id, "type": kind, "status": status, "ts": now_ms()}
    head = json.dumps(event, separators=(",", ":"))[:-1]
    if error is not None:
        head += ',"error":' + json.dumps(error)
    if result is not None:
        head += ',"result":' + result
    return head + "}"


def event_fields(job_id: str, event: str) -> dict[FieldT, EncodableT]:
    """Fields of one `{jobs:p}:events` entry."""
    return {"id": job_id, "event": event}


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    ssl: bool


def parse_cluster_url(url: str) -> ClusterUrl:
    """`redis+cluster://[user:pass@]host:port[,host:port...]` (or `rediss+cluster://`)."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a cluster URL: the scheme must be one of {CLUSTER_SCHEMES}")
    netloc = rest.split("/", 1)[0]
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    nodes = []
    for seed in hosts.split(","):
        parsed = urlsplit(f"//{seed.strip()}")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None:
            raise ValueError(f"cluster seed {seed!r} must be host:port")
        nodes.append((parsed.hostname, port))
    return ClusterUrl(
        tuple(nodes),
        unquote(username) or None,
        unquote(password) or None,
        scheme == "rediss+cluster",
    )


def check_redis_url(url: str) -> str:
    scheme = url.partition("://")[0]
    if scheme not in SCHEMES:
        raise ValueError(f"the scheme must be one of {', '.join(SCHEMES)}")
    if scheme in CLUSTER_SCHEMES:
        parse_cluster_url(url)
    return url


# Replies are decoded as UTF-8 with `surrogateescape`: bytes that are not UTF-8 (a stream entry
# written by a broken producer) become lone surrogates instead of raising UnicodeDecodeError
# inside the read, which would kill the worker before it could dead-letter the entry (it would
# die again on every restart). Writes encode with the same handler, so a dead letter keeps the
# original bytes; the worker refuses such an entry (`entries.parse_entry`).
ENCODING_ERRORS = "surrogateescape"


def connect(url: str, *, timeout_s: float = 5.0, max_connections: int = 100) -> Client:
    """A single-node client, or a cluster client for `redis+cluster://` / `rediss+cluster://`.

    `timeout_s` bounds every socket read, so a Redis that stops answering fails the request
    (503) instead of hanging it; a blocking read needs a timeout longer than its BLOCK. A burst
    of more than `max_connections` concurrent commands waits for a free connection (single node)
    or fails with MaxConnectionsError, a 503 (cluster, per node).
    """
    if url.partition("://")[0] in CLUSTER_SCHEMES:
        cluster = parse_cluster_url(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
            username=cluster.username,
            password=cluster.password,
            ssl=cluster.ssl,
            decode_responses=True,
            encoding_errors=ENCODING_ERRORS,
            socket_timeout=timeout_s,
            socket_connect_timeout=min(timeout_s, 5.0),
            max_connections=max_connections,
        )
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        encoding_errors=ENCODING_ERRORS,
        health_check_interval=30,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(timeout_s, 5.0),
        max_connections=max_connections,
        timeout=timeout_s,
    )
    return Redis.from_pool(pool)


def connect_sync(url: str, *, timeout_s: float) -> SyncRedis | SyncRedisCluster:
    """A blocking client of its own, for a thread that must reach Redis while the event loop
    is blocked (the worker's watchdog releasing a hung batch)."""
    if url.partition("://")[0] in CLUSTER_SCHEMES:
        cluster = parse_cluster_url(url)
        return SyncRedisCluster(
            startup_nodes=[
                SyncClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in cluster.nodes
            ],
            username=cluster.username,
            password=cluster.password,
            ssl=cluster.ssl,
            decode_responses=True,
            encoding_errors=ENCODING_ERRORS,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
    return SyncRedis.from_url(
        url,
        decode_responses=True,
        encoding_errors=ENCODING_ERRORS,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )


PARTITIONS_KEY = "bus:partitions"


class PartitionCountError(Exception):
    """BUS_PARTITIONS differs from the partition count this Redis's bus was created with."""


async def check_partitions(redis: Client, count: int) -> None:
    """Record BUS_PARTITIONS in Redis on first use (`SET NX GET`, one round trip at start) and
    refuse another count: a process that disagrees puts the same job id in another partition,
    so its jobs would never be read or answered (410 at the gateway)."""
    previous = cast("str | None", await redis.set(PARTITIONS_KEY, str(count), nx=True, get=True))
    if previous is not None and previous != str(count):
        raise PartitionCountError(
            f"BUS_PARTITIONS={count}, but the bus in this Redis has {previous} partitions (key "
            f"{PARTITIONS_KEY}): set the same BUS_PARTITIONS on the gateway, the ML service and "
            f"every worker (to change it: drain the bus, then SET {PARTITIONS_KEY} <n>)"
        )


async def ensure_groups(redis: Client, parts: Sequence[Partition]) -> None:
    """Create each partition's consumer group at id 0 (not `$`): jobs added before it are kept."""
    for part in parts:
        try:
            await redis.xgroup_create(part.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
