"""The store contract (gateway.records.Store), checked on its SQL implementation over SQLite and a real
PostgreSQL server: keys, jobs, atomic admission under concurrency, claims and leases, live sessions and
shared rate limits."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres import create_database, postgres_server
from sqlalchemy import create_engine, select

from gateway.records import TERMINAL, Admission, Job, JobState
from gateway.store import SqlStore, decode_cursor, encode_cursor
from gateway.tables import api_keys_table
from services.errors import (
    AuthenticationError,
    BadRequestError,
    BusyError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
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


LEASE = 30.0


def claim(store: SqlStore, worker: str = "w1", *, max_attempts: int = 3) -> Job:
    job = store.claim(worker, lease_s=LEASE, max_attempts=max_attempts)
    assert job is not None
    return job


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = SqlStore(store_url)
    try:
        yield s
    finally:
        s.close()


def create(
    store: SqlStore,
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
    store: SqlStore, owner: str = "key_a", *, key: str | None = None, filename: str = "run.mp4"
) -> Job:
    job, created = create(store, owner, key=key, filename=filename)
    assert created
    return job


def test_dialect(store: SqlStore, store_url: str) -> None:
    assert store.dialect == store_url.split(":")[0].split("+")[0]


def test_create_get_round_trip(store: SqlStore) -> None:
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


def test_explicit_job_id_and_duplicate(store: SqlStore) -> None:
    job_id = "an_" + "0123456789abcdef01234567"
    assert create(store, job_id=job_id)[0].id == job_id
    with pytest.raises(ConflictError):
        create(store, "key_b", job_id=job_id)
    with pytest.raises(ValueError):
        create(store, job_id="an_1")
    with pytest.raises(ValueError):
        create(store, sha="abc")


def test_idempotency(store: SqlStore) -> None:
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


def test_concurrent_idempotent_create(store: SqlStore) -> None:
    barrier = threading.Barrier(8)

    def attempt(_: int) -> tuple[Job, bool]:
        barrier.wait()
        return create(store, key="same")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1
    assert len(store.list_jobs("key_a", limit=100)[0]) == 1


def test_owner_scoping(store: SqlStore) -> None:
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
        assert not store.renew(bad, "w1", lease_s=LEASE)
    assert store.list_jobs("key_b") == ([], None)
    assert store.delete(job.id, owner="key_a") == job
    with pytest.raises(NotFoundError):
        store.get(job.id)
    with pytest.raises(NotFoundError):
        store.delete(job.id, owner="key_a")


def test_pagination(store: SqlStore) -> None:
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


def test_pagination_state_filter_and_bad_input(store: SqlStore) -> None:
    jobs = [new_job(store) for _ in range(5)]
    assert claim(store).id == jobs[0].id  # oldest first
    store.mark_failed(jobs[3].id, "no_person", "nobody there")
    assert [j.id for j in store.list_jobs("key_a", state=JobState.RUNNING)[0]] == [jobs[0].id]
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


def test_transitions(store: SqlStore) -> None:
    job = new_job(store)
    running = claim(store)
    assert running.id == job.id
    assert (running.state, running.stage, running.attempts, running.pose_runs) == (
        JobState.RUNNING,
        "pose",
        1,
        1,
    )
    assert running.lease_owner == "w1" and running.lease_until is not None
    assert running.started_at is not None and running.updated_at >= job.updated_at
    assert store.set_progress(job.id, "w1", "kinematics", 0.6, lease_s=LEASE)
    got = store.get(job.id)
    assert (got.stage, got.progress) == ("kinematics", pytest.approx(0.6))
    assert store.set_progress(job.id, "w1", "artifacts", 1.5, lease_s=LEASE)
    assert store.get(job.id).progress == 1.0
    # another worker holds nothing
    assert not store.set_progress(job.id, "w2", "pose", 0.1, lease_s=LEASE)
    with pytest.raises(ConflictError):
        store.mark_done(job.id, "w2", {})

    # a released job comes back; an attempt given back is not counted
    requeued = store.release(job.id, "w1", attempt_used=False, outage=True)
    assert (requeued.state, requeued.stage, requeued.attempts, requeued.outage_retries) == (
        JobState.QUEUED, "queued", 0, 1,
    )  # fmt: skip
    assert requeued.lease_owner is None
    again = claim(store, "w2")
    assert again.attempts == 1 and again.started_at == running.started_at and again.pose_runs == 2
    # a checkpointed stage is not run again
    assert store.set_checkpoint(job.id, "w2", "kinematics")
    store.release(job.id, "w2", attempt_used=True)
    resumed = claim(store, "w3")
    assert (resumed.stage, resumed.pose_runs, resumed.attempts) == ("kinematics", 2, 2)

    done = store.mark_done(job.id, "w3", {"cadence_spm": 172.5, "steps": [1, 2]})
    assert (done.state, done.stage, done.progress) == (JobState.DONE, "done", 1.0)
    assert done.summary == {"cadence_spm": 172.5, "steps": [1, 2]}
    assert done.finished_at is not None and done.finished_at.tzinfo is UTC
    assert done.state in TERMINAL and done.lease_owner is None

    failed = store.mark_failed(new_job(store).id, "invalid_video", "not a video")
    assert (failed.state, failed.stage, failed.error_code, failed.error_message) == (
        JobState.FAILED,
        "failed",
        "invalid_video",
        "not a video",
    )
    for ended in (done, failed):
        for move in (
            lambda i: store.mark_done(i, "w3", {}),
            lambda i: store.mark_failed(i, "x", "y"),
            lambda i: store.release(i, "w3", attempt_used=True),
        ):
            with pytest.raises(ConflictError, match="already"):
                move(ended.id)
        assert not store.set_progress(ended.id, "w3", "pose", 0.1, lease_s=LEASE)  # ignored
        assert store.get(ended.id) == ended
    assert store.claim("w1", lease_s=LEASE, max_attempts=3) is None
    assert store.delete(done.id, owner="key_a").state is JobState.DONE


def test_retry_delay_and_expired_leases(store: SqlStore) -> None:
    """A released job waits out its delay; a job whose lease ran out is taken over by another worker (an
    attempt), and one taken over max_attempts times fails as interrupted; a live lease is never taken."""
    job = new_job(store)
    claim(store, "w1")
    store.release(job.id, "w1", attempt_used=True, delay_s=60.0)
    assert store.claim("w2", lease_s=LEASE, max_attempts=3) is None  # not before its delay
    other = new_job(store)
    assert claim(store, "w2").id == other.id
    assert store.claim("w3", lease_s=LEASE, max_attempts=3) is None  # w2's lease is alive
    assert store.renew(other.id, "w2", lease_s=0.0)  # w2 "dies": its lease runs out at once
    taken = claim(store, "w3")
    assert (taken.id, taken.lease_owner, taken.attempts) == (other.id, "w3", 2)
    assert not store.renew(other.id, "w2", lease_s=LEASE)  # the dead worker cannot come back
    assert store.renew(other.id, "w3", lease_s=0.0)
    assert store.claim("w4", lease_s=LEASE, max_attempts=2) is None  # spent: left for fail_abandoned
    assert store.fail_abandoned(max_attempts=3) == []
    [abandoned] = store.fail_abandoned(max_attempts=2)
    assert (abandoned.id, abandoned.state, abandoned.error_code) == (other.id, JobState.FAILED, "interrupted")


def test_jobs_an_outage_sent_back_fail_once_it_lasts(store: SqlStore) -> None:
    """Queued jobs an outage sent back fail after ``max_outage_s``; a checkpoint (progress) forgets it."""
    met, fresh, recovered = new_job(store), new_job(store, "key_b"), new_job(store, "key_c")
    assert [claim(store, w).id for w in ("w1", "w2", "w3")] == [met.id, fresh.id, recovered.id]
    store.release(met.id, "w1", attempt_used=False, outage=True)
    store.release(recovered.id, "w3", attempt_used=False, outage=True)
    store.release(fresh.id, "w2", attempt_used=False)  # a shutdown, not an outage
    assert store.get(met.id).outage_since is not None
    # met meets the outage again (its first time counts); recovered comes back and makes progress
    assert [claim(store, w).id for w in ("w4", "w5", "w6")] == [met.id, fresh.id, recovered.id]
    first_outage = store.get(met.id).outage_since
    assert store.release(met.id, "w4", attempt_used=False, outage=True).outage_since == first_outage
    store.release(fresh.id, "w5", attempt_used=False)
    assert store.set_checkpoint(recovered.id, "w6", "pose")
    store.release(recovered.id, "w6", attempt_used=False)
    assert store.get(recovered.id).outage_since is None

    assert store.fail_outaged(max_outage_s=60, message="down") == []  # not long enough yet
    time.sleep(0.05)
    [failed] = store.fail_outaged(max_outage_s=0.01, message="Triton has been down for too long")
    assert (failed.id, failed.state, failed.error_code) == (met.id, JobState.FAILED, "service_unavailable")
    assert failed.error_message == "Triton has been down for too long"
    assert store.get(fresh.id).state == JobState.QUEUED  # never met the outage: still waits


def test_concurrent_claims_take_each_job_once(store: SqlStore) -> None:
    jobs = {new_job(store).id for _ in range(12)}
    barrier = threading.Barrier(6)

    def worker(i: int) -> list[str]:
        barrier.wait()
        got = []
        while (job := store.claim(f"w{i}", lease_s=LEASE, max_attempts=3)) is not None:
            got.append(job.id)
        return got

    with ThreadPoolExecutor(6) as pool:
        taken = [j for part in pool.map(worker, range(6)) for j in part]
    assert sorted(taken) == sorted(jobs)  # every job once, none twice


def test_fair_share_between_owners(store: SqlStore) -> None:
    """A key with a job running waits behind a key with none, even with older jobs queued."""
    a1, a2 = new_job(store, "key_a"), new_job(store, "key_a")
    b1 = new_job(store, "key_b")
    assert claim(store, "w1").id == a1.id
    assert claim(store, "w2").id == b1.id  # key_a already has one running
    assert claim(store, "w3").id == a2.id


def test_the_early_quota_check_answers_as_admission_does(store: SqlStore) -> None:
    """One rule: the read-only check and the inserting transaction refuse alike, with one Retry-After
    (when the oldest job of the window leaves it, about 24 h after it was made)."""
    for _ in range(2):
        new_job(store, "key_q")
    store.check_quota("key_q", 3)  # 2 of 3 used
    new_job(store, "key_q")
    with pytest.raises(QuotaExceededError) as early:
        store.check_quota("key_q", 3)
    with pytest.raises(QuotaExceededError) as binding:
        store.create_job(
            owner="key_q", spec={}, upload_sha256="1" * 64, upload_bytes=1, filename="a.mp4",
            admission=Admission(jobs_per_day=3, max_queued=None),
        )  # fmt: skip
    assert str(early.value) == str(binding.value)
    assert 86_000 < early.value.retry_after_s <= 86_400
    assert abs(early.value.retry_after_s - binding.value.retry_after_s) < 5


@pytest.mark.parametrize("limit", ["quota", "queue"])
def test_admission_holds_under_concurrency(store: SqlStore, limit: str) -> None:
    """N concurrent creations against a limit L admit exactly min(N, L)."""
    n, cap = 10, 3
    admission = Admission(jobs_per_day=cap, max_queued=None) if limit == "quota" else Admission(None, cap)
    barrier = threading.Barrier(n)

    def attempt(i: int) -> bool:
        barrier.wait()
        try:
            store.create_job(
                owner="key_a",
                spec=SPEC,
                upload_sha256=SHA_A,
                upload_bytes=1,
                filename=f"{i}.mp4",
                admission=admission,
            )
        except (QuotaExceededError, BusyError) as exc:
            assert exc.retry_after_s >= 1.0
            return False
        return True

    with ThreadPoolExecutor(n) as pool:
        accepted = sum(pool.map(attempt, range(n)))
    assert accepted == cap
    assert store.counts()[JobState.QUEUED] == cap


def test_live_sessions_are_limited_per_key_and_per_worker(store: SqlStore) -> None:
    limits = {"per_key": 2, "per_worker": 3, "lease_s": LEASE}
    store.open_session("s1", "key_a", "w1", **limits)
    store.open_session("s2", "key_a", "w2", **limits)
    with pytest.raises(BusyError, match="API key"):
        store.open_session("s3", "key_a", "w1", **limits)
    store.open_session("s4", "key_b", "w1", **limits)
    store.open_session("s5", "key_c", "w1", **limits)
    with pytest.raises(BusyError, match="server"):
        store.open_session("s6", "key_d", "w1", **limits)
    store.close_session("s1")
    store.open_session("s7", "key_a", "w2", **limits)
    store.renew_session("s7", lease_s=0.0)  # its call ended without a goodbye: it expires
    store.open_session("s8", "key_a", "w2", **limits)


def test_shared_token_bucket(store: SqlStore) -> None:
    """60 a minute with a burst of 3: three at once, then one a second (GCRA), per key."""
    waits = [store.take("k", per_min=60, burst=3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and 0.9 < waits[3] <= 1.0
    assert store.peek("k", per_min=60, burst=3) > 0.9
    assert store.take("other", per_min=60, burst=3) == 0.0
    assert store.peek("never", per_min=60, burst=3) == 0.0


def test_replicas_and_wait_estimate(store: SqlStore) -> None:
    assert store.live_slots(ttl_s=30) == 0
    store.heartbeat_worker("r1", host="a", slots=2)
    store.heartbeat_worker("r2", host="b", slots=1)
    assert store.live_slots(ttl_s=30) == 3
    store.heartbeat_worker("r2", host="b", slots=1, draining=True)
    assert store.live_slots(ttl_s=30) == 2
    store.remove_worker("r1")
    assert store.live_slots(ttl_s=30) == 0
    assert 1.0 <= store.wait_estimate_s(5) <= 600.0


def test_a_shared_secret_is_made_once_for_every_replica(store: SqlStore, store_url: str) -> None:
    other = SqlStore(store_url)  # another replica on the same database
    try:
        with ThreadPoolExecutor(4) as pool:
            made = list(pool.map(lambda s: s.secret("links"), [store, other, store, other]))
    finally:
        other.close()
    assert len(set(made)) == 1 and len(made[0]) == 32
    assert store.secret("other") != made[0]


def test_migrates_a_database_made_before_migrations(tmp_path: Path) -> None:
    """A store created by the first schema (no migration table) is stamped and upgraded in place, its
    rows kept."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in OLD_SCHEMA:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    s = SqlStore(url)
    try:
        job = s.get("an_" + "1" * 24)
        assert (job.state, job.pose_runs, job.checkpoint) == (JobState.QUEUED, 0, None)
        assert claim(s).id == job.id
    finally:
        s.close()


