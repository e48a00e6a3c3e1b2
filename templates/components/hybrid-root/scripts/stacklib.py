"""Start and stop throw-away stacks (redis-server, ML service, workers, gateway) for tests.

Used by the end-to-end test (e2e/) and the benchmark (scripts/bench.py), which need each process
in hand (kill this worker, pause Redis) and nothing restarted behind their back; `make run` is
supervisord's (scripts/dev_stack.py) and takes only the helpers. Run it with the ML service's
interpreter (ml-service/.venv/bin/python): the ML service and the workers start with the same
environment, and redis-py is at hand.

Every process runs in its own process group. Stack.close() stops the services, then Redis:
SIGTERM, then SIGKILL for whatever is left in the group. The first SIGINT/SIGTERM/SIGHUP raises
Interrupted in the main thread so the stacks are closed; later ones are ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from types import FrameType
from typing import Any

import redis  # the ML service's own dependency
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ResponseError

ROOT = Path(__file__).resolve().parent.parent
ML_DIR = ROOT / "ml-service"
GATEWAY_DIR = ROOT / "gateway"

STOP_TIMEOUT_S = 15.0
# Gateway settings for load tests (the e2e test and the bench send far more than 100 requests a minute).
LOAD_TEST_ENV = {"RATE_LIMIT_MAX": "1000000"}


class StackError(RuntimeError):
    """A process could not start or did not become ready; the message says which and why."""


class Interrupted(BaseException):
    """Raised in the main thread by the first SIGINT/SIGTERM/SIGHUP so `finally` blocks run."""


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP: the first raises Interrupted, every later one is ignored."""

    def __init__(self) -> None:
        self.received: str | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handler)

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name
            raise Interrupted(self.received)


SIGNALS = StopSignals()


def ml_package() -> str:
    """The ML service's import package: ML_PACKAGE, or the one package under ml-service/src."""
    if name := os.environ.get("ML_PACKAGE"):
        return name
    found = sorted(p.parent.name for p in (ML_DIR / "src").glob("*/__init__.py"))
    if len(found) != 1:
        raise StackError(f"set ML_PACKAGE: expected one package in {ML_DIR / 'src'}, found {found}")
    return found[0]


def usable_cores() -> int:
    """The cores this process may run on (`taskset`, a container's cpuset), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity
        return os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """SO_REUSEADDR like the servers themselves, so TIME_WAIT leftovers do not count as taken."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


# -- the bus (keys and partitions as in contracts/README.md) -----------------------------------

GROUP = "ml-workers"


def partition_of(job_id: str, partitions: int) -> int:
    """The partition of a job: crc32 of its id modulo BUS_PARTITIONS."""
    return zlib.crc32(job_id.encode()) % partitions


def bus_key(partition: int, name: str) -> str:
    """`{jobs:p}:predict`, `{jobs:p}:job:<id>`...: the hash tag keeps a partition in one cluster slot."""
    return f"{{jobs:{partition}}}:{name}"


