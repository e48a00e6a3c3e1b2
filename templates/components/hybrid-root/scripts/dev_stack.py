"""`make run`: the whole stack on this machine without Docker, run by supervisord.

supervisord (PyPI `supervisor`) starts, restarts (at once after a process was up; 1 s, 2 s, 3 s...
while it keeps failing to start) and, on SIGTERM, stops every program, gateway first and Redis
last, each with its process group; scripts/stack_log.py prefixes their output. This is the
project-specific part: check the settings, write .run/supervisord.conf, start supervisord, wait
until every service is ready (a program failing meanwhile stops the start), print the banner.
The first SIGINT/SIGTERM/SIGHUP becomes one SIGTERM to supervisord (to which SIGHUP would mean
"reload"); later ones are ignored, so the shutdown runs to its end.

Environment: HOST (127.0.0.1), PORT (8080), ML_PORT (8000, or a free port when taken),
WORKERS (2), GATEWAY_PROCESSES (the cores left by the WORKERS, at least 1: the gateway's
HTTP_PROCESSES, node:cluster),
REDIS_URL, API_KEYS, ML_API_KEY (else from .env: `make run` writes it with fresh keys when
API_KEYS is not set and there is none), BUS_PARTITIONS, LOG_LEVEL (info).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from http.client import HTTPException
from pathlib import Path
from types import FrameType
from typing import Any

from dotenv import dotenv_values  # python-dotenv, through pydantic-settings
from redis.exceptions import RedisError
from stacklib import (
    GATEWAY_DIR,
    ML_DIR,
    ROOT,
    Bus,
    StackError,
    free_port,
    http,
    ml_package,
    port_is_free,
    usable_cores,
)
from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

RUN_DIR = ROOT / ".run"
ENV_FILE = ROOT / ".env"  # git-ignored; `make run` writes it with fresh keys when none are set
PROGRAM = """
[program:{name}]
command={command}
directory={directory}
environment={environment}
priority={priority}
autorestart=true
startsecs=2
startretries=10
stopasgroup=true
killasgroup=true
stopwaitsecs=15
redirect_stderr=true
stdout_logfile={logfile}
stdout_logfile_maxbytes=1MB
stdout_logfile_backups=0
stdout_events_enabled=true
"""


def whole_number(name: str, default: str) -> int:
    value = os.environ.get(name) or default
    if not value.isdigit():
        raise StackError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def ini(value: str) -> str:
    """A value for supervisord's config: `%` doubled (its own expansion), no newline."""
    if "\n" in value:
        raise StackError(f"a setting holds a newline: {value!r}")
    return value.replace("%", "%%")


def program(name: str, argv: list[str], directory: Path, priority: int, env: dict[str, str]) -> str:
    for key, value in env.items():
        if '"' in value:
            raise StackError(f"{key} holds a double quote, which supervisord's environment= cannot carry")
    return PROGRAM.format(
        name=name,
        command=ini(shlex.join(argv)),
        directory=ini(str(directory)),
        environment=ini(",".join(f'{key}="{value}"' for key, value in env.items())),
        priority=priority,
        # Besides the prefixed relay: what a program said before it failed to start, read back by
        # Plan.ready (the relay may still be behind, or be stopped, when the start is called off).
        logfile=ini(str(program_log(name))),
    )


def program_log(name: str) -> Path:
    return RUN_DIR / f"{name}.log"


def last_lines(name: str, count: int = 15) -> str:
    try:
        lines = program_log(name).read_text(errors="replace").splitlines()[-count:]
    except OSError:
        return ""
    return "".join(f"\n{name:<12}| {line}" for line in lines)


