"""End-to-end test of the whole stack: real redis-server, ML service, two workers and the gateway.

Run with `make e2e` (builds the gateway, then runs this file with ml-service/.venv/bin/python).
Every assertion reads the HTTP answers or the Redis state, never the logs. Each step prints what
it shows; the last line is `N passed, M failed` and the exit status is non-zero on any failure.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import redis  # the ML service's own dependency
from stacklib import GATEWAY_DIR, Interrupted, Stack, WebSocket, http, raise_on_signals, sse_events

STREAM = "jobs:predict"
GROUP = "ml-workers"
DEAD = "jobs:predict:dead"

POISON = 99.5  # WORKER_FAIL_ON: a job whose first feature equals this always raises
MAX_DELIVERIES = 3
WORKER_ENV = {
    "WORKER_DELAY_MS": "150",  # keeps jobs in hand long enough to kill a worker holding some
    "WORKER_FAIL_ON": str(POISON),
    "MIN_IDLE_MS": "1000",
    "MAX_DELIVERIES": str(MAX_DELIVERIES),
    "BATCH_SIZE": "2",  # batch time (2 x 150 ms) stays well under MIN_IDLE_MS
}

SAMPLES = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [5.9, 3.0, 4.2, 1.5],
    "virginica": [6.7, 3.0, 5.2, 2.3],
}


class E2E:
    def __init__(self, stack: Stack, r: redis.Redis) -> None:
        self.stack = stack
        self.r = r
        self.gw = stack.gateway_url
        self.auth = {"x-api-key": stack.api_key}

    # -- helpers ---------------------------------------------------------------------------

    def submit(self, features: list[float], **headers: str) -> str:
        resp = http("POST", f"{self.gw}/v1/jobs", {"features": features}, {**self.auth, **headers})
        assert resp.status == 202, f"POST /v1/jobs: {resp}"
        job_id = resp.json()["id"]
        assert isinstance(job_id, str) and job_id, resp
        return job_id

    def get_job(self, job_id: str) -> dict[str, Any]:
        resp = http("GET", f"{self.gw}/v1/jobs/{job_id}", headers=self.auth)
        assert resp.status == 200, f"GET /v1/jobs/{job_id}: {resp}"
        body: dict[str, Any] = resp.json()
        return body

    def wait_terminal(self, job_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Poll GET /v1/jobs/{id} until every job is done or failed."""
        deadline = time.monotonic() + timeout
        left = set(job_ids)
        final: dict[str, dict[str, Any]] = {}
        while left:
            for job_id in sorted(left):
                body = self.get_job(job_id)
                if body["status"] in ("done", "failed"):
                    final[job_id] = body
                    left.discard(job_id)
            if left:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{len(left)} jobs not finished after {timeout}s")
                self.stack.check_alive("gateway", "ml-service")
                time.sleep(0.1)
        return final

    def pending(self, consumer: str | None = None) -> int:
        if consumer is None:
            return int(self.r.xpending(STREAM, GROUP)["pending"])
        for c in self.r.xpending(STREAM, GROUP)["consumers"]:
            if c["name"] == consumer:
                return int(c["pending"])
        return 0

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
        print("    ML service answers the same directly")
        denied = http("POST", f"{self.gw}/v1/predict", body)
        assert denied.status == 401, f"no API key: {denied}"
        print("    without X-API-Key: 401")

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
        assert self.r.hget(f"job:{job_id}", "request_id") == "e2e-job-1", "request id not carried into the job"

        expected: dict[str, str] = {}
        for i in range(9):
            label = list(SAMPLES)[i % 3]
            expected[self.submit(SAMPLES[label])] = label
        final = self.wait_terminal(list(expected), timeout=30)
        for jid, label in expected.items():
            assert final[jid]["status"] == "done", final[jid]
            assert final[jid]["result"]["label"] == label, final[jid]
        print(f"    {len(expected)} more jobs: every GET /v1/jobs/{{id}} is done with the expected label")

    def step_worker_crash(self) -> None:
        victim, survivor = "e2e-worker-1", "e2e-worker-2"
        job_ids = [self.submit(SAMPLES[list(SAMPLES)[i % 3]]) for i in range(30)]
        print(f"    submitted {len(job_ids)} jobs")
        deadline = time.monotonic() + 15
        while self.pending(victim) == 0:
            assert time.monotonic() < deadline, f"{victim} never held a job"
            time.sleep(0.01)
        self.stack.signal(victim, signal.SIGKILL)
        self.stack.procs[victim].wait(5)
        held = self.pending(victim)
        print(f"    SIGKILLed {victim} while it held {held} job(s) (XPENDING for that consumer)")
        assert held > 0, "the killed worker held no job"

        final = self.wait_terminal(job_ids, timeout=60)
        assert all(b["status"] == "done" for b in final.values()), final
        processed = [self.r.hget(f"job:{jid}", "processed") for jid in job_ids]
        assert processed == ["1"] * len(job_ids), f"processed counters: {processed}"
        assert self.pending() == 0, f"XPENDING {self.pending()}"
        assert self.pending(victim) == 0
        assert self.r.xlen(DEAD) == 0, "a job went to the dead-letter stream"
        print(f"    {survivor} reclaimed them: {len(job_ids)}/{len(job_ids)} done, processed == 1 for all, XPENDING 0")

    def step_poison(self) -> None:
        job_id = self.submit([POISON, 3.0, 1.0, 0.2])
        print(f"    poison job {job_id} (features[0] == WORKER_FAIL_ON)")
        final = self.wait_terminal([job_id], timeout=10 + 3 * MAX_DELIVERIES)[job_id]
        assert final["status"] == "failed", final
        assert final.get("error"), final
        entries = cast(list[tuple[str, dict[str, str]]], self.r.xrange(DEAD))
        dead = [fields for _id, fields in entries if fields.get("job_id") == job_id]
        assert len(dead) == 1, f"dead-letter entries for the job: {dead}"
        entry = dead[0]
        assert int(entry["deliveries"]) >= MAX_DELIVERIES, entry
        assert entry.get("error") and entry.get("source_id"), entry
        assert self.r.hget(f"job:{job_id}", "status") == "failed"
        assert self.pending() == 0, f"XPENDING {self.pending()}"
        print(f"    in {DEAD} after {entry['deliveries']} deliveries: error {entry['error']!r}; status failed")

    def step_idempotency(self) -> None:
        key = f"e2e-{uuid.uuid4()}"
        first = self.submit(SAMPLES["setosa"], **{"idempotency-key": key})
        length = self.r.xlen(STREAM)
        second = self.submit(SAMPLES["setosa"], **{"idempotency-key": key})
        assert first == second, f"{first} != {second}"
        assert self.r.xlen(STREAM) == length, "the repeat enqueued another entry"
        other = self.submit(SAMPLES["setosa"], **{"idempotency-key": key + "-other"})
        assert other != first
        final = self.wait_terminal([first, other], timeout=20)
        assert final[first]["status"] == "done", final
        print(f"    Idempotency-Key repeated: same job id {first}, nothing enqueued twice; a new key gets a new job")

    def step_websocket(self) -> None:
        job_id = self.submit(SAMPLES["versicolor"])
        ws_url = self.gw.replace("http://", "ws://", 1) + "/v1/ws"
        ws = WebSocket(ws_url, self.auth)
        try:
            ws.send(json.dumps({"type": "subscribe", "id": job_id}))
            seen: list[str] = []
            while not seen or seen[-1] not in ("done", "failed"):
                event = json.loads(ws.recv())
                assert event.get("type") != "error", event
                assert event["id"] == job_id, event
                seen.append(event["status"])
        finally:
            ws.close()
        assert seen[-1] == "done" and event["result"]["label"] == "versicolor", event
        print(f"    /v1/ws subscribe {job_id}: {' -> '.join(seen)} ({event['result']['label']})")

    def step_graceful_stop(self) -> None:
        name = "e2e-worker-2"
        job_ids = [self.submit(SAMPLES["versicolor"]) for _ in range(6)]
        deadline = time.monotonic() + 15
        while self.pending(name) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.stack.signal(name, signal.SIGTERM)
        code = self.stack.procs[name].wait(15)
        assert code == 0, f"worker exited with {code}:\n{self.stack.tail(name)}"
        assert self.pending(name) == 0, f"{name} left {self.pending(name)} pending after SIGTERM"
        print(f"    SIGTERM: {name} committed the batch in hand and exited 0, nothing left pending")
        self.stack.start_worker("e2e-worker-3", **WORKER_ENV)
        final = self.wait_terminal(job_ids, timeout=30)
        assert all(b["status"] == "done" for b in final.values()), final
        print("    a new worker finished the rest")