def connect(url: str) -> Any:
    """redis-py client for REDIS_URL: redis[s]://... (one node) or redis[s]+cluster://h:p[,h:p...]."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme.endswith("+cluster"):
        return redis.Redis.from_url(url, decode_responses=True)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    seeds = (h.rpartition(":") for h in hosts.split(","))
    nodes = [ClusterNode(host, int(port)) for host, _, port in seeds]  # type: ignore[no-untyped-call]
    return RedisCluster(
        startup_nodes=nodes,
        username=urllib.parse.unquote(user) or None,
        password=urllib.parse.unquote(password) or None,
        ssl=parts.scheme.startswith("rediss"),
        decode_responses=True,
    )


class Bus:
    """Read-only views of the bus state that the e2e test and the bench check."""

    def __init__(self, url: str, partitions: int) -> None:
        self.r = connect(url)
        self.partitions = partitions

    def key(self, job_id: str, name: str) -> str:
        return bus_key(partition_of(job_id, self.partitions), name)

    def job(self, job_id: str) -> dict[str, str]:
        fields: dict[str, str] = self.r.hgetall(self.key(job_id, f"job:{job_id}"))
        return fields

    def jobs(self, job_ids: Sequence[str], *fields: str) -> list[list[str | None]]:
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.key(job_id, f"job:{job_id}"), list(fields))
        rows: list[list[str | None]] = pipe.execute()
        return rows

    def pending(self, consumer: str | None = None) -> int:
        """Entries delivered and not acknowledged, over every partition (of one consumer if named)."""
        total = 0
        for p in range(self.partitions):
            try:
                summary = self.r.xpending(bus_key(p, "predict"), GROUP)
            except ResponseError:  # no stream or group yet
                continue
            if consumer is None:
                total += int(summary["pending"])
            else:
                total += sum(int(c["pending"]) for c in summary["consumers"] or () if c["name"] == consumer)
        return total

    def consumers(self) -> set[str]:
        """Consumers of the group (partition 0; a worker joins every partition on its first read)."""
        try:
            return {c["name"] for c in self.r.xinfo_consumers(bus_key(0, "predict"), GROUP)}
        except ResponseError:
            return set()

    def dead(self) -> list[dict[str, str]]:
        """Every dead-letter entry, over every partition."""
        return [fields for p in range(self.partitions) for _id, fields in self.r.xrange(bus_key(p, "dead"))]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's events in its partition's events stream, oldest first."""
        entries = self.r.xrange(self.key(job_id, "events"))
        return [json.loads(f["event"]) for _id, f in entries if f.get("id") == job_id]

    def close(self) -> None:
        self.r.close()


# -- HTTP and SSE clients ----------------------------------------------------------------