class Plan:
    """The settings of one `make run`, and the supervisord config they make."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.host = os.environ.get("HOST") or "127.0.0.1"
        self.port = whole_number("PORT", "8080")
        self.workers = whole_number("WORKERS", "2")
        # The gateway keeps no state of its own: one process per core the stream workers leave it.
        # More would take turns with the workers on the same cores: on two cores with two workers,
        # a second gateway process raised the job latency p99 at 100 jobs/s by about half and
        # completed no more jobs.
        spare = usable_cores() - self.workers
        self.gateway_processes = max(1, whole_number("GATEWAY_PROCESSES", str(max(1, spare))))
        if not port_is_free(self.host, self.port):
            raise StackError(f"port {self.port} on {self.host} is taken: set PORT to another port")
        self.ml_port = whole_number("ML_PORT", "8000" if port_is_free("127.0.0.1", 8000) else "0") or free_port()
        # Keys: from the environment, else from .env (the first `make run` writes it, see the
        # Makefile), else throw-away ones for this session.
        saved = {k: v for k, v in dotenv_values(ENV_FILE).items() if v} if ENV_FILE.is_file() else {}
        api_keys = os.environ.get("API_KEYS") or saved.get("API_KEYS")
        self.key_source = "environment" if os.environ.get("API_KEYS") else str(ENV_FILE) if api_keys else ""
        self.api_key = api_keys or "dev-" + secrets.token_hex(16)
        self.ml_api_key = os.environ.get("ML_API_KEY") or saved.get("ML_API_KEY") or "dev-" + secrets.token_hex(16)
        self.own_redis = not os.environ.get("REDIS_URL")
        self.redis_port = free_port()
        self.redis_url = os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{self.redis_port}/0"
        self.worker_names = {
            f"worker-{n}": f"{socket.gethostname()}-dev-{n}-{os.getpid()}" for n in range(1, self.workers + 1)
        }
        self.metrics = {name: free_port() for name in ["ml-service", *self.worker_names, "gateway"]}
        self.ml_url = f"http://127.0.0.1:{self.ml_port}"
        self.gateway_url = f"http://{self.host}:{self.port}"
        self.rpc_password = secrets.token_hex(16)  # supervisord's control socket
        self.rpc_login = f"username=stack\npassword={self.rpc_password}\n"

    def config(self) -> str:
        socket_path = self.socket_path
        python, package = sys.executable, ml_package()
        parts = [
            # nodaemon: its own log goes to stdout (logfile: no second copy).
            f"[supervisord]\nnodaemon=true\nlogfile=/dev/null\nlogfile_maxbytes=0\nloglevel=info\n"
            f"pidfile={ini(str(RUN_DIR / 'supervisord.pid'))}\nchildlogdir={ini(str(RUN_DIR))}\n",
            # The control socket, for this script and `supervisorctl -c .run/supervisord.conf`.
            f"[unix_http_server]\nfile={ini(str(socket_path))}\nchmod=0700\n{self.rpc_login}",
            f"[supervisorctl]\nserverurl=unix://{ini(str(socket_path))}\n{self.rpc_login}",
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
            # Relays every program's output and state changes; started first, stopped last.
            f"[eventlistener:stack-log]\ncommand={ini(shlex.join([python, str(ROOT / 'scripts' / 'stack_log.py')]))}\n"
            "events=PROCESS_LOG,PROCESS_STATE\nbuffer_size=10000\npriority=1\nautorestart=true\n"
            "stdout_logfile=NONE\nstderr_logfile=/dev/stdout\nstderr_logfile_maxbytes=0\n",
        ]
        if self.own_redis:
            redis = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""]
            redis += ["--appendonly", "no", "--maxmemory-policy", "noeviction"]
            redis += ["--dir", str(RUN_DIR), "--loglevel", "warning"]
            parts.append(program("redis", redis, RUN_DIR, 10, {}))
        ml_env = {"HOST": "127.0.0.1", "PORT": str(self.ml_port), "API_KEYS": self.ml_api_key}
        ml_env["METRICS_PORT"] = str(self.metrics["ml-service"])
        parts.append(program("ml-service", [python, "-m", package], ML_DIR, 20, ml_env))
        for name, worker in self.worker_names.items():
            env = {"WORKER_NAME": worker, "METRICS_PORT": str(self.metrics[name])}
            # A health file each: with the shared default one worker's beat would hide the
            # other's over-time mark (`python -m <package>.worker --check`).
            env["WORKER_HEALTH_FILE"] = str(RUN_DIR / f"{name}.alive")
            parts.append(program(name, [python, "-m", f"{package}.worker"], ML_DIR, 30, env))
        gateway_env = {
            "NODE_ENV": "production",
            "HOST": self.host,
            "PORT": str(self.port),
            "ML_URL": self.ml_url,
            "ML_API_KEY": self.ml_api_key,
            "API_KEYS": self.api_key,
            "METRICS_PORT": str(self.metrics["gateway"]),
            "HTTP_PROCESSES": str(self.gateway_processes),
        }
        server = GATEWAY_DIR / "dist" / "server.js"
        node = ["node", "--max-semi-space-size=32", "--enable-source-maps", str(server)]  # as the image's CMD
        parts.append(program("gateway", node, GATEWAY_DIR, 40, gateway_env))
        return "\n".join(parts)

    def supervisor(self) -> Any:
        """supervisord's XML-RPC interface, on a new connection (a failed one cannot be used again)."""
        transport = SupervisorTransport("stack", self.rpc_password, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport).supervisor

    def ready(self, bus: Bus) -> bool:
        """True once every service answers; StackError when a program failed while starting."""
        for info in self.supervisor().getAllProcessInfo():
            if info["statename"] in ("BACKOFF", "EXITED", "FATAL"):
                name = info["name"]
                raise StackError(f"{name} exited while the stack was starting; its last lines:{last_lines(name)}")
        urls = [f"{self.ml_url}/readyz", f"{self.gateway_url}/readyz"]
        try:
            up = all(http("GET", url, timeout=2).status == 200 for url in urls)
        except OSError:
            return False
        return up and bus.consumers() >= set(self.worker_names.values())

    def banner(self) -> str:
        key = self.api_key.split(",")[0]
        gw = self.gateway_url
        metrics = "\n              ".join(
            f"http://127.0.0.1:{port}/metrics  ({name})" for name, port in self.metrics.items()
        )
        return f"""
  Stack is up ({self.workers} workers under supervisord: a process that exits is restarted).  Ctrl-C stops it.

  gateway     {gw}        (X-API-Key: {key}{f"; API_KEYS from {self.key_source}" if self.key_source else ""})
  ml-service  {self.ml_url}        (internal; X-API-Key: {self.ml_api_key})
  redis       {self.redis_url}
  metrics     {metrics}

  curl -s -H 'X-API-Key: {key}' -H 'content-type: application/json' \\
       -d '{{"features": [5.1, 3.5, 1.4, 0.2]}}' {gw}/v1/predict
  curl -s -H 'X-API-Key: {key}' -H 'content-type: application/json' \\
       -d '{{"features": [6.7, 3.0, 5.2, 2.3]}}' {gw}/v1/jobs
  curl -sN -H 'X-API-Key: {key}' {gw}/v1/jobs/<id>/events
"""


