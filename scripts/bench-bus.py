#!/usr/bin/env python3
"""Job-bus throughput: the generated Redis Streams worker against Celery 5.x `--pool solo`.

One worker drains N pre-filled iris jobs (default 20,000) from a fresh local redis-server, three
times in one run: the generated worker at its default BATCH_SIZE, the generated worker at
BATCH_SIZE=1, and a Celery worker (`--pool solo`, Redis broker and result backend) running the
same model with the same Python, scikit-learn and redis-py. Every result is checked against
scikit-learn's own prediction, and Redis counts the commands each runner sent (INFO commandstats).

    stackwise new bench --preset data-pipeline -o /tmp/b --yes --install
    /tmp/b/bench/.venv/bin/python scripts/bench-bus.py /tmp/b/bench [--jobs 20000] [--rounds 3]

PROJECT is a generated data-pipeline project (or a hybrid's ml-service/) after `make install`;
run the script with that project's Python. Celery goes into a scratch virtualenv under /tmp
(`--celery-venv`, created with uv on first use, pinned to the project's uv.lock versions), never
into the project. Needs redis-server and uv on PATH. A benchmark, not a test: it fails only when
a result is wrong, never because the machine is slow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

ROWS = (
    [5.1, 3.5, 1.4, 0.2],
    [6.7, 3.0, 5.2, 2.3],
    [5.9, 3.0, 4.2, 1.5],
    [6.0, 2.2, 5.0, 1.5],
)
IGNORED = {
    "cmdstat_config",
    "cmdstat_info",
    "cmdstat_zcard",
    "cmdstat_dbsize",
    "cmdstat_ping",
}

CELERY_APP = """
import os
from pathlib import Path

from celery import Celery

from {package}.model import load_model

app = Celery("benchapp", broker=os.environ["BROKER_URL"], backend=os.environ["BACKEND_URL"])
app.conf.result_extended = True
model = load_model(Path("does-not-exist/model.joblib"))  # the demo, trained in memory


@app.task(name="predict")
def predict(features):
    prediction = model.predict([features])[0]
    return {{"label": prediction.label, "probabilities": prediction.probabilities}}
"""

CELERY_FILL = """
import sys
from benchapp import predict
rows = {rows!r}
for i in range({jobs}):
    predict.delay(rows[i % len(rows)])
