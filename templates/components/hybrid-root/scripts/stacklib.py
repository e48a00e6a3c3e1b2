"""Start, supervise and stop the local stack (redis-server, ML service, workers, gateway).

Shared by `make run` (scripts/dev_stack.py), the end-to-end test (e2e/run_e2e.py) and the
benchmark (scripts/bench.py). Run it with the ML service's interpreter (ml-service/.venv/bin/python):
the ML service and the workers start with the same environment, and redis-py is at hand.

Every process runs in its own process group. Stack.close() stops them in reverse order (gateway,
workers, ML service, Redis): SIGTERM, then SIGKILL for whatever is left in the group. The first
SIGINT/SIGTERM/SIGHUP raises Interrupted in the main thread; later ones are only recorded, so a
shutdown in progress is never cut short (make and a terminal often send two or three at once).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455

# Restart policy of Stack.supervise(), the one of Docker's `restart: unless-stopped`: wait
# BACKOFF_FIRST_S, doubling up to BACKOFF_MAX_S; a process that ran BACKOFF_RESET_S starts over.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_S = 10.0
STOP_TIMEOUT_S = 15.0
# Gateway settings for load tests (the e2e test and the bench send far more than 100 requests a minute).
LOAD_TEST_ENV = {"RATE_LIMIT_MAX": "1000000"}

# Stop order: the highest tier first, so nothing loses a dependency while it drains.
TIER_REDIS, TIER_ML, TIER_WORKER, TIER_GATEWAY = range(4)


class StackError(RuntimeError):
    """A process could not start or did not become ready; the message says which and why."""


class Interrupted(BaseException):
    """Raised in the main thread by the first SIGINT/SIGTERM/SIGHUP so `finally` blocks run."""


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP: the first raises Interrupted, every later one is only recorded."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.armed = False
        self._held = 0

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handler)
        self.armed = True

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            print(f"  [stack] {name} again: still stopping", file=sys.stderr, flush=True)
            return
        self.received = name
        if self.armed and self._held == 0:
            self.armed = False
            raise Interrupted(name)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """No Interrupted inside the block (e.g. between fork and recording the child): raised after it."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if self._held == 0 and self.armed and self.received is not None:
            self.armed = False
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


# -- HTTP, SSE and WebSocket clients ----------------------------------------------------------


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


class WebSocket:
    """A minimal RFC 6455 client (text frames, ping/pong, close): enough to follow job events."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws" or parts.hostname is None:
            raise ValueError(f"only ws:// URLs are supported: {url}")
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode()
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if " 101 " not in status or accept.encode() not in head:
            raise AssertionError(f"WebSocket upgrade refused: {status}")

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("WebSocket closed by the server")
        return chunk

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self) -> str:
        """The next text message (answers pings on the way)."""
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)  # server frames are not masked
            opcode = first & 0x0F
            if opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                raise ConnectionError(f"WebSocket closed: {payload[2:].decode(errors='replace')}")
            elif opcode in (0x0, 0x1):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, struct.pack("!H", 1000))
        self.sock.close()


# -- processes ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Service:
    """One supervised process: how to start it again, and its restart state."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    tier: int
    proc: subprocess.Popen[bytes]
    started: float
    failures: int = 0
    restart_at: float | None = None