OLD_SCHEMA = (
    "CREATE TABLE api_keys (id VARCHAR(32) PRIMARY KEY, name VARCHAR(200) NOT NULL UNIQUE, secret_sha256 "
    "VARCHAR(64) NOT NULL UNIQUE, jobs_per_day INTEGER NOT NULL, requests_per_min INTEGER NOT NULL, "
    "created_at DATETIME NOT NULL, revoked BOOLEAN NOT NULL)",
    "CREATE TABLE jobs (id VARCHAR(32) PRIMARY KEY, owner VARCHAR(32) NOT NULL, state VARCHAR(16) NOT NULL, "
    "stage VARCHAR(32) NOT NULL, progress FLOAT NOT NULL, error_code VARCHAR(64), error_message TEXT, spec "
    "JSON NOT NULL, idempotency_key VARCHAR(255), upload_sha256 VARCHAR(64) NOT NULL, upload_bytes BIGINT "
    "NOT NULL, filename TEXT NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, "
    "started_at DATETIME, finished_at DATETIME, attempts INTEGER NOT NULL, summary JSON, CONSTRAINT "
    "uq_jobs_owner_idempotency_key UNIQUE (owner, idempotency_key))",
    f"INSERT INTO jobs VALUES ('an_{'1' * 24}', 'key_a', 'queued', 'queued', 0.0, NULL, NULL, '{{}}', NULL, "
    f"'{SHA_A}', 1, 'a.mp4', '2026-11-01 10:00:00', '2026-11-01 10:00:00', NULL, NULL, 0, NULL)",
)