def stop_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def say(message: str) -> None:
    print(f"  [stack] {message}", flush=True)


def main() -> int:
    sock_dir = Path(tempfile.mkdtemp(prefix="stack-"))  # a short path: a unix socket's is ~100 bytes at most
    try:
        plan = Plan(sock_dir / "supervisor.sock")
        RUN_DIR.mkdir(exist_ok=True)
        for log in RUN_DIR.glob("*.log"):  # supervisord appends: the last run's lines are not this one's
            log.unlink(missing_ok=True)
        conf = RUN_DIR / "supervisord.conf"
        conf.unlink(missing_ok=True)
        conf.touch(mode=0o600)  # it holds the keys and the control socket's password
        conf.write_text(plan.config())
        return run(plan, conf)
    except StackError as exc:
        print(f"dev-stack: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def run(plan: Plan, conf: Path) -> int:
    os.environ |= {"REDIS_URL": plan.redis_url, "LOG_LEVEL": os.environ.get("LOG_LEVEL") or "info"}
    os.environ["PYTHONUNBUFFERED"] = "1"
    supervisord = Path(sys.executable).parent / "supervisord"
    # A session of its own: the terminal's signals reach this script only, which sends one SIGTERM.
    # And should this script die without a word (SIGKILL, OOM), supervisord gets that SIGTERM from
    # the kernel instead of running on with the whole stack.
    proc = subprocess.Popen(
        [str(supervisord), "-c", str(conf)], cwd=ROOT, start_new_session=True, preexec_fn=stop_with_parent
    )
    received: list[str] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        if not received:
            received.append(signal.Signals(signum).name)
            say(f"{received[0]}: stopping every process (gateway first, Redis last)")
            proc.send_signal(signal.SIGTERM)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    bus = Bus(plan.redis_url, int(os.environ.get("BUS_PARTITIONS") or "1"))
    failed = False
    try:
        deadline = time.monotonic() + 120
        while not received and proc.poll() is None:
            try:
                if plan.ready(bus):
                    print(plan.banner(), flush=True)
                    break
            except (OSError, HTTPException, RedisError, xmlrpc.client.Fault):
                pass  # supervisord or Redis not listening yet
            except StackError as exc:
                say(str(exc))
                failed = True
            if failed or time.monotonic() > deadline:
                say("the stack did not start; stopping it" if failed else "not ready after 120s; stopping it")
                failed = True
                stop(signal.SIGTERM, None)
            time.sleep(0.2)
        proc.wait()
    finally:
        bus.close()
        if proc.poll() is None:  # this script failed: supervisord still stops everything
            proc.terminate()
            proc.wait()
    say("stopped")
    if failed:
        return 1
    if received:
        return 130 if received[0] == "SIGINT" else 143
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
