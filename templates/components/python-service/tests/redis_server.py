"""Start a real redis-server, or a three-master Redis Cluster, for the tests.

Bus semantics need the real thing, not a fake. The cluster is made the way an operator makes
one: `redis-server --cluster-enabled yes` three times on loopback, then
`redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INSTALL_HINT = (
    "redis-server is not installed; the job-bus tests need it. Install it with "
    "`sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS)."
)
CLUSTER_BUS_OFFSET = 10_000  # a cluster node also listens on port + 10000 (the cluster bus)


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class LocalCluster:
    nodes: list[RedisServer]
    workdir: Path
    _tmp: tempfile.TemporaryDirectory[str] = field(repr=False)

    @property
    def url(self) -> str:
        """`redis+cluster://` with every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self._tmp.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _spawn(executable: str, port: int, *extra: str, cwd: Path | None = None) -> RedisServer | None:
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [executable, *args, *extra], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(port):
            return RedisServer(process, port)
        time.sleep(0.02)
    process.kill()
    process.wait()
    return None


def start_redis_server(port: int | None = None) -> RedisServer:
    """A redis-server on `port`, or on a free loopback port (fails clearly if not installed)."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    for _ in range(3):  # a free port could be taken between choosing and binding it
        server = _spawn(executable, port or free_port())
        if server is not None:
            return server
    pytest.fail("redis-server did not start", pytrace=False)


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster-bus ports (+10000) are free too, below 55536."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20_000, 45_000)
        if port not in ports and _port_is_free(port) and _port_is_free(port + CLUSTER_BUS_OFFSET):
            ports.append(port)
    return ports


def start_redis_cluster(masters: int = 3) -> LocalCluster:
    """A Redis Cluster of `masters` nodes on loopback; skips the test if Redis is not installed."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are needed for the Redis Cluster tests")
    tmp = tempfile.TemporaryDirectory(prefix="redis-cluster-")
    workdir = Path(tmp.name)
    nodes: list[RedisServer] = []
    cluster = LocalCluster(nodes, workdir, tmp)
    try:
        for port in _cluster_ports(masters):
            node_dir = workdir / str(port)
            node_dir.mkdir()
            node = _spawn(
                server,
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                cwd=node_dir,
            )
            if node is None:
                pytest.fail(
                    f"redis-server --cluster-enabled did not start on {port}", pytrace=False
                )
            nodes.append(node)
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        _wait_cluster_ok(cli, nodes)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_cluster_ok(cli: str, nodes: list[RedisServer]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        infos = [
            subprocess.run(
                [cli, "-p", str(node.port), "cluster", "info"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            for node in nodes
        ]
        if all("cluster_state:ok" in info for info in infos):
            return
        time.sleep(0.1)
    pytest.fail("the Redis Cluster did not reach cluster_state:ok", pytrace=False)