"""


@dataclass
class Result:
    runner: str
    jobs_per_s: float
    commands_per_job: float


class RedisServer:
    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port, decode_responses=True)
        for _ in range(250):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise SystemExit("redis-server did not start")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def commands(self) -> int:
        stats = self.client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k not in IGNORED)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def expected_labels(package: str) -> list[str]:
    model_module = __import__(f"{package}.model", fromlist=["load_model"])
    model = model_module.load_model(Path("does-not-exist/model.joblib"))
    return [prediction.label for prediction in model.predict(list(ROWS))]


def bench_bus(project: Path, package: str, jobs: int, batch: int, labels: list[str]) -> Result:
    bus = __import__(f"{package}.bus", fromlist=["Partition"])
    producer_module = __import__(f"{package}.producer", fromlist=["Producer"])
    schemas = __import__(f"{package}.schemas", fromlist=["PredictRequest"])
    server = RedisServer()
    try:

        async def fill() -> list[str]:
            client = bus.connect(server.url())
            producer = producer_module.Producer(client, max_backlog=10**9, deadline_ms=10**9)
            requests = [schemas.PredictRequest(features=row) for row in ROWS]
            ids: list[str] = []
            for start in range(0, jobs, 500):
                chunk = range(start, min(start + 500, jobs))
                submitted = await asyncio.gather(
                    *(producer.submit(requests[i % len(ROWS)]) for i in chunk)
                )
                ids.extend(s.id for s in submitted)
            await client.aclose()
            return ids

        ids = asyncio.run(fill())
        part = bus.Partition.of(0)
        server.client.config_resetstat()
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "REDIS_URL": server.url(),
                "BATCH_SIZE": str(batch),
                "LOG_LEVEL": "WARNING",
                "API_KEYS": "bench-only-key",
                "MODEL_PATH": "does-not-exist/model.joblib",
                "WORKER_HEALTH_FILE": f"{tmp}/worker.alive",
            }
            worker = subprocess.Popen(
                [sys.executable, "-m", f"{package}.worker"], cwd=project, env=env
            )
            try:
                while server.client.zcard(part.deadlines):  # a job leaves it when it ends
                    time.sleep(0.05)
            finally:
                stop(worker)
        commands = server.commands()
        pipe = server.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(part.job(job_id), "status", "result", "finished_at")
        finished = []
        for index, (status, result, finished_at) in enumerate(pipe.execute()):
            label = json.loads(result)["label"] if result else None
            if status != "done" or label != labels[index % len(ROWS)]:
                raise SystemExit(f"wrong result for job {ids[index]}: {status} {result}")
            finished.append(int(finished_at))
        finished.sort()
        rate = (jobs - batch) / max((finished[-1] - finished[0]) / 1000, 1e-3)
        return Result(f"generated worker, BATCH_SIZE={batch}", rate, commands / jobs)
    finally:
        server.stop()


def celery_venv(project: Path, venv: Path) -> Path:
    python = venv / "bin" / "python"
    if (venv / "bin" / "celery").exists():
        return python
    uv = shutil.which("uv") or sys.exit("uv is needed to create the Celery virtualenv")
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    pins = subprocess.run(
        [
            uv,
            "export",
            "--quiet",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
        ],
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    requirements = venv / "project-pins.txt"
    requirements.write_text(pins)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "-r",
            str(requirements),
            "celery>=5.4,<6",
            "packaging",
            str(project),
        ],
        check=True,
    )
    return python


def bench_celery(project: Path, package: str, jobs: int, venv: Path, labels: list[str]) -> Result:
    python = celery_venv(project, venv)
    server = RedisServer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "benchapp.py").write_text(CELERY_APP.format(package=package))
            env = {
                **os.environ,
                "BROKER_URL": server.url(0),
                "BACKEND_URL": server.url(1),
                # The project's own source first: the same model code as the generated worker.
                "PYTHONPATH": os.pathsep.join([tmp, str(project / "src")]),
            }
            fill = CELERY_FILL.format(rows=[list(row) for row in ROWS], jobs=jobs)
            subprocess.run([str(python), "-c", fill], env=env, cwd=tmp, check=True)
            server.client.config_resetstat()
            worker = subprocess.Popen(
                [
                    str(python),
                    "-m",
                    "celery",
                    "-A",
                    "benchapp",
                    "worker",
                    "--pool",
                    "solo",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                env=env,
                cwd=tmp,
                stderr=subprocess.DEVNULL,
            )
            results = redis.Redis(port=server.port, db=1, decode_responses=True)
            try:
                while results.dbsize() < jobs:
                    time.sleep(0.2)
            finally:
                stop(worker)
        commands = server.commands()
        done: list[float] = []
        labels_seen: dict[str, int] = {}
        for key in results.scan_iter("celery-task-meta-*", count=1000):
            meta: dict[str, Any] = json.loads(results.get(key) or "{}")
            if meta.get("status") != "SUCCESS":
                raise SystemExit(f"celery task failed: {meta}")
            label = meta["result"]["label"]
            labels_seen[label] = labels_seen.get(label, 0) + 1
            done.append(datetime.fromisoformat(meta["date_done"]).timestamp())
        expected: dict[str, int] = {}
        for i in range(jobs):
            expected[labels[i % len(ROWS)]] = expected.get(labels[i % len(ROWS)], 0) + 1
        if labels_seen != expected:
            raise SystemExit(
                f"celery results differ from scikit-learn: {labels_seen} != {expected}"
            )
        done.sort()
        version = subprocess.run(
            [str(python), "-c", "import celery; print(celery.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        rate = (jobs - 1) / max(done[-1] - done[0], 1e-3)
        return Result(f"Celery {version} --pool solo", rate, commands / jobs)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a generated project with its .venv")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per runner and round")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument("--batch", type=int, default=64, help="the worker's default BATCH_SIZE")
    parser.add_argument("--celery-venv", type=Path, default=Path("/tmp/stackwise-bench-celery"))
    parser.add_argument("--skip-celery", action="store_true")
    args = parser.parse_args()
    project = args.project.resolve()
    [package] = [p.name for p in (project / "src").iterdir() if (p / "worker.py").exists()]
    sys.path.insert(0, str(project / "src"))
    labels = expected_labels(package)
    print(
        f"one worker draining {args.jobs} pre-filled jobs; Python {platform.python_version()}, "
        f"redis-py {redis.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    # Rounds interleave the runners, so that a machine whose load changes during the run
    # (shared CI runners, laptops) affects each of them alike; the median of each is reported.
    runs: dict[str, list[Result]] = {}
    for round_ in range(1, args.rounds + 1):
        measured = [
            bench_bus(project, package, args.jobs, args.batch, labels),
            bench_bus(project, package, args.jobs, 1, labels),
        ]
        if not args.skip_celery:
            measured.append(bench_celery(project, package, args.jobs, args.celery_venv, labels))
        for result in measured:
            runs.setdefault(result.runner, []).append(result)
        line = ", ".join(f"{r.runner}: {r.jobs_per_s:.0f}/s" for r in measured)
        print(f"round {round_}: {line} (load {os.getloadavg()[0]:.1f})", flush=True)
    results = [
        Result(
            runner,
            statistics.median(r.jobs_per_s for r in rs),
            statistics.median(r.commands_per_job for r in rs),
        )
        for runner, rs in runs.items()
    ]
    celery = results[-1].jobs_per_s if not args.skip_celery else None
    print(f"median of {args.rounds} round(s):")
    print(f"{'runner':<36}{'jobs/s':>10}{'redis cmds/job':>16}{'vs Celery':>11}")
    for result in results:
        ratio = f"{result.jobs_per_s / celery:.1f}x" if celery else "-"
        print(
            f"{result.runner:<36}{result.jobs_per_s:>10.0f}"
            f"{result.commands_per_job:>16.2f}{ratio:>11}"
        )
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
