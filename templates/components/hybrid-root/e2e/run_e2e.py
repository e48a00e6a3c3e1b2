"""End-to-end test of the whole stack as real processes, with faults injected for real.

Run with `make e2e` (builds the gateway, then runs this file with ml-service/.venv/bin/python).
Three stacks, one after the other:

1. redis-server, the ML service, two workers and the gateway (BUS_PARTITIONS=4): predict, jobs
   over SSE, a worker killed while it holds jobs, a poison row among good jobs (MODEL_FAULT_ON),
   idempotency, chunked oversize bodies, the schemathesis CLI against /openapi.json, Redis
   paused and resumed, a worker stopped with SIGTERM;
2. `make run` itself (supervisord): a worker killed under it comes back while the gateway keeps
   serving (killed again while starting: after a backoff), every program's output carries its
   name, GATEWAY_PROCESSES gateway processes serve, and SIGTERM to make's process group leaves
   no process behind; without GATEWAY_PROCESSES, one gateway process per core the workers leave;
3. a three-master Redis Cluster on loopback (REDIS_URL=redis+cluster://..., BUS_PARTITIONS=4):
   the job flow and a killed worker's jobs reclaimed across the cluster's nodes.

Every assertion reads HTTP answers, the Redis state or the process table, never a service's
logs (only `make run`'s own "restart" line and its prefixes). Each step prints what it shows; the last line is
`N passed, M failed` and the exit status is non-zero on any failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from stacklib import (
    GATEWAY_DIR,
    LOAD_TEST_ENV,
    ML_DIR,
    ROOT,
    SIGNALS,
    Bus,
    Interrupted,
    Stack,
    free_port,
    http,
    http_chunked,
    ml_package,
    sse_events,
)
from websockets.sync.client import connect as websocket

PARTITIONS = 4
POISON = 7.25  # MODEL_FAULT_ON: the model raises on a batch holding a row whose first feature is this
MAX_DELIVERIES = 3
WORKER_ENV = {
    "WORKER_DELAY_MS": "150",  # keeps jobs in hand long enough to kill a worker holding some
    "MODEL_FAULT_ON": str(POISON),
    "MIN_IDLE_MS": "1500",  # a killed worker's jobs are taken over quickly ...
    "COMPUTE_TIMEOUT_MS": "1000",  # ... and MIN_IDLE_MS must exceed this + 500 (refused otherwise)
    "MAX_DELIVERIES": str(MAX_DELIVERIES),
    "BATCH_SIZE": "2",  # the poison row shares its batch with a good one
}
MAKE_RUN_WORKERS = 2
CLUSTERED = 2  # GATEWAY_PROCESSES of make run: a node:cluster primary and this many server processes
BODY_LIMIT = 65_536  # default of both services (BODY_LIMIT_BYTES, MAX_BODY_BYTES)
SCHEMATHESIS_EXAMPLES = 10

SAMPLES = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [5.9, 3.0, 4.2, 1.5],
    "virginica": [6.7, 3.0, 5.2, 2.3],
}
LABELS = list(SAMPLES)
RAW_ERROR = re.compile(r"Traceback|Error:|Exception|MODEL_FAULT_ON|\.py\b")


class E2E:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.bus: Bus = stack.bus()
        self.gw = stack.gateway_url
        self.keys = stack.api_key.split(",")
        self.auth = {"x-api-key": self.keys[0]}

    # -- helpers ---------------------------------------------------------------------------

    def submit(self, features: list[float], **headers: str) -> str:
        resp = http("POST", f"{self.gw}/v1/jobs", {"features": features}, {**self.auth, **headers})
        assert resp.status == 202, f"POST /v1/jobs: {resp}"
        job_id = resp.json()["id"]
        assert isinstance(job_id, str) and job_id, resp
        return job_id

    def get_job(self, job_id: str, auth: dict[str, str] | None = None) -> dict[str, Any]:
        resp = http("GET", f"{self.gw}/v1/jobs/{job_id}", headers=auth or self.auth)
        assert resp.status == 200, f"GET /v1/jobs/{job_id}: {resp}"
        body: dict[str, Any] = resp.json()
        return body

    def wait_terminal(
        self, job_ids: list[str], timeout: float, auth: dict[str, str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Poll GET /v1/jobs/{id} as `auth` (default: the first key) until every job is done or failed."""
        deadline = time.monotonic() + timeout
        left = set(job_ids)
        final: dict[str, dict[str, Any]] = {}
        while left:
            for job_id in sorted(left):
                body = self.get_job(job_id, auth)
                if body["status"] in ("done", "failed"):
                    final[job_id] = body
                    left.discard(job_id)
            if left:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{len(left)} jobs not finished after {timeout}s")
                self.stack.check_alive("gateway", "ml-service")
                time.sleep(0.1)
        return final

    def done_events(self, job_id: str) -> int:
        return sum(1 for e in self.bus.events(job_id) if e.get("status") == "done")

    def wait_held(self, worker: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.bus.pending(worker) == 0:
            assert time.monotonic() < deadline, f"{worker} never held a job"
            time.sleep(0.01)

    # -- steps -----------------------------------------------------------------------------

    def step_predict(self) -> None:
        body = {"features": SAMPLES["setosa"]}
        resp = http("POST", f"{self.gw}/v1/predict", body, {**self.auth, "x-request-id": "e2e-predict-1"})
        assert resp.status == 200, resp
        answer = resp.json()
        assert answer["label"] == "setosa", answer
        assert set(answer["probabilities"]) == set(SAMPLES), answer
        assert resp.headers.get("x-request-id") == "e2e-predict-1", resp.headers
        print(f"    gateway  -> {answer['label']} {answer['probabilities']} ({answer['model_version']})")
        direct = http("POST", f"{self.stack.ml_url}/predict", body, {"x-api-key": self.stack.ml_api_key})
        assert direct.status == 200 and direct.json() == answer, f"ML service answered {direct}"
        print("    ML service answers the same directly (with ML_API_KEY)")
        denied = http("POST", f"{self.gw}/v1/predict", body)
        assert denied.status == 401, f"no API key: {denied}"
        ml_denied = http("POST", f"{self.stack.ml_url}/predict", body)
        assert ml_denied.status == 401, f"ML service without a key: {ml_denied}"
        print("    without X-API-Key: 401 from the gateway and from the ML service")

    def step_jobs(self) -> None:
        job_id = self.submit(SAMPLES["virginica"], **{"x-request-id": "e2e-job-1"})
        print(f"    POST /v1/jobs -> 202 {job_id}; following /v1/jobs/{job_id}/events")
        seen: list[str] = []
        last: dict[str, Any] = {}
        for ev in sse_events(f"{self.gw}/v1/jobs/{job_id}/events", self.auth, timeout=30):
            last = json.loads(ev["data"])
            assert last["id"] == job_id, last
            seen.append(last["status"])
            if last["status"] in ("done", "failed"):
                break
        print(f"    SSE statuses: {' -> '.join(seen)}")
        assert seen and seen[-1] == "done", seen
        order = ["queued", "running", "done"]
        assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen), seen
        assert last["result"]["label"] == "virginica", last
        assert self.bus.job(job_id).get("request_id") == "e2e-job-1", "request id not carried into the job"

        expected = {self.submit(SAMPLES[LABELS[i % 3]]): LABELS[i % 3] for i in range(12)}
        final = self.wait_terminal(list(expected), timeout=30)
        for jid, label in expected.items():
            assert final[jid]["status"] == "done", final[jid]
            assert final[jid]["result"]["label"] == label, final[jid]
        used = {self.bus.key(jid, "") for jid in expected}
        print(f"    {len(expected)} more jobs over {len(used)} partitions: every GET /v1/jobs/{{id}} done, right label")

    def step_worker_crash(self) -> None:
        victim, survivor = "e2e-worker-1", "e2e-worker-2"
        job_ids = [self.submit(SAMPLES[LABELS[i % 3]]) for i in range(30)]
        print(f"    submitted {len(job_ids)} jobs")
        self.wait_held(victim)
        self.stack.signal(victim, signal.SIGKILL)
        self.stack.procs[victim].wait(5)
        held = self.bus.pending(victim)
        print(f"    SIGKILLed {victim} while it held {held} job(s) (XPENDING for that consumer)")
        assert held > 0, "the killed worker held no job"

        final = self.wait_terminal(job_ids, timeout=60)
        assert all(b["status"] == "done" for b in final.values()), final
        done = [self.done_events(jid) for jid in job_ids]
        assert done == [1] * len(job_ids), f"done events per job: {done}"
        assert self.bus.pending() == 0, f"XPENDING {self.bus.pending()}"
        assert self.bus.dead() == [], "a job went to the dead-letter stream"
        print(f"    {survivor} reclaimed them: {len(job_ids)}/{len(job_ids)} done, one done event each, XPENDING 0")
        self.stack.stop(victim)
        self.stack.start_worker(victim, **WORKER_ENV)

    def step_poison(self) -> None:
        good = [SAMPLES[LABELS[i % 3]] for i in range(12)]
        ids = [self.submit(features) for features in good[:6]]
        poison = self.submit([POISON, 3.0, 1.0, 0.2])
        ids += [self.submit(features) for features in good[6:]]
        print(f"    poison row {poison} (features[0] == MODEL_FAULT_ON) among {len(ids)} good jobs, batches of 2")
        final = self.wait_terminal([*ids, poison], timeout=20 + 3 * MAX_DELIVERIES)
        labels = {jid: final[jid].get("result", {}).get("label") for jid in ids}
        wrong = {jid: final[jid] for i, jid in enumerate(ids) if labels[jid] != LABELS[i % 3]}
        assert not wrong, f"good jobs failed or mislabelled with the poison row: {wrong}"
        bad = final[poison]
        assert bad["status"] == "failed", bad
        assert bad.get("error") and not RAW_ERROR.search(bad["error"]), f"error shown to clients: {bad.get('error')!r}"
        dead = self.bus.dead()
        assert [d.get("job_id") for d in dead] == [poison], f"dead-letter entries: {dead}"
        assert self.bus.pending() == 0, f"XPENDING {self.bus.pending()}"
        print(f"    {len(ids)} good jobs done; only the poison job failed ({bad['error']!r}), the one dead letter")

    def step_idempotency(self) -> None:
        key = f"e2e-{uuid.uuid4()}"
        first = self.submit(SAMPLES["setosa"], **{"idempotency-key": key})
        second = self.submit(SAMPLES["setosa"], **{"idempotency-key": key})
        assert first == second, f"{first} != {second}"
        headers = {**self.auth, "idempotency-key": key}
        changed = http("POST", f"{self.gw}/v1/jobs", {"features": SAMPLES["virginica"]}, headers)
        assert changed.status == 422, f"same Idempotency-Key, another body: {changed}"
        other_client = self.submit(SAMPLES["setosa"], **{"x-api-key": self.keys[1], "idempotency-key": key})
        assert other_client != first, "two API keys share an Idempotency-Key"
        final = self.wait_terminal([first], timeout=20)
        assert final[first]["status"] == "done", final
        theirs = self.wait_terminal([other_client], timeout=20, auth={"x-api-key": self.keys[1]})
        assert theirs[other_client]["status"] == "done", theirs
        queued = [e for e in self.bus.events(first) if e.get("status") == "queued"]
        assert len(queued) == 1, f"the repeat enqueued again: {len(queued)} queued events"
        print(f"    same key and body: job {first}, enqueued once; another body: 422; another API key: own job")

    def step_ownership(self) -> None:
        mine = self.submit(SAMPLES["setosa"])
        other = {"x-api-key": self.keys[1], "x-request-id": "e2e-tenant-b"}
        never = str(uuid.uuid4())
        for suffix in ("", "/events"):
            theirs = http("GET", f"{self.gw}/v1/jobs/{mine}{suffix}", headers=other)
            unknown = http("GET", f"{self.gw}/v1/jobs/{never}{suffix}", headers=other)
            assert theirs.status == 404, f"another key read GET /v1/jobs/{{id}}{suffix}: {theirs}"
            shown, absent = theirs.json(), unknown.json()
            assert json.dumps(shown).replace(mine, "<id>") == json.dumps(absent).replace(never, "<id>"), (shown, absent)
        assert http("GET", f"{self.gw}/v1/jobs/{mine}", headers=self.auth).status == 200
        print(f"    job {mine} of key A: key B gets 404 on GET and on its events, the same body as an unknown id")
        if has_websocket():
            ws_url = self.gw.replace("http://", "ws://", 1) + "/v1/ws"
            with websocket(ws_url, additional_headers={"x-api-key": self.keys[1]}, open_timeout=10) as ws:
                ws.send(json.dumps({"type": "subscribe", "id": mine}))
                theirs_ws = json.loads(ws.recv(timeout=10))
                ws.send(json.dumps({"type": "subscribe", "id": never}))
                unknown_ws = json.loads(ws.recv(timeout=10))
            assert theirs_ws.get("code") == "not_found", theirs_ws
            assert json.dumps(theirs_ws).replace(mine, "<id>") == json.dumps(unknown_ws).replace(never, "<id>")
            print("    key B subscribing to it on /v1/ws: not_found, as for an unknown id")
        owner = self.bus.job(mine).get("owner", "")
        assert re.fullmatch(r"[0-9a-f]{16}", owner) and self.keys[0] not in owner, f"job owner field: {owner!r}"

    def step_websocket(self) -> None:
        job_id = self.submit(SAMPLES["versicolor"])
        ws_url = self.gw.replace("http://", "ws://", 1) + "/v1/ws"
        seen: list[str] = []
        with websocket(ws_url, additional_headers=self.auth, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "subscribe", "id": job_id}))
            while not seen or seen[-1] not in ("done", "failed"):
                event = json.loads(ws.recv(timeout=30))
                assert event.get("type") != "error", event
                assert event["id"] == job_id, event
                seen.append(event["status"])
        assert seen[-1] == "done" and event["result"]["label"] == "versicolor", event
        print(f"    /v1/ws subscribe {job_id}: {' -> '.join(seen)} ({event['result']['label']})")

    def step_chunked_oversize(self) -> None:
        targets = [
            ("gateway POST /v1/predict", f"{self.gw}/v1/predict", self.auth),
            ("gateway POST /v1/jobs", f"{self.gw}/v1/jobs", self.auth),
            ("ML service POST /predict", f"{self.stack.ml_url}/predict", {"x-api-key": self.stack.ml_api_key}),
        ]
        for title, url, headers in targets:
            resp = http_chunked(url, headers, oversize_body(16 * BODY_LIMIT))
            assert resp.status == 413, f"{title} with a chunked {16 * BODY_LIMIT // 1024} KiB body: {resp}"
            print(f"    {title}: chunked {16 * BODY_LIMIT // 1024} KiB, no Content-Length -> 413")
        assert http("GET", f"{self.stack.ml_url}/healthz").status == 200

    def step_schemathesis(self) -> None:
        argv = [
            str(ML_DIR / ".venv" / "bin" / "schemathesis"),
            "run",
            f"{self.gw}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(SCHEMATHESIS_EXAMPLES),
            "--seed",
            "20260101",
            "--workers",
            "1",
            "--request-timeout",
            "15",
            "--header",
            f"X-API-Key: {self.keys[0]}",
        ]
        env = {**os.environ, "NO_COLOR": "1"}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=150, check=False, env=env)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"schemathesis exit {proc.returncode}:\n{out[-8000:]}"
        summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed|errored)|No issues", line)]
        print(f"    schemathesis run /openapi.json, all checks, all phases: {'; '.join(summary[-2:]) or 'no failures'}")

    def step_redis_paused(self) -> None:
        before = self.submit(SAMPLES["setosa"])
        self.wait_terminal([before], timeout=20)
        self.stack.signal("redis", signal.SIGSTOP)
        try:
            for method, path, body in (
                ("POST", "/v1/jobs", {"features": SAMPLES["setosa"]}),
                ("GET", f"/v1/jobs/{before}", None),
            ):
                t0 = time.monotonic()
                resp = http(method, f"{self.gw}{path}", body, self.auth, timeout=30)
                took = time.monotonic() - t0
                assert resp.status == 503, f"{method} {path} with Redis paused: {resp}"
                assert resp.headers.get("retry-after", "").isdigit(), f"no Retry-After: {resp.headers}"
                assert not RAW_ERROR.search(resp.body.decode(errors="replace")), f"raw error text: {resp}"
                retry = resp.headers["retry-after"]
                print(f"    Redis paused (SIGSTOP): {method} {path} -> 503, Retry-After {retry} (in {took:.1f}s)")
            # Readiness is the gateway's own: it stays in its Service; ?verbose names Redis.
            ready = http("GET", f"{self.gw}/readyz", timeout=30)
            assert ready.status == 200, f"/readyz with Redis paused: {ready}"
            verbose = http("GET", f"{self.gw}/readyz?verbose", timeout=30)
            assert verbose.json()["checks"]["redis"] != "ok", f"/readyz?verbose with Redis paused: {verbose}"
        finally:
            self.stack.signal("redis", signal.SIGCONT)
        deadline = time.monotonic() + 30
        body = {"features": SAMPLES["virginica"]}
        while (resp := http("POST", f"{self.gw}/v1/jobs", body, self.auth, 30)).status != 202:
            assert time.monotonic() < deadline, f"no recovery 30s after Redis resumed: {resp}"
            time.sleep(0.5)
        final = self.wait_terminal([resp.json()["id"]], timeout=30)
        assert next(iter(final.values()))["status"] == "done", final
        assert self.get_job(before)["status"] == "done"
        print("    resumed (SIGCONT): a new job is accepted and done; /readyz stayed 200, ?verbose named Redis")

    def step_graceful_stop(self) -> None:
        name = "e2e-worker-2"
        job_ids = [self.submit(SAMPLES["versicolor"]) for _ in range(6)]
        self.wait_held(name)
        self.stack.signal(name, signal.SIGTERM)
        code = self.stack.procs[name].wait(15)
        assert code == 0, f"worker exited with {code}:\n{self.stack.tail(name)}"
        assert self.bus.pending(name) == 0, f"{name} left {self.bus.pending(name)} pending after SIGTERM"
        print(f"    SIGTERM: {name} committed the batch in hand and exited 0, nothing left pending")
        final = self.wait_terminal(job_ids, timeout=30)
        assert all(b["status"] == "done" for b in final.values()), final
        print("    the other worker finished the rest")

    def step_cluster_spread(self) -> None:
        # Ids are random: 24 jobs miss one of 4 partitions about once in 250 runs, so submit
        # until every partition has one (a cap keeps a broken partitioning from looping).
        job_ids: list[str] = []
        while len(job_ids) < 24 or (len({self.bus.key(j, "") for j in job_ids}) < PARTITIONS and len(job_ids) < 400):
            job_ids.append(self.submit(SAMPLES[LABELS[len(job_ids) % 3]]))
        self.wait_terminal(job_ids, timeout=30)
        nodes = {
            (node.host, node.port)
            for job_id in job_ids
            if (node := self.bus.r.get_node_from_key(self.bus.key(job_id, f"job:{job_id}"))) is not None
        }
        partitions = {self.bus.key(jid, "") for jid in job_ids}
        assert all(self.bus.job(jid).get("status") == "done" for jid in job_ids)
        assert len(partitions) == PARTITIONS, f"jobs used partitions {partitions}"
        assert len(nodes) >= 2, f"every partition on one node: {nodes}"
        print(f"    {len(job_ids)} jobs over {len(partitions)} partitions on {len(nodes)} cluster nodes, all done")


