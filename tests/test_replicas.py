"""Several gateway replicas (``gaitway serve`` processes) on one real PostgreSQL and one shared data folder,
the way Kubernetes runs them: admission holds across replicas, a replica SIGKILLed mid-job and never
restarted loses no job and runs none twice, and SIGTERM drains without recomputing finished work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SHARED
from gateway_support import DEMO3, TREADMILL
from postgres import create_database, postgres_server

from gateway.records import Job, JobState
from gateway.store import SqlStore
from services.pose.triton import free_port

pytestmark = pytest.mark.slow

MODELS = f"{SHARED / 'models'}:{SHARED / 'reference'}"
ALICE = "alice-secret-0123456789abcdef"  # a daily quota of 3 analyses
BOB = "bob-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


class Replica:
    """One ``gaitway serve`` process of the fleet."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        env = {**env, "GAITWAY_HTTP_PORT": str(self.port), "GAITWAY_GRPC_PORT": str(free_port())}
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "replica not ready"
            time.sleep(0.3)

    def signal(self, sig: int, *, timeout_s: float = 90) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout_s)


@pytest.fixture
def fleet(pg_server: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], list[Replica], SqlStore]]:
    """Environment for replicas of one fleet (its own database and data folder), the replicas started by
    the test (stopped at the end), and a store on the same database to look at."""
    url = create_database(pg_server, "f_" + uuid.uuid4().hex[:12])
    keys = tmp_path / "keys.txt"
    keys.write_text(f"alice:{ALICE}:3\nbob:{BOB}\n")
    env = {
        **os.environ,
        "GAITWAY_DATABASE_URL": url,
        "GAITWAY_DATA_DIR": str(tmp_path / "data"),
        "GAITWAY_MODELS_DIR": MODELS,
        "GAITWAY_PRESET": "lightning",
        "GAITWAY_API_KEYS_FILE": str(keys),
        "GAITWAY_WORKERS": "1",
        "GAITWAY_LEASE_S": "6",
        "GAITWAY_POLL_INTERVAL_S": "0.2",
        "GAITWAY_QUEUE_LIMIT": "20",
        "GAITWAY_ORT_THREADS": "1",
        "GAITWAY_LOG_JSON": "true",
    }
    replicas: list[Replica] = []
    store = SqlStore(url)
    try:
        yield env, replicas, store
    finally:
        for r in replicas:
            r.signal(signal.SIGKILL)
        store.close()


def _upload(url: str, video: Path, secret: str = BOB) -> httpx.Response:
    headers = {"x-api-key": secret, "content-type": "video/mp4"}
    return httpx.post(f"{url}/v1/analyses", content=video.read_bytes(), headers=headers, timeout=120)


def _wait(store: SqlStore, job_ids: list[str], *, timeout_s: float = 420) -> list[Job]:
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = [store.get(j) for j in job_ids]
        if all(j.state in (JobState.DONE, JobState.FAILED) for j in jobs):
            return jobs
        assert time.monotonic() < deadline, [(j.id, j.state, j.stage, j.lease_owner) for j in jobs]
        time.sleep(0.5)


def test_admission_holds_across_replicas(
    fleet: tuple[dict[str, str], list[Replica], SqlStore], tmp_path: Path
) -> None:
    """10 concurrent uploads spread over 3 replicas against a daily quota of 3: exactly 3 accepted."""
    env, replicas, store = fleet
    replicas += [Replica(env, tmp_path / f"r{i}.log") for i in range(3)]
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: _upload(replicas[i % 3].url, DEMO3, ALICE), range(10)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [202] * 3 + [429] * 7, [r.text for r in answers]
    refused = [r.json()["error"] for r in answers if r.status_code == 429]
    assert {e["code"] for e in refused} == {"quota_exceeded"}
    accepted = [r.json()["id"] for r in answers if r.status_code == 202]
    assert all(j.state is JobState.DONE for j in _wait(store, accepted))


def test_a_replica_killed_mid_job_loses_nothing_and_runs_nothing_twice(
    fleet: tuple[dict[str, str], list[Replica], SqlStore], tmp_path: Path
) -> None:
    env, replicas, store = fleet
    replicas += [Replica(env, tmp_path / f"r{i}.log") for i in range(3)]
    ids = [_upload(replicas[i].url, TREADMILL).json()["id"] for i in range(3)]
    deadline = time.monotonic() + 120
    while True:  # each replica runs one (one worker each)
        jobs = [store.get(j) for j in ids]
        if all(j.state is JobState.RUNNING and j.progress > 0.05 for j in jobs):
            break
        assert time.monotonic() < deadline, [(j.state, j.progress) for j in jobs]
        time.sleep(0.2)
    victim = jobs[0]
    assert victim.lease_owner is not None
    pid = int(victim.lease_owner.split("-")[-2])  # replica ids are <host>-<pid>-<random>
    [dead] = [r for r in replicas if r.proc.pid == pid]
    dead.signal(signal.SIGKILL)  # never restarted
    finished = _wait(store, ids)
    assert all(j.state is JobState.DONE for j in finished), [(j.id, j.error_code) for j in finished]
    by_id = {j.id: j for j in finished}
    taken_over = by_id[victim.id]
    assert taken_over.attempts == 2 and taken_over.pose_runs in (1, 2)  # 1 when killed after its checkpoint
    for job_id in ids[1:]:
        assert (by_id[job_id].attempts, by_id[job_id].pose_runs) == (1, 1)  # nothing ran twice
    assert sum(1 for r in replicas if r.proc.poll() is None) == 2


def test_sigterm_mid_job_recomputes_nothing(
    fleet: tuple[dict[str, str], list[Replica], SqlStore], tmp_path: Path
) -> None:
    """SIGTERM while a job runs: the replica drains (the job finishes within the grace period, or goes back
    to the queue with its checkpoint); a new replica finishes whatever is left. The pose stage ran once."""
    env, replicas, store = fleet
    replicas.append(Replica(env, tmp_path / "first.log"))
    job_id = _upload(replicas[0].url, TREADMILL).json()["id"]
    deadline = time.monotonic() + 120
    while (job := store.get(job_id)).state is not JobState.RUNNING or job.progress < 0.2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    t0 = time.monotonic()
    replicas[0].signal(signal.SIGTERM)
    assert replicas[0].proc.returncode == 0 and time.monotonic() - t0 < 60
    after: Any = store.get(job_id)
    assert after.lease_owner is None  # nothing held by a replica that left
    replicas.append(Replica(env, tmp_path / "second.log"))
    [done] = _wait(store, [job_id])
    assert done.state is JobState.DONE and done.pose_runs == 1
