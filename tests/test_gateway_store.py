"""The job store on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres import create_database, postgres_server
from sqlalchemy import create_engine, select

from gateway.store import TERMINAL, Job, JobState, JobStore, api_keys_table, decode_cursor, encode_cursor
from services.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)

SHA_A = hashlib.sha256(b"video a").hexdigest()
SHA_B = hashlib.sha256(b"video b").hexdigest()
SPEC = {
    "preset": "thunder",
    "runner": {"height_m": 1.78, "treadmill_speed_mps": None},
    "tags": ["a", "Läufer ✓"],
}


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'gaitway.db'}"
    server: str = request.getfixturevalue("pg_url")
    return create_database(server, "t_" + uuid.uuid4().hex)


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    s = JobStore(store_url)
    try:
        yield s
    finally:
        s.close()


def create(
    store: JobStore,
    owner: str = "key_a",
    *,
    sha: str = SHA_A,
    key: str | None = None,
    job_id: str | None = None,
    filename: str = "run.mp4",
) -> tuple[Job, bool]:
    return store.create_job(
        owner=owner,
        spec=SPEC,
        upload_sha256=sha,
        upload_bytes=1234,
        filename=filename,
        idempotency_key=key,
        job_id=job_id,
    )


def new_job(
    store: JobStore, owner: str = "key_a", *, key: str | None = None, filename: str = "run.mp4"
) -> Job:
    job, created = create(store, owner, key=key, filename=filename)
    assert created
    return job


def test_dialect(store: JobStore, store_url: str) -> None:
    assert store.dialect == store_url.split(":")[0].split("+")[0]


def test_create_get_round_trip(store: JobStore) -> None:
    before = datetime.now(UTC)
    job = new_job(store, filename="mön run 🏃.mp4")
    assert job.id.startswith("an_") and len(job.id) == 27
    assert (job.state, job.stage, job.progress, job.attempts) == (JobState.QUEUED, "queued", 0.0, 0)
    assert job.started_at is job.finished_at is job.summary is job.error_code is None
    got = store.get(job.id)
    assert got == job
    assert got.spec == SPEC
    assert got.upload_sha256 == SHA_A and got.upload_bytes == 1234 and got.filename == "mön run 🏃.mp4"
    assert got.created_at.tzinfo is UTC and got.updated_at.tzinfo is UTC
    assert before <= got.created_at <= datetime.now(UTC)
    assert store.get(job.id, owner="key_a") == job


def test_explicit_job_id_and_duplicate(store: JobStore) -> None:
    job_id = "an_" + "0123456789abcdef01234567"
    assert create(store, job_id=job_id)[0].id == job_id
    with pytest.raises(ConflictError):
        create(store, "key_b", job_id=job_id)
    with pytest.raises(ValueError):
        create(store, job_id="an_1")
    with pytest.raises(ValueError):
        create(store, sha="abc")


def test_idempotency(store: JobStore) -> None:
    first = new_job(store, key="k1")
    again, created = create(store, key="k1")
    assert (again, created) == (first, False)
    assert store.find_idempotent("key_a", "k1") == first
    assert store.find_idempotent("key_a", "k2") is None
    assert store.find_idempotent("key_b", "k1") is None
    with pytest.raises(ConflictError):
        create(store, sha=SHA_B, key="k1")
    other = new_job(store, owner="key_b", key="k1")
    assert other.id != first.id and other.owner == "key_b"
    # jobs without a key never clash
    assert new_job(store).id != new_job(store).id
    with pytest.raises(BadRequestError):
        create(store, key="x" * 256)


def test_concurrent_idempotent_create(store: JobStore) -> None:
    barrier = threading.Barrier(8)

    def attempt(_: int) -> tuple[Job, bool]:
        barrier.wait()
        return create(store, key="same")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1
    assert len(store.list_jobs("key_a", limit=100)[0]) == 1


def test_owner_scoping(store: JobStore) -> None:
    job = new_job(store, owner="key_a")
    with pytest.raises(PermissionDeniedError):
        store.get(job.id, owner="key_b")
    with pytest.raises(PermissionDeniedError):
        store.delete(job.id, owner="key_b")
    for bad in ("an_" + "f" * 24, "an_xyz", "", "an_" + "A" * 24, job.id + "0", "../etc/passwd"):
        with pytest.raises(NotFoundError):
            store.get(bad)
        with pytest.raises(NotFoundError):
            store.get(bad, owner="key_a")
        with pytest.raises(NotFoundError):
            store.mark_running(bad)
    assert store.list_jobs("key_b") == ([], None)
    assert store.delete(job.id, owner="key_a") == job
    with pytest.raises(NotFoundError):
        store.get(job.id)
    with pytest.raises(NotFoundError):
        store.delete(job.id, owner="key_a")


def test_pagination(store: JobStore) -> None:
    made = [new_job(store) for _ in range(25)]
    new_job(store, owner="key_other")
    expected = [j.id for j in sorted(made, key=lambda j: (j.created_at, j.id), reverse=True)]
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        page, cursor = store.list_jobs("key_a", limit=10, cursor=cursor)
        pages += 1
        seen += [j.id for j in page]
        if cursor is None:
            break
        assert len(page) == 10
    assert pages == 3 and seen == expected
    # exactly one page: no next cursor
    assert store.list_jobs("key_a", limit=25)[1] is None
    assert len(store.list_jobs("key_a", limit=100)[0]) == 25


def test_pagination_state_filter_and_bad_input(store: JobStore) -> None:
    jobs = [new_job(store) for _ in range(5)]
    store.mark_running(jobs[1].id)
    store.mark_failed(jobs[3].id, "no_person", "nobody there")
    assert [j.id for j in store.list_jobs("key_a", state=JobState.RUNNING)[0]] == [jobs[1].id]
    assert [j.id for j in store.list_jobs("key_a", state=JobState.FAILED)[0]] == [jobs[3].id]
    assert len(store.list_jobs("key_a", state=JobState.QUEUED)[0]) == 3
    with pytest.raises(BadRequestError):
        store.list_jobs("key_a", state="finished")  # type: ignore[arg-type]
    for bad_limit in (0, 101, -1):
        with pytest.raises(BadRequestError):
            store.list_jobs("key_a", limit=bad_limit)
    good = encode_cursor(jobs[0].created_at, jobs[0].id)
    assert decode_cursor(good) == (jobs[0].created_at, jobs[0].id)
    bad_id = encode_cursor(jobs[0].created_at, "an_1")
    for bad in ("", "!!!", "bm90IGEgY3Vyc29y", good[:-3], bad_id, "a" * 500):
        with pytest.raises(BadRequestError):
            store.list_jobs("key_a", cursor=bad)


def test_transitions(store: JobStore) -> None:
    job = new_job(store)
    running = store.mark_running(job.id)
    assert (running.state, running.stage, running.attempts) == (JobState.RUNNING, "pose", 1)
    assert running.started_at is not None and running.updated_at >= job.updated_at
    store.set_progress(job.id, "kinematics", 0.6)
    got = store.get(job.id)
    assert (got.stage, got.progress) == ("kinematics", pytest.approx(0.6))
    store.set_progress(job.id, "artifacts", 1.5)
    assert store.get(job.id).progress == 1.0

    requeued = store.requeue(job.id)
    assert (requeued.state, requeued.stage, requeued.attempts) == (JobState.QUEUED, "queued", 1)
    again = store.mark_running(job.id)
    assert again.attempts == 2 and again.started_at == running.started_at

    done = store.mark_done(job.id, {"cadence_spm": 172.5, "steps": [1, 2]})
    assert (done.state, done.stage, done.progress) == (JobState.DONE, "done", 1.0)
    assert done.summary == {"cadence_spm": 172.5, "steps": [1, 2]}
    assert done.finished_at is not None and done.finished_at.tzinfo is UTC
    assert done.terminal and done.state in TERMINAL

    failed = store.mark_failed(new_job(store).id, "invalid_video", "not a video")
    assert (failed.state, failed.stage, failed.error_code, failed.error_message) == (
        JobState.FAILED,
        "failed",
        "invalid_video",
        "not a video",
    )
    for ended in (done, failed):
        for move in (
            lambda i: store.mark_running(i),
            lambda i: store.mark_done(i, {}),
            lambda i: store.mark_failed(i, "x", "y"),
            lambda i: store.requeue(i),
        ):
            with pytest.raises(ConflictError, match="already"):
                move(ended.id)
        store.set_progress(ended.id, "pose", 0.1)  # ignored
        assert store.get(ended.id) == ended
    store.set_progress("an_" + "0" * 24, "pose", 0.5)  # unknown: ignored
    assert store.delete(done.id, owner="key_a").state is JobState.DONE


def test_unfinished_survives_restart(store_url: str) -> None:
    first = JobStore(store_url)
    try:
        a = new_job(first)
        b = new_job(first)
        c = new_job(first)
        first.mark_running(a.id)
        first.mark_done(c.id, {})
    finally:
        first.close()
    second = JobStore(store_url)
    try:
        left = second.unfinished()
        assert [(j.id, j.state) for j in left] == [(a.id, JobState.RUNNING), (b.id, JobState.QUEUED)]
        assert second.requeue(a.id).attempts == 1
    finally:
        second.close()


def test_count_since_and_counts(store: JobStore) -> None:
    assert store.counts() == dict.fromkeys(JobState, 0)
    start = datetime.now(UTC)
    jobs = [new_job(store) for _ in range(3)]
    new_job(store, owner="key_b")
    assert store.count_since("key_a", start - timedelta(days=1)) == 3
    assert store.count_since("key_a", jobs[1].created_at) == 2
    assert store.count_since("key_a", datetime.now(UTC) + timedelta(seconds=1)) == 0
    assert store.count_since("key_nobody", start - timedelta(days=1)) == 0
    store.mark_running(jobs[0].id)
    store.mark_done(jobs[0].id, {})
    store.mark_failed(jobs[1].id, "x", "y")
    store.mark_running(jobs[2].id)
    assert store.counts() == {JobState.QUEUED: 1, JobState.RUNNING: 1, JobState.DONE: 1, JobState.FAILED: 1}


def test_keys(store: JobStore, store_url: str) -> None:
    key, secret = store.create_key("alice", jobs_per_day=10, requests_per_min=60)
    assert secret.startswith("gw_") and len(secret) > 40
    assert key.id.startswith("key_") and len(key.id) == 20 and not key.revoked
    assert key.created_at.tzinfo is UTC
    assert store.authenticate(secret) == key
    for wrong in ("", secret + "x", "gw_nope"):
        with pytest.raises(AuthenticationError) as err:
            store.authenticate(wrong)
        assert not wrong or wrong not in str(err.value)

    # the secret is stored only as its hash
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(api_keys_table)).all()
    finally:
        engine.dispose()
    dump = repr(rows)
    assert secret not in dump and secret[3:] not in dump
    assert hashlib.sha256(secret.encode()).hexdigest() in dump

    # upsert by name: same id, new secret and limits, the old secret stops working
    same, new_secret = store.create_key("alice", jobs_per_day=20, requests_per_min=5, secret="s" * 32)
    assert new_secret == "s" * 32
    assert (same.id, same.jobs_per_day, same.requests_per_min) == (key.id, 20, 5)
    assert store.authenticate("s" * 32) == same
    with pytest.raises(AuthenticationError):
        store.authenticate(secret)
    with pytest.raises(ConflictError):
        store.create_key("bob", jobs_per_day=1, requests_per_min=1, secret="s" * 32)

    bob, bob_secret = store.create_key("bob", jobs_per_day=1, requests_per_min=1)
    assert [k.name for k in store.list_keys()] == ["alice", "bob"]
    store.revoke_key(bob.id)
    with pytest.raises(AuthenticationError):
        store.authenticate(bob_secret)
    assert [k.revoked for k in store.list_keys()] == [False, True]
    with pytest.raises(NotFoundError):
        store.revoke_key("key_" + "0" * 16)
    with pytest.raises(NotFoundError):
        store.revoke_key("nonsense")


def test_naive_datetimes_refused(store: JobStore) -> None:
    with pytest.raises(ValueError):
        store.count_since("key_a", datetime(2024, 1, 1))


def test_sqlite_creates_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "jobs.db"
    s = JobStore(f"sqlite:///{path}")
    try:
        new_job(s)
        assert s.dialect == "sqlite" and path.is_file()
    finally:
        s.close()