def oversize_body(total: int) -> Iterator[bytes]:
    yield b'{"features": [5.1, 3.5, 1.4, 0.2], "padding": "'
    for _ in range(total // 16_384):
        yield b"x" * 16_384
    yield b'"}'


def has_websocket() -> bool:
    """The gateway was generated with WebSocket support (it depends on @fastify/websocket)."""
    package = json.loads((GATEWAY_DIR / "package.json").read_text())
    return "@fastify/websocket" in package.get("dependencies", {})


# -- make run: supervision and shutdown ----------------------------------------------------------


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, command line), from ps (Linux and macOS)."""
    out = subprocess.run(["ps", "-A", "-o", "pid=,ppid=,pgid=,stat=,args="], capture_output=True, text=True, check=True)
    table = {}
    for line in out.stdout.splitlines():
        pid, ppid, pgid, stat, *args = line.split(None, 4)
        if not stat.startswith("Z"):  # a zombie is gone already; only its exit status is left
            table[int(pid)] = (int(ppid), int(pgid), " ".join(args))
    return table


def descendants(root: int) -> dict[int, tuple[int, str]]:
    """Every live process below `root` (and root itself): pid -> (process group, command line)."""
    table = process_table()
    found, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in table:
            found[pid] = (table[pid][1], table[pid][2])
            frontier += [child for child, (ppid, _pgid, _args) in table.items() if ppid == pid]
    return found


class MakeRun:
    """`make run` started as a user would, in its own process group, output in a file."""

    def __init__(self, workdir: Path, key: str | None = None, gateway_processes: int | None = CLUSTERED) -> None:
        self.log = workdir / "make-run.log"
        self.port = free_port()
        self.key = key or "e2e-make-run-" + os.urandom(16).hex()
        inherited = ("REDIS_URL", "BUS_PARTITIONS", "MAKEFLAGS", "MAKELEVEL", "GATEWAY_PROCESSES")
        env = {k: v for k, v in os.environ.items() if k not in inherited}
        if gateway_processes is not None:
            env["GATEWAY_PROCESSES"] = str(gateway_processes)
        env |= {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "ML_PORT": str(free_port()),
            "WORKERS": str(MAKE_RUN_WORKERS),
            "API_KEYS": self.key,
            "ML_API_KEY": "e2e-make-run-internal-" + os.urandom(8).hex(),
            "LOG_LEVEL": "warn",
        }
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["make", "--no-print-directory", "run"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: dict[int, tuple[int, str]] = {}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tree(self) -> dict[int, tuple[int, str]]:
        tree = descendants(self.proc.pid)
        self.seen |= tree
        return tree

    def workers(self, package: str) -> set[int]:
        return {pid for pid, (_g, args) in self.tree().items() if f"-m {package}.worker" in args}

    def gateways(self) -> set[int]:
        return {pid for pid, (_g, args) in self.tree().items() if "dist/server.js" in args}

    def wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "Stack is up" not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"make run exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"make run not up after {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        self.tree()

    def leftovers(self) -> dict[int, str]:
        """Processes still alive that make run started: by pid, and by process group."""
        groups = {pgid for pgid, _args in self.seen.values()}
        return {
            pid: args
            for pid, (_ppid, pgid, args) in process_table().items()
            if pid in self.seen or (pgid in groups and pgid != os.getpgid(0))
        }

    def kill(self) -> None:
        """Clean-up when a step failed half-way: nothing may survive the test."""
        groups = {pgid for pgid, _args in self.seen.values()} | {self.proc.pid}
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(10)


def step_make_run(workdir: Path, package: str) -> None:
    run = MakeRun(workdir)
    try:
        run.wait_up()
        auth = {"x-api-key": run.key}
        workers = run.workers(package)
        assert len(workers) == MAKE_RUN_WORKERS, f"make run started workers {workers}: {run.seen}"
        gateways = run.gateways()
        assert len(gateways) == 1 + CLUSTERED, f"GATEWAY_PROCESSES={CLUSTERED}: {gateways}"
        assert "\nredis       | " in run.output(), f"no Redis line with its prefix:\n{run.output()[-3000:]}"
        victim = min(workers)
        print(f"    make run is up on {run.url} (pid {run.proc.pid}), {len(gateways)} gateway processes")
        print(f"    SIGKILL worker pid {victim}")
        restarted = f"| [supervisord] pid {victim} exited unexpectedly; restart"
        os.kill(victim, signal.SIGKILL)
        polls = failures = 0
        deadline = time.monotonic() + 60
        while True:
            polls += 1
            try:
                serving = http("GET", f"{run.url}/healthz", timeout=5).status == 200
            except OSError:
                serving = False
            failures += not serving
            back = run.workers(package) - workers
            if back and restarted in run.output():
                break
            assert time.monotonic() < deadline, f"no worker restarted after 60s:\n{run.output()[-3000:]}"
            time.sleep(0.1)
        restart = next(line for line in run.output().splitlines() if restarted in line)
        print(f"    {restart.strip()}")
        assert failures == 0, f"the gateway failed {failures} of {polls} /healthz while the worker was down"
        job = http("POST", f"{run.url}/v1/jobs", {"features": SAMPLES["setosa"]}, auth)
        assert job.status == 202, job
        deadline = time.monotonic() + 30
        while (status := http("GET", f"{run.url}/v1/jobs/{job.json()['id']}", headers=auth).json())["status"] != "done":
            assert time.monotonic() < deadline and status["status"] != "failed", status
            time.sleep(0.1)
        print(f"    worker back (pid {min(back)}); /healthz answered {polls}/{polls} meanwhile; a new job is done")
        step_backoff(run, package, back, workers | back)

        tree = run.tree()
        launcher = next(pid for pid, (_g, args) in tree.items() if "dev_stack.py" in args)
        os.killpg(run.proc.pid, signal.SIGTERM)  # what a terminal or a process manager does
        time.sleep(0.2)
        if run.proc.poll() is None:
            os.kill(launcher, signal.SIGTERM)  # and once more, as make forwards it too
        run.proc.wait(60)
        deadline = time.monotonic() + 5
        while (left := run.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"processes left after SIGTERM: {left}"
        assert "[stack] stopped" in run.output()[-1000:], run.output()[-2000:]
        print(f"    SIGTERM x2 to make's process group: all {len(run.seen)} processes gone (pids and groups checked)")
    finally:
        if run.proc.poll() is None or run.leftovers():
            run.kill()


def step_make_run_launcher_killed(workdir: Path) -> None:
    """`make run`'s own script SIGKILLed (no chance to say anything): the stack stops all the same.
    GATEWAY_PROCESSES unset: one gateway process per core the workers leave (at least one; with
    more than one, node:cluster's primary is a process too)."""
    run = MakeRun(workdir, gateway_processes=None)
    try:
        run.wait_up()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        expected = max(1, cores - MAKE_RUN_WORKERS)
        gateways = run.gateways()
        assert len(gateways) == expected + (expected > 1), f"{cores} cores: {gateways}, expected {expected}"
        print(f"    {cores} cores, {MAKE_RUN_WORKERS} workers: {expected} gateway process(es) by default")
        tree = run.tree()
        launcher = next(pid for pid, (_g, args) in tree.items() if "dev_stack.py" in args)
        os.kill(launcher, signal.SIGKILL)
        run.proc.wait(30)
        deadline = time.monotonic() + 40  # supervisord's stop: 15 s at most per program
        while (left := run.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"processes left after make run's script was SIGKILLed: {left}"
        print(f"    SIGKILL to dev_stack.py: all {len(run.seen)} processes gone (supervisord got SIGTERM)")
    finally:
        if run.proc.poll() is None or run.leftovers():
            run.kill()


def step_make_run_bad_key(workdir: Path) -> None:
    """A placeholder key: the start stops (exit 1) and the refusing process's own message is shown
    whole, non-ASCII characters included (supervisord counts an event's length in characters)."""
    run = MakeRun(workdir, key="replace-with-a-client-api-key")
    try:
        code = run.proc.wait(120)
        out = run.output()
        assert code != 0, f"make run started with a placeholder key:\n{out[-3000:]}"
        # Whichever process refuses it first (a worker or the gateway), its own words are shown.
        assert "exited while the stack was starting; its last lines:" in out, out[-3000:]
        assert "replace-with-…" in out and "placeholder" in out, out[-3000:]
        assert "Traceback" not in out, out[-3000:]
        deadline = time.monotonic() + 20
        while (left := run.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"processes left after a failed start: {left}"
        print(f"    exit {code}; the refusal shown with its prefix; no process left")
    finally:
        if run.proc.poll() is None or run.leftovers():
            run.kill()


def step_backoff(run: MakeRun, package: str, restarted: set[int], known: set[int]) -> None:
    """A worker killed again and again before it is up (startsecs, 2 s) is restarted after 1 s, 2 s..."""
    backoff = "exited before it was up; restart in 1s (attempt 1)"
    for pid in restarted:  # then each new one as soon as it shows, until supervisord backs off
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while backoff not in run.output():
        assert time.monotonic() < deadline, f"no backoff after 60s:\n{run.output()[-3000:]}"
        for pid in run.workers(package) - known:
            known.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    line = next(line for line in run.output().splitlines() if backoff in line)
    while len(run.workers(package)) < 2:  # left alone now, it comes up again
        assert time.monotonic() < deadline, f"the worker did not come back after its backoff:\n{run.output()[-3000:]}"
        time.sleep(0.1)
    print(f"    killed again while starting: {line.strip()}; then back")


# -- runner --------------------------------------------------------------------------------------


Step = tuple[str, Callable[[], None]]


class Runner:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.n = 0

    def run(self, steps: list[Step], stack: Stack | None = None) -> None:
        for title, step in steps:
            self.n += 1
            print(f"[{self.n}] {title}", flush=True)
            t0 = time.monotonic()
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - report every step, then fail
                self.failed += 1
                print(f"  FAIL ({time.monotonic() - t0:.1f}s): {exc!r}")
                traceback.print_exc()
                for name in stack.procs if stack else ():
                    if stack and (tail := stack.tail(name, 15)):
                        print(f"  --- last lines of {name} ---\n{tail}")
            else:
                self.passed += 1
                print(f"  PASS ({time.monotonic() - t0:.1f}s)", flush=True)

    def phase(self, title: str, start: Callable[[Stack], None], stack: Stack, steps: Callable[[], list[Step]]) -> None:
        print(f"== {title}", flush=True)
        with stack:
            try:
                t0 = time.monotonic()
                start(stack)
                print(f"  stack up in {time.monotonic() - t0:.1f}s", flush=True)
            except Exception as exc:  # noqa: BLE001 - start-up failed: the phase fails, the next runs
                self.failed += 1
                print(f"  could not start the stack: {exc}")
                return
            self.run(steps(), stack)


def start_main(stack: Stack) -> None:
    stack.api_key = f"e2e-client-a-{os.urandom(16).hex()},e2e-client-b-{os.urandom(16).hex()}"
    stack.start_redis()
    start_services(stack)


def start_cluster(stack: Stack) -> None:
    stack.start_redis_cluster(3)
    print(f"  Redis Cluster: {stack.redis_url}")
    start_services(stack)


def start_services(stack: Stack) -> None:
    """ML service, two workers and the gateway, started together and then awaited."""
    stack.start_ml(wait=False)
    stack.start_worker("e2e-worker-1", **WORKER_ENV)
    stack.start_worker("e2e-worker-2", **WORKER_ENV)
    stack.start_gateway(wait=False, env=LOAD_TEST_ENV)
    stack.wait_http("ml-service", f"{stack.ml_url}/readyz")
    stack.wait_http("gateway", f"{stack.gateway_url}/readyz")
    stack.wait_workers(["e2e-worker-1", "e2e-worker-2"])


def main() -> int:
    SIGNALS.install()
    started = time.monotonic()
    runner = Runner()
    env = {"BUS_PARTITIONS": str(PARTITIONS)}
    try:
        main_stack = Stack("e2e", env=env)

        def main_steps() -> list[Step]:
            t = E2E(main_stack)
            steps: list[Step] = [
                ("POST /v1/predict through the gateway, ML_API_KEY to the ML service", t.step_predict),
                ("jobs: SSE to done, GET every result", t.step_jobs),
                ("SIGKILL a worker holding jobs: each still completes exactly once", t.step_worker_crash),
                ("a poison row among good jobs fails alone", t.step_poison),
                ("Idempotency-Key: same job, bound to the body and the API key", t.step_idempotency),
            ]
            steps.append(("jobs belong to their API key: another key gets 404 as for an unknown id", t.step_ownership))
            if has_websocket():
                steps.append(("job events over the WebSocket /v1/ws", t.step_websocket))
            steps += [
                ("chunked oversize bodies -> 413", t.step_chunked_oversize),
                ("schemathesis CLI against the gateway's /openapi.json", t.step_schemathesis),
                ("Redis paused: 503 + Retry-After; resumed: the stack recovers", t.step_redis_paused),
                ("SIGTERM stops a worker cleanly", t.step_graceful_stop),
            ]
            return steps

        runner.phase(f"stack 1: redis-server, BUS_PARTITIONS={PARTITIONS}", start_main, main_stack, main_steps)

        print("== stack 2: make run", flush=True)
        with tempfile.TemporaryDirectory(prefix="e2e-make-run-") as workdir:
            title = "make run: a killed worker is restarted (with backoff), SIGTERM leaves no process"
            runner.run([(title, lambda: step_make_run(Path(workdir), ml_package()))])
        with tempfile.TemporaryDirectory(prefix="e2e-make-run-") as workdir:
            title = "make run: its script SIGKILLed, the stack still stops"
            runner.run([(title, lambda: step_make_run_launcher_killed(Path(workdir)))])
        with tempfile.TemporaryDirectory(prefix="e2e-make-run-") as workdir:
            title = "make run: a placeholder key stops the start, the process says why"
            runner.run([(title, lambda: step_make_run_bad_key(Path(workdir)))])

        cluster_stack = Stack("e2e-cluster", env=env)

        def cluster_steps() -> list[Step]:
            t = E2E(cluster_stack)
            return [
                ("cluster: jobs, SSE to done, GET every result", t.step_jobs),
                ("cluster: jobs spread over partitions and nodes", t.step_cluster_spread),
                ("cluster: SIGKILL a worker holding jobs: each completes exactly once", t.step_worker_crash),
            ]

        title = f"stack 3: Redis Cluster (3 masters), BUS_PARTITIONS={PARTITIONS}"
        runner.phase(title, start_cluster, cluster_stack, cluster_steps)
    except Interrupted as exc:
        print(f"interrupted ({exc.args[0]}); every stack is stopped")
        runner.failed += 1
    print(f"e2e took {time.monotonic() - started:.1f}s; every process it started is stopped")
    print(f"{runner.passed} passed, {runner.failed} failed")
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main())