def test_count_since_and_counts(store: SqlStore) -> None:
    assert store.counts() == dict.fromkeys(JobState, 0)
    start = datetime.now(UTC)
    jobs = [new_job(store) for _ in range(3)]
    new_job(store, owner="key_b")
    assert store.count_since("key_a", start - timedelta(days=1)) == 3
    assert store.count_since("key_a", jobs[1].created_at) == 2
    assert store.count_since("key_a", datetime.now(UTC) + timedelta(seconds=1)) == 0
    assert store.count_since("key_nobody", start - timedelta(days=1)) == 0
    done = claim(store)
    store.mark_done(done.id, "w1", {})
    store.mark_failed(jobs[1].id, "x", "y")
    claim(store)
    assert store.counts() == {JobState.QUEUED: 1, JobState.RUNNING: 1, JobState.DONE: 1, JobState.FAILED: 1}


def test_keys(store: SqlStore, store_url: str) -> None:
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


def test_naive_datetimes_refused(store: SqlStore) -> None:
    with pytest.raises(ValueError):
        store.count_since("key_a", datetime(2024, 1, 1))


def test_sqlite_creates_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "jobs.db"
    s = SqlStore(f"sqlite:///{path}")
    try:
        new_job(s)
        assert s.dialect == "sqlite" and path.is_file()
    finally:
        s.close()