def has_websocket() -> bool:
    """The gateway was generated with WebSocket support (it depends on @fastify/websocket)."""
    package = json.loads((GATEWAY_DIR / "package.json").read_text())
    return "@fastify/websocket" in package.get("dependencies", {})


def main() -> int:
    raise_on_signals()
    started = time.monotonic()
    passed = failed = 0
    with Stack("e2e") as stack:
        try:
            print("starting redis-server, ml-service, 2 workers, gateway", flush=True)
            stack.start_redis()
            stack.start_ml()
            stack.start_worker("e2e-worker-1", **WORKER_ENV)
            stack.start_worker("e2e-worker-2", **WORKER_ENV)
            stack.start_gateway()
            r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
            stack.wait_workers(r, ["e2e-worker-1", "e2e-worker-2"])
            t = E2E(stack, r)
            steps: list[tuple[str, Callable[[], None]]] = [
                ("POST /v1/predict through the gateway", t.step_predict),
                ("jobs: SSE to done, GET every result", t.step_jobs),
                ("SIGKILL a worker holding jobs: each still completes exactly once", t.step_worker_crash),
                ("poison job lands in the dead-letter stream", t.step_poison),
                ("Idempotency-Key returns the same job", t.step_idempotency),
            ]
            if has_websocket():
                steps.append(("job events over the WebSocket /v1/ws", t.step_websocket))
            steps.append(("SIGTERM stops a worker cleanly", t.step_graceful_stop))
            for n, (title, step) in enumerate(steps, 1):
                print(f"[{n}/{len(steps)}] {title}", flush=True)
                t0 = time.monotonic()
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - report every step, then fail
                    failed += 1
                    print(f"  FAIL ({time.monotonic() - t0:.1f}s): {exc!r}")
                    traceback.print_exc()
                    for name in stack.procs:
                        if tail := stack.tail(name, 15):
                            print(f"  --- last lines of {name} ---\n{tail}")
                else:
                    passed += 1
                    print(f"  PASS ({time.monotonic() - t0:.1f}s)", flush=True)
        except (KeyboardInterrupt, Interrupted) as exc:
            print(f"interrupted ({exc!r}); stopping the stack")
            failed += 1
        except Exception as exc:  # noqa: BLE001 - start-up failed
            print(f"could not start the stack: {exc}")
            failed += 1
    print(f"e2e took {time.monotonic() - started:.1f}s; every process it started is stopped")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
