"""Start and stop the local stack (redis-server, ML service, workers, gateway) as real processes.

Shared by the end-to-end test (e2e/run_e2e.py) and the benchmark (scripts/bench.py). Standard
library only; run it with the ML service's interpreter (ml-service/.venv/bin/python) so the ML
service and the workers start with the same environment. Every process runs in its own process
group and is stopped (SIGTERM, then SIGKILL) by Stack.close(), also when the caller fails or is
interrupted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ML_DIR = ROOT / "ml-service"
GATEWAY_DIR = ROOT / "gateway"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455


def ml_package() -> str:
    """The ML service's import package: ML_PACKAGE, or the one package under ml-service/src."""
    if name := os.environ.get("ML_PACKAGE"):
        return name
    found = sorted(p.parent.name for p in (ML_DIR / "src").glob("*/__init__.py"))
    if len(found) != 1:
        raise RuntimeError(f"set ML_PACKAGE: expected one package in {ML_DIR / 'src'}, found {found}")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Interrupted(BaseException):
    """Raised in the main thread on SIGTERM/SIGHUP so `finally` blocks run."""


def raise_on_signals() -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


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


class Stack:
    """Processes of one local stack. Use as a context manager."""

    def __init__(self, name: str = "stack", quiet: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.quiet = quiet
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.python = sys.executable
        self.package = ml_package()
        self.redis_url = ""
        self.ml_url = ""
        self.gateway_url = ""
        self.api_key = "e2e-client-" + os.urandom(8).hex()
        self.ml_api_key = "e2e-internal-" + os.urandom(8).hex()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(f"  [stack] {msg}", flush=True)

    # -- processes -------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        logfile = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: signals reach the whole tree
        )
        logfile.close()
        self.procs[name] = proc
        self.log(f"started {name} (pid {proc.pid})")
        return proc

    def signal(self, name: str, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, sig)

    def stop(self, name: str, timeout: float = 10.0) -> int | None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.log(f"{name} ignored SIGTERM for {timeout}s; killing it")
        # Also whatever the process left behind in its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def check_alive(self, *names: str) -> None:
        for name in names or tuple(self.procs):
            code = self.procs[name].poll()
            if code is not None:
                raise RuntimeError(f"{name} exited with {code}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_http(self, name: str, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive(name)
            try:
                if http("GET", url, timeout=2).status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready at {url} after {timeout}s:\n{self.tail(name)}")
            time.sleep(0.1)

    # -- the services ----------------------------------------------------------------------

    def start_redis(self) -> str:
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed (apt install redis-server / brew install redis)")
        port = free_port()
        self.spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--loglevel",
                "warning",
            ],
            {},
            self.dir,
        )
        deadline = time.monotonic() + 10
        while True:
            self.check_alive("redis")
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        return self.redis_url

    def common_env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis_url, "LOG_LEVEL": os.environ.get("STACK_LOG_LEVEL", "info")}

    def start_ml(self) -> str:
        port = free_port()
        env = {**self.common_env(), "HOST": "127.0.0.1", "PORT": str(port), "API_KEYS": self.ml_api_key}
        self.spawn("ml-service", [self.python, "-m", self.package], env, ML_DIR)
        self.ml_url = f"http://127.0.0.1:{port}"
        self.wait_http("ml-service", f"{self.ml_url}/readyz")
        return self.ml_url

    def start_worker(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        full_env = {**self.common_env(), "WORKER_NAME": name, **env}
        return self.spawn(name, [self.python, "-m", f"{self.package}.worker"], full_env, ML_DIR)

    def wait_workers(self, r: Any, names: list[str], timeout: float = 60.0) -> None:
        """Wait until every named worker has joined the consumer group (its first XREADGROUP)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive(*names)
            try:
                joined = {c["name"] for c in r.xinfo_consumers("jobs:predict", "ml-workers")}
            except Exception:  # noqa: BLE001 - no stream or group yet
                joined = set()
            if joined.issuperset(names):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {names} did not start within {timeout}s")
            time.sleep(0.1)

    def start_gateway(self) -> str:
        server = GATEWAY_DIR / "dist" / "server.js"
        if not server.exists():
            raise RuntimeError("gateway/dist/server.js is missing: run `make -C gateway build`")
        port = free_port()
        env = {
            **self.common_env(),
            "NODE_ENV": "production",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "ML_URL": self.ml_url,
            "ML_API_KEY": self.ml_api_key,
            "API_KEYS": self.api_key,
            "RATE_LIMIT_MAX": "1000000",  # the e2e test and the bench send far more than 100/min
        }
        self.spawn("gateway", ["node", str(server)], env, GATEWAY_DIR)
        self.gateway_url = f"http://127.0.0.1:{port}"
        self.wait_http("gateway", f"{self.gateway_url}/readyz")
        return self.gateway_url