class Stack:
    """Processes of one local stack. Use as a context manager.

    console=False: each process writes to DIR/NAME.log (the e2e test and the bench read them);
    console=True: every output line is printed with the process name in front (`make run`).
    """

    def __init__(
        self,
        name: str = "stack",
        *,
        quiet: bool = False,
        console: bool = False,
        run_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.temporary = run_dir is None
        self.dir = run_dir or Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.quiet = quiet
        self.console = console
        self.env = dict(env or {})  # given to every service, e.g. BUS_PARTITIONS
        self.services: dict[str, Service] = {}
        self.python = sys.executable
        self.package = ml_package()
        self.redis_url = ""
        self.ml_url = ""
        self.gateway_url = ""
        self.metrics: dict[str, str] = {}  # process name -> its /metrics URL
        self.api_key = "stack-client-" + os.urandom(16).hex()
        self.ml_api_key = "stack-internal-" + os.urandom(16).hex()
        self._print_lock = threading.Lock()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self, msg: str) -> None:
        if not self.quiet:
            with self._print_lock:
                print(f"  [stack] {msg}", flush=True)

    @property
    def partitions(self) -> int:
        return int(self.env.get("BUS_PARTITIONS", os.environ.get("BUS_PARTITIONS", "1")))

    def bus(self) -> Bus:
        return Bus(self.redis_url, self.partitions)

    # -- start, stop, restart ---------------------------------------------------------------

    def spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, tier: int
    ) -> subprocess.Popen[bytes]:
        if name in self.services:
            raise StackError(f"{name} is running already")
        with SIGNALS.held():  # never a child that close() does not know about
            proc = self._popen(name, argv, {**self.env, **env}, cwd)
            self.services[name] = Service(name, argv, {**self.env, **env}, cwd, tier, proc, time.monotonic())
        self.log(f"started {name} (pid {proc.pid})")
        return proc

    def _popen(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        if self.console:
            out: Any = subprocess.PIPE
        else:
            out = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it from here
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: signals reach the whole tree
            )
        finally:
            if not self.console:
                out.close()
        if self.console and proc.stdout is not None:
            threading.Thread(target=self._pump, args=(name, proc.stdout), daemon=True).start()
        return proc

    def _pump(self, name: str, pipe: Any) -> None:
        prefix = f"{name:<12}| ".encode()
        for line in pipe:
            with self._print_lock:
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.buffer.flush()
        pipe.close()

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        return {name: svc.proc for name, svc in self.services.items()}

    def signal(self, name: str, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.services[name].proc.pid, sig)

    def stop(self, name: str, timeout: float = STOP_TIMEOUT_S) -> int | None:
        codes = self.stop_many([name], timeout)
        return codes.get(name)

    def stop_many(self, names: Sequence[str], timeout: float = STOP_TIMEOUT_S) -> dict[str, int]:
        """SIGTERM to every named process group at once, wait, then SIGKILL what is left."""
        stopping = [svc for name in names if (svc := self.services.get(name)) is not None]
        for svc in stopping:
            if svc.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(svc.proc.pid, signal.SIGTERM)
                    os.killpg(svc.proc.pid, signal.SIGCONT)  # a stopped (SIGSTOP) process handles it now
        deadline = time.monotonic() + timeout
        codes: dict[str, int] = {}
        for svc in stopping:
            with contextlib.suppress(subprocess.TimeoutExpired):
                svc.proc.wait(max(0.0, deadline - time.monotonic()))
            if svc.proc.poll() is None:
                self.log(f"{svc.name} ignored SIGTERM for {timeout:g}s; killing it")
            with contextlib.suppress(ProcessLookupError):  # also whatever it left in its group
                os.killpg(svc.proc.pid, signal.SIGKILL)
            codes[svc.name] = svc.proc.wait()
            del self.services[svc.name]
        return codes

    def close(self) -> None:
        with SIGNALS.held():  # a signal must not cut the shutdown short; it is raised afterwards
            for tier in sorted({svc.tier for svc in self.services.values()}, reverse=True):
                self.stop_many([svc.name for svc in self.services.values() if svc.tier == tier])
            if self.temporary:
                shutil.rmtree(self.dir, ignore_errors=True)

    def supervise(self, until: Callable[[], bool] = lambda: False, interval: float = 0.2) -> None:
        """Restart every process that exits, with backoff, like compose and Kubernetes do."""
        while not until():
            self.restart_exited()
            time.sleep(interval)

    def restart_exited(self) -> None:
        now = time.monotonic()
        for svc in list(self.services.values()):
            code = svc.proc.poll()
            if code is None:
                continue
            if svc.restart_at is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(svc.proc.pid, signal.SIGKILL)  # its children, if any were left
                if now - svc.started >= BACKOFF_RESET_S:
                    svc.failures = 0
                delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**svc.failures)
                svc.failures += 1
                svc.restart_at = now + delay
                self.log(f"{svc.name} (pid {svc.proc.pid}) exited with status {code}; restart in {delay:g}s")
            elif now >= svc.restart_at:
                with SIGNALS.held():
                    svc.proc = self._popen(svc.name, svc.argv, svc.env, svc.cwd)
                    svc.started, svc.restart_at = time.monotonic(), None
                self.log(f"restarted {svc.name} (pid {svc.proc.pid}, restart {svc.failures})")

    # -- health ------------------------------------------------------------------------------

    def check_alive(self, *names: str) -> None:
        for name in names or tuple(self.services):
            code = self.services[name].proc.poll()
            if code is not None:
                raise StackError(f"{name} exited with {code}" + (f":\n{self.tail(name)}" if not self.console else ""))

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
                tails = "".join(f"\n--- {n} ---\n{self.tail(n)}" for n in watch if not self.console)
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
        consumers = {self.services[name].env["WORKER_NAME"] for name in names}
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
        self.spawn(name, [*argv, *extra], {}, self.dir, TIER_REDIS)

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
        self.spawn("ml-service", [self.python, "-m", self.package], env, ML_DIR, TIER_ML)
        self.ml_url = f"http://127.0.0.1:{port}"
        if wait:
            self.wait_http("ml-service", f"{self.ml_url}/readyz")
        return self.ml_url

    def start_worker(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        full_env = {**self.common_env(), "WORKER_NAME": name, **self.metrics_env(name), **env}
        return self.spawn(name, [self.python, "-m", f"{self.package}.worker"], full_env, ML_DIR, TIER_WORKER)

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
        self.spawn("gateway", ["node", "--enable-source-maps", str(server)], full_env, GATEWAY_DIR, TIER_GATEWAY)
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