class HttpResponse:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.body[:300]!r}>"


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpResponse:
    data = None if body is None else json.dumps(body).encode()
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("content-type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpResponse(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        return HttpResponse(err.code, dict(err.headers), err.read())


def http_chunked(url: str, headers: Mapping[str, str], chunks: Iterator[bytes], timeout: float = 10.0) -> HttpResponse:
    """POST with `Transfer-Encoding: chunked` (no Content-Length), as a streaming client sends it.

    A server may answer (413) and close before the whole body is sent: sending stops there and
    the answer is read.
    """
    parts = urllib.parse.urlsplit(url)
    conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.putrequest("POST", parts.path or "/")
        for name, value in {"content-type": "application/json", **headers, "transfer-encoding": "chunked"}.items():
            conn.putheader(name, value)
        conn.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for chunk in chunks:
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        return HttpResponse(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()


def submit_jobs(url: str, api_key: str, bodies: Sequence[Any], threads: int = 8) -> tuple[list[str], float]:
    """POST every body to /v1/jobs over `threads` keep-alive connections; (job ids, seconds taken)."""
    parts = urllib.parse.urlsplit(url)
    headers = {"x-api-key": api_key, "content-type": "application/json"}

    def post(share: Sequence[Any]) -> list[str]:
        conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
        ids = []
        try:
            for body in share:
                conn.request("POST", "/v1/jobs", body=json.dumps(body), headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                if resp.status != 202:
                    raise StackError(f"POST /v1/jobs answered {resp.status}: {answer[:200]!r}")
                ids.append(json.loads(answer)["id"])
        finally:
            conn.close()
        return ids

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        shares = pool.map(post, [bodies[i::threads] for i in range(threads)])
        job_ids = [job_id for share in shares for job_id in share]
    return job_ids, time.perf_counter() - started


def sse_events(url: str, headers: Mapping[str, str], timeout: float) -> Iterator[dict[str, str]]:
    """Yield Server-Sent Events ({"event", "data", "id"}) until the server closes the stream."""
    req = urllib.request.Request(url, headers={**headers, "accept": "text/event-stream"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if resp.status != 200:
            raise AssertionError(f"SSE {url} answered {resp.status}")
        event: dict[str, str] = {}
        for raw in resp:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if "data" in event:
                    yield event
                event = {}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data" and "data" in event:
                event["data"] += "\n" + value
            elif field in ("event", "data", "id"):
                event[field] = value


# -- processes ---------------------------------------------------------------------------------


class Stack:
    """Processes of one local stack, each writing to DIR/NAME.log. Use as a context manager."""

    def __init__(self, name: str = "stack", *, quiet: bool = False, env: Mapping[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.quiet = quiet
        self.env = dict(env or {})  # given to every service, e.g. BUS_PARTITIONS
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.worker_names: dict[str, str] = {}  # process name -> WORKER_NAME
        self.python = sys.executable
        self.package = ml_package()
        self.redis_url = ""
        self.ml_url = ""
        self.gateway_url = ""
        self.metrics: dict[str, str] = {}  # process name -> its /metrics URL
        self.api_key = "stack-client-" + os.urandom(16).hex()
        self.ml_api_key = "stack-internal-" + os.urandom(16).hex()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(f"  [stack] {msg}", flush=True)

    @property
    def partitions(self) -> int:
        return int(self.env.get("BUS_PARTITIONS", os.environ.get("BUS_PARTITIONS", "1")))

    def bus(self) -> Bus:
        return Bus(self.redis_url, self.partitions)

    # -- start and stop ----------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        if name in self.procs:
            raise StackError(f"{name} is running already")
        with open(self.dir / f"{name}.log", "ab") as out:
            self.procs[name] = proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: signals reach the whole tree
            )
        self.log(f"started {name} (pid {proc.pid})")
        return proc

    def signal(self, name: str, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, sig)

    def stop(self, name: str, timeout: float = STOP_TIMEOUT_S) -> int | None:
        codes = self.stop_many([name], timeout)
        return codes.get(name)

    def stop_many(self, names: Sequence[str], timeout: float = STOP_TIMEOUT_S) -> dict[str, int]:
        """SIGTERM to every named process group at once, wait, then SIGKILL what is left."""
        stopping = {name: proc for name in names if (proc := self.procs.get(name)) is not None}
        for proc in stopping.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                    os.killpg(proc.pid, signal.SIGCONT)  # a stopped (SIGSTOP) process handles it now
        deadline = time.monotonic() + timeout
        codes: dict[str, int] = {}
        for name, proc in stopping.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                self.log(f"{name} ignored SIGTERM for {timeout:g}s; killing it")
            with contextlib.suppress(ProcessLookupError):  # also whatever it left in its group
                os.killpg(proc.pid, signal.SIGKILL)
            codes[name] = proc.wait()
            del self.procs[name]
        return codes

    def close(self) -> None:
        """The services first, Redis last, so nothing loses Redis while it drains."""
        self.stop_many([name for name in self.procs if not name.startswith("redis")])
        self.stop_many(list(self.procs))
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- health ------------------------------------------------------------------------------

    def check_alive(self, *names: str) -> None:
        for name in names or tuple(self.procs):
            code = self.procs[name].poll()
            if code is not None:
                raise StackError(f"{name} exited with {code}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_until(self, what: str, ready: Callable[[], bool], watch: Sequence[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive(*watch)
            if ready():
                return
            if time.monotonic() > deadline:
                tails = "".join(f"\n--- {n} ---\n{self.tail(n)}" for n in watch)
                raise StackError(f"{what} not ready after {timeout:g}s{tails}")
            time.sleep(0.1)

    def wait_http(self, name: str, url: str, timeout: float = 60.0) -> None:
        def answers() -> bool:
            try:
                return http("GET", url, timeout=2).status == 200
            except OSError:
                return False

        self.wait_until(f"{name} at {url}", answers, [name], timeout)

    def wait_workers(self, names: list[str], timeout: float = 60.0) -> None:
        """Wait until every named worker has joined the consumer group (its first XREADGROUP)."""
        consumers = {self.worker_names[name] for name in names}
        bus = self.bus()
        try:
            self.wait_until(f"workers {', '.join(names)}", lambda: bus.consumers() >= consumers, names, timeout)
        finally:
            bus.close()

    # -- the services ------------------------------------------------------------------------

    def _start_redis_node(self, name: str, port: int, *extra: str) -> None:
        if not shutil.which("redis-server"):
            raise StackError("redis-server is not installed (apt install redis-server / brew install redis)")
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.dir), "--logfile", f"{name}.log", "--loglevel", "warning"]
        self.spawn(name, [*argv, *extra], {}, self.dir)

        def accepts() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError:
                return False
            return True

        self.wait_until(f"redis-server on port {port}", accepts, [name], 10)

    def start_redis(self) -> str:
        port = free_port()
        self._start_redis_node("redis", port)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        return self.redis_url

    def start_redis_cluster(self, masters: int = 3) -> str:
        """A Redis Cluster of `masters` masters on loopback; REDIS_URL redis+cluster://..."""
        ports = cluster_ports(masters)
        for i, port in enumerate(ports, 1):
            conf = f"nodes-{port}.conf"
            self._start_redis_node(f"redis-{i}", port, "--cluster-enabled", "yes", "--cluster-config-file", conf)
        nodes = [f"127.0.0.1:{port}" for port in ports]
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            raise StackError(f"redis-cli --cluster create failed:\n{create.stdout}{create.stderr}")
        clients = [redis.Redis(port=port, decode_responses=True) for port in ports]
        try:
            self.wait_until(
                "Redis Cluster",
                lambda: all(c.cluster("info")["cluster_state"] == "ok" for c in clients),
                [f"redis-{i}" for i in range(1, masters + 1)],
                30,
            )
        finally:
            for c in clients:
                c.close()
        self.redis_url = "redis+cluster://" + ",".join(nodes)
        return self.redis_url

    def metrics_env(self, name: str) -> dict[str, str]:
        """A free METRICS_PORT for one process (every one serves /metrics on its own port)."""
        port = free_port()
        self.metrics[name] = f"http://127.0.0.1:{port}/metrics"
        return {"METRICS_PORT": str(port)}

    def common_env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis_url, "LOG_LEVEL": os.environ.get("STACK_LOG_LEVEL", "info")}

    def start_ml(self, port: int | None = None, wait: bool = True) -> str:
        port = port or free_port()
        env = {**self.common_env(), "HOST": "127.0.0.1", "PORT": str(port), "API_KEYS": self.ml_api_key}
        env.update(self.metrics_env("ml-service"))
        self.spawn("ml-service", [self.python, "-m", self.package], env, ML_DIR)
        self.ml_url = f"http://127.0.0.1:{port}"
        if wait:
            self.wait_http("ml-service", f"{self.ml_url}/readyz")
        return self.ml_url

    def start_worker(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        full_env = {**self.common_env(), "WORKER_NAME": name, **self.metrics_env(name), **env}
        self.worker_names[name] = full_env["WORKER_NAME"]
        return self.spawn(name, [self.python, "-m", f"{self.package}.worker"], full_env, ML_DIR)

    def start_gateway(
        self, host: str = "127.0.0.1", port: int | None = None, wait: bool = True, env: Mapping[str, str] | None = None
    ) -> str:
        server = GATEWAY_DIR / "dist" / "server.js"
        if not server.exists():
            raise StackError("gateway/dist/server.js is missing: run `make -C gateway build`")
        port = port or free_port()
        full_env = {
            **self.common_env(),
            "NODE_ENV": "production",
            "HOST": host,
            "PORT": str(port),
            "ML_URL": self.ml_url,
            "ML_API_KEY": self.ml_api_key,
            "API_KEYS": self.api_key,
            **self.metrics_env("gateway"),
            **(env or {}),
        }
        node = ["node", "--max-semi-space-size=32", "--enable-source-maps", str(server)]  # as the image's CMD
        self.spawn("gateway", node, full_env, GATEWAY_DIR)
        self.gateway_url = f"http://{host}:{port}"
        if wait:
            self.wait_http("gateway", f"{self.gateway_url}/readyz")
        return self.gateway_url


def cluster_ports(count: int) -> list[int]:
    """Loopback ports that are free together with their cluster bus ports (port + 10000)."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < count:
        port = rng.randrange(20_000, 50_000)
        if port not in ports and port_is_free("127.0.0.1", port) and port_is_free("127.0.0.1", port + 10_000):
            ports.append(port)
    return ports
