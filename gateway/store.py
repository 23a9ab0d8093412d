"""The gateway's store on SQL: SQLite (the default, one machine) or PostgreSQL (several replicas).

Tables (schema versions in ``gateway/migrations``, applied by Alembic at start-up under a lock, so replicas
starting together migrate once)::

    api_keys       id PK | name UNIQUE | secret_sha256 UNIQUE | jobs_per_day | requests_per_min
                   | created_at | revoked
    jobs           id PK | owner | state | stage | progress | error_code | error_message | spec JSON
                   | idempotency_key | upload_sha256 | upload_bytes | filename | created_at | updated_at
                   | started_at | finished_at | attempts | summary JSON | lease_owner | lease_until
                   | not_before | checkpoint | pose_runs | outage_retries | outage_since
                   UNIQUE (owner, idempotency_key); INDEX (owner, created_at, id); INDEX (state)
    workers        id PK | host | slots | started_at | last_seen | draining        (one row a replica)
    live_sessions  id PK | owner | worker | started_at | lease_until                (StreamFrames calls)
    rate_limits    key PK | tat                                                   (shared token buckets)
    secrets        name PK | value | created_at                          (shared signing keys)

The database is the queue: a worker *claims* a job with one transaction (PostgreSQL: ``SELECT ... FOR
UPDATE SKIP LOCKED``; SQLite: a write transaction begun ``IMMEDIATE``, which SQLite serialises), taking a
lease it renews while it works. Candidates are queued jobs past their ``not_before`` and running jobs
whose lease ran out (their replica died), ordered by how many jobs their owner has running (fair share
between keys), then age. Admission (idempotency, the owner's daily quota, the queue limit) is decided in
the transaction that inserts the job, under the same serialisation, so N concurrent requests against a
limit L accept exactly min(N, L).

Why not a task-queue library: procrastinate, the maintained PostgreSQL-backed one, needs PostgreSQL, while
the default single-machine deployment runs on SQLite; and the job row already holds the analysis' state,
progress, idempotency and checkpoint, which a second queue table would duplicate. The claim and lease are
a few statements, tested on both databases.

Rate limits are GCRA token buckets (one row per limited key, one conditional upsert per request), shared
by every replica. pyrate-limiter's SQL buckets keep a row per request in a table per bucket (under table
locks), and ``limits`` has no SQL storage.

Times are timezone-aware UTC from the replicas' clocks (keep them NTP-synchronised; leases are tens of
seconds). API key secrets are never stored, only their SHA-256 (high-entropy random tokens).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import math
import re
import secrets
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Row,
    Select,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal,
    make_url,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from gateway.records import (
    MAX_IDEMPOTENCY_KEY,
    MAX_PAGE,
    TERMINAL,
    UNFINISHED,
    Admission,
    ApiKey,
    Job,
    JobState,
    is_job_id,
    is_key_id,
    new_job_id,
    new_key_id,
)
from gateway.tables import (
    UTCDateTime,
    api_keys_table,
    jobs_table,
    live_sessions_table,
    rate_limits_table,
    secrets_table,
    workers_table,
)
from services.errors import (
    AuthenticationError,
    BadRequestError,
    BusyError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
)

__all__ = ["SqlStore", "decode_cursor", "encode_cursor", "hash_secret"]

log = logging.getLogger("gaitway.store")

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: the first schema version: databases created before migrations existed hold exactly this
BASELINE_REVISION = "0001"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,200}")
#: PostgreSQL advisory lock keys (stable across processes)
_LOCK_MIGRATE = zlib.crc32(b"gaitway.migrate") & 0x7FFFFFFF
_LOCK_ADMIT = zlib.crc32(b"gaitway.admit") & 0x7FFFFFFF
_LOCK_SESSIONS = zlib.crc32(b"gaitway.sessions") & 0x7FFFFFFF
#: how many recent jobs the wait estimate looks at, and its bounds (seconds)
_RECENT_JOBS = 20
_WAIT_BOUNDS_S = (1.0, 600.0)
_DEFAULT_JOB_S = 30.0


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _job(row: Row[Any]) -> Job:
    m = row._mapping
    return Job(
        id=m["id"],
        owner=m["owner"],
        state=JobState(m["state"]),
        stage=m["stage"],
        progress=float(m["progress"]),
        error_code=m["error_code"],
        error_message=m["error_message"],
        spec=dict(m["spec"]),
        idempotency_key=m["idempotency_key"],
        upload_sha256=m["upload_sha256"],
        upload_bytes=int(m["upload_bytes"]),
        filename=m["filename"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        attempts=int(m["attempts"]),
        summary=None if m["summary"] is None else dict(m["summary"]),
        lease_owner=m["lease_owner"],
        lease_until=m["lease_until"],
        not_before=m["not_before"],
        checkpoint=m["checkpoint"],
        pose_runs=int(m["pose_runs"]),
        outage_retries=int(m["outage_retries"]),
        outage_since=m["outage_since"],
    )


def _key(row: Row[Any]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=m["id"],
        name=m["name"],
        jobs_per_day=int(m["jobs_per_day"]),
        requests_per_min=int(m["requests_per_min"]),
        created_at=m["created_at"],
        revoked=bool(m["revoked"]),
    )


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at, id)`` of the last job of the previous page; BadRequestError if malformed."""
    bad = BadRequestError("malformed pagination cursor")
    if not _CURSOR.fullmatch(cursor):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        stamp, job_id = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if created_at.tzinfo is None or not is_job_id(job_id):
        raise bad
    return created_at.astimezone(UTC), job_id


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.isolation_level = None  # transactions are begun explicitly (see _sqlite_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writes begin IMMEDIATE (the write lock at once, so a read-then-write transaction cannot be beaten to
    it by another writer); reads begin DEFERRED (WAL readers never block)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


class SqlStore:
    """Jobs, API keys, replicas, live sessions and rate limits behind one SQLAlchemy engine; safe to share
    between threads and between processes on the same database."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
            database = parsed.database or ""
            if database in ("", ":memory:") or database.startswith("file:"):
                kwargs["poolclass"] = StaticPool
            else:
                Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["pool_pre_ping"] = True
        self._engine = create_engine(parsed, **kwargs)
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine, "connect", _sqlite_on_connect)
            event.listen(self._engine, "begin", _sqlite_begin)
        self._memory_lock = threading.Lock()  # StaticPool shares one connection between threads
        self._migrate()
        log.info("job store ready", extra={"dialect": self.dialect})

    # ---------------------------------------------------------------- plumbing

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _write(self, lock: int | None = None) -> Iterator[Connection]:
        """A write transaction; with ``lock``, serialised with every other transaction taking it (PostgreSQL:
        an advisory transaction lock; SQLite serialises every write transaction anyway)."""
        with self._engine.connect().execution_options(write=True) as conn, conn.begin():
            if lock is not None and self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(lock)))
            yield conn

    def _migrate(self) -> None:
        """Bring the schema to the newest version (Alembic), once even when replicas start together."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._engine.connect().execution_options(write=True) as conn, conn.begin():
            if self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_LOCK_MIGRATE)))
            tables = set(inspect(conn).get_table_names())
            cfg.attributes["connection"] = conn
            if "jobs" in tables and "alembic_version" not in tables:  # made before migrations existed
                command.stamp(cfg, BASELINE_REVISION)
            command.upgrade(cfg, "head")

    def _insert(self) -> Any:
        return pg.insert if self.dialect == "postgresql" else sqlite_dialect.insert

    def _greatest(self, a: Any, b: Any) -> Any:
        return func.greatest(a, b) if self.dialect == "postgresql" else func.max(a, b)

    # ---------------------------------------------------------------- API keys

    def create_key(
        self, name: str, *, jobs_per_day: int, requests_per_min: int, secret: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new key, or new secret and limits for the key of this name. Returns (key, secret)."""
        if not name or len(name) > 200:
            raise ValueError("an API key name has 1-200 characters")
        if jobs_per_day <= 0 or requests_per_min <= 0:
            raise ValueError("API key limits must be positive")
        if secret is None:
            secret = "gw_" + secrets.token_urlsafe(32)
        if not secret:
            raise ValueError("an API key secret must not be empty")
        digest = hash_secret(secret)
        limits = {"secret_sha256": digest, "jobs_per_day": jobs_per_day, "requests_per_min": requests_per_min}
        try:
            with self._write() as conn:
                updated = conn.execute(
                    update(api_keys_table).where(api_keys_table.c.name == name).values(**limits)
                )
                if updated.rowcount == 0:
                    conn.execute(
                        insert(api_keys_table).values(
                            id=new_key_id(), name=name, created_at=_now(), revoked=False, **limits
                        )
                    )
                row = conn.execute(select(api_keys_table).where(api_keys_table.c.name == name)).one()
            return _key(row), secret
        except IntegrityError:
            raise ConflictError("this secret already belongs to another API key") from None

    def authenticate(self, secret: str) -> ApiKey:
        """The active key of this secret; AuthenticationError otherwise."""
        if secret:
            with self._read() as conn:
                row = conn.execute(
                    select(api_keys_table).where(api_keys_table.c.secret_sha256 == hash_secret(secret))
                ).first()
            if row is not None and not row.revoked:
                return _key(row)
        raise AuthenticationError("invalid or revoked API key")

    def revoke_key(self, key_id: str) -> None:
        if is_key_id(key_id):
            with self._write() as conn:
                result = conn.execute(
                    update(api_keys_table).where(api_keys_table.c.id == key_id).values(revoked=True)
                )
            if result.rowcount:
                return
        raise NotFoundError("no such API key")

    def list_keys(self) -> list[ApiKey]:
        with self._read() as conn:
            rows = conn.execute(
                select(api_keys_table).order_by(api_keys_table.c.created_at, api_keys_table.c.name)
            ).all()
        return [_key(row) for row in rows]

    # ---------------------------------------------------------------- jobs: admission and reading

    def create_job(
        self,
        *,
        owner: str,
        spec: Mapping[str, Any],
        upload_sha256: str,
        upload_bytes: int,
        filename: str,
        idempotency_key: str | None = None,
        job_id: str | None = None,
        admission: Admission | None = None,
    ) -> tuple[Job, bool]:
        """A new queued job, or the owner's earlier job of the same idempotency key: (job, created).

        Admission is decided in the inserting transaction: ConflictError if the idempotency key was used
        by this owner for a different upload, QuotaExceededError past ``admission.jobs_per_day`` jobs in
        the last 24 h, BusyError with ``admission.max_queued`` jobs already waiting."""
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise BadRequestError(f"an idempotency key has 1-{MAX_IDEMPOTENCY_KEY} characters")
        if not _SHA256.fullmatch(upload_sha256):
            raise ValueError("upload_sha256 must be 64 lowercase hex digits")
        if upload_bytes < 0:
            raise ValueError("upload_bytes must be >= 0")
        if job_id is None:
            job_id = new_job_id()
        elif not is_job_id(job_id):
            raise ValueError(f"malformed job id {job_id!r}")
        now = _now()
        t = jobs_table.c
        try:
            with self._write(_LOCK_ADMIT) as conn:
                if idempotency_key is not None:
                    row = conn.execute(
                        select(jobs_table).where(t.owner == owner, t.idempotency_key == idempotency_key)
                    ).first()
                    if row is not None:
                        return self._same_upload(_job(row), upload_sha256), False
                if admission is not None:
                    self._admit(conn, owner, admission, now)
                conn.execute(insert(jobs_table).values(**self._new_row(job_id, owner, spec, now), **{
                    "idempotency_key": idempotency_key,
                    "upload_sha256": upload_sha256,
                    "upload_bytes": upload_bytes,
                    "filename": filename,
                }))  # fmt: skip
                created = conn.execute(select(jobs_table).where(t.id == job_id)).one()
        except IntegrityError:
            raise ConflictError(f"job {job_id} already exists") from None
        return _job(created), True

    @staticmethod
    def _new_row(job_id: str, owner: str, spec: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        return {
            "id": job_id,
            "owner": owner,
            "state": JobState.QUEUED.value,
            "stage": "queued",
            "progress": 0.0,
            "spec": dict(spec),
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
            "pose_runs": 0,
            "outage_retries": 0,
        }

    def check_quota(self, owner: str, jobs_per_day: int) -> None:
        """QuotaExceededError when ``owner`` has created ``jobs_per_day`` jobs in the last 24 h (an early,
        read-only look; the binding decision is the one :meth:`create_job` takes)."""
        with self._read() as conn:
            self._check_quota(conn, owner, jobs_per_day, _now())

    @staticmethod
    def _check_quota(conn: Connection, owner: str, jobs_per_day: int, now: datetime) -> None:
        t = jobs_table.c
        used, oldest = conn.execute(
            select(func.count(), func.min(t.created_at)).where(
                t.owner == owner, t.created_at >= now - timedelta(days=1)
            )
        ).one()
        if used >= jobs_per_day:
            free_at = (oldest or now) + timedelta(days=1)  # when the oldest leaves the window
            raise QuotaExceededError(
                f"daily quota of {jobs_per_day} analyses used (rolling 24 h)",
                retry_after_s=max(1.0, (free_at - now).total_seconds()),
            )

    def _admit(self, conn: Connection, owner: str, admission: Admission, now: datetime) -> None:
        t = jobs_table.c
        if admission.jobs_per_day is not None:
            self._check_quota(conn, owner, admission.jobs_per_day, now)
        if admission.max_queued is not None:
            queued = conn.execute(select(func.count()).where(t.state == JobState.QUEUED.value)).scalar_one()
            if queued >= admission.max_queued:
                raise BusyError(
                    f"{queued} analyses are waiting for a worker (limit {admission.max_queued})",
                    retry_after_s=self._wait_estimate(conn, queued, now),
                )

    @staticmethod
    def _same_upload(existing: Job, upload_sha256: str) -> Job:
        if existing.upload_sha256 != upload_sha256:
            raise ConflictError(f"this idempotency key was used for a different upload (job {existing.id})")
        return existing

    def find_idempotent(self, owner: str, key: str) -> Job | None:
        """The owner's job created with this idempotency key, if any."""
        with self._read() as conn:
            row = conn.execute(
                select(jobs_table).where(jobs_table.c.owner == owner, jobs_table.c.idempotency_key == key)
            ).first()
        return None if row is None else _job(row)

    def get(self, job_id: str, *, owner: str | None = None) -> Job:
        """The job; NotFoundError if absent, PermissionDeniedError if ``owner`` is given and differs."""
        with self._read() as conn:
            job = self._get(conn, job_id)
        if owner is not None and job.owner != owner:
            raise PermissionDeniedError("this analysis belongs to another API key")
        return job

    @staticmethod
    def _get(conn: Connection, job_id: str) -> Job:
        if is_job_id(job_id):
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).first()
            if row is not None:
                return _job(row)
        raise NotFoundError("no such analysis")

    def list_jobs(
        self, owner: str, *, limit: int = 20, cursor: str | None = None, state: JobState | None = None
    ) -> tuple[list[Job], str | None]:
        """One page of the owner's jobs, newest first, and the cursor of the next page (None: last)."""
        if isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise BadRequestError(f"limit must be within 1-{MAX_PAGE}, got {limit}")
        t = jobs_table.c
        query = select(jobs_table).where(t.owner == owner)
        if state is not None:
            try:
                query = query.where(t.state == JobState(state).value)
            except ValueError:
                raise BadRequestError("unknown job state") from None
        if cursor is not None:
            after_at, after_id = decode_cursor(cursor)
            query = query.where(or_(t.created_at < after_at, (t.created_at == after_at) & (t.id < after_id)))
        query = query.order_by(t.created_at.desc(), t.id.desc()).limit(limit + 1)
        with self._read() as conn:
            rows = conn.execute(query).all()
        jobs = [_job(row) for row in rows[:limit]]
        more = len(rows) > limit
        return jobs, (encode_cursor(jobs[-1].created_at, jobs[-1].id) if more else None)

    def count_since(self, owner: str, since: datetime) -> int:
        """Jobs the owner created at or after ``since`` (the daily quota)."""
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        with self._read() as conn:
            n = conn.execute(
                select(func.count()).where(jobs_table.c.owner == owner, jobs_table.c.created_at >= since)
            ).scalar_one()
        return int(n)

    def counts(self) -> dict[JobState, int]:
        """Number of jobs in each state (every state is a key)."""
        with self._read() as conn:
            rows = conn.execute(select(jobs_table.c.state, func.count()).group_by(jobs_table.c.state)).all()
        out = dict.fromkeys(JobState, 0)
        for state, n in rows:
            out[JobState(state)] = int(n)
        return out

    def wait_estimate_s(self, ahead: int) -> float:
        """Seconds until a job with ``ahead`` jobs queued before it starts: rounds of the live workers'
        slots times the median duration of recent jobs."""
        with self._read() as conn:
            return self._wait_estimate(conn, ahead, _now())

    def _wait_estimate(self, conn: Connection, ahead: int, now: datetime) -> float:
        t = jobs_table.c
        rows = conn.execute(
            select(t.started_at, t.finished_at)
            .where(t.state == JobState.DONE.value, t.started_at.is_not(None))
            .order_by(t.finished_at.desc())
            .limit(_RECENT_JOBS)
        ).all()
        durations = sorted((f - s).total_seconds() for s, f in rows if f is not None)
        per_job = durations[len(durations) // 2] if durations else _DEFAULT_JOB_S
        slots = max(1, self._live_slots(conn, now, ttl_s=30.0))
        wait = math.ceil((ahead + 1) / slots) * per_job
        return round(min(max(wait, _WAIT_BOUNDS_S[0]), _WAIT_BOUNDS_S[1]), 1)

    def delete(self, job_id: str, *, owner: str) -> Job:
        """Remove the owner's job, whatever its state, and return it (a worker running it loses its lease)."""
        job = self.get(job_id, owner=owner)
        with self._write() as conn:
            result = conn.execute(
                delete(jobs_table).where(jobs_table.c.id == job_id, jobs_table.c.owner == owner)
            )
        if result.rowcount == 0:
            raise NotFoundError("no such analysis")
        return job

    # ---------------------------------------------------------------- jobs: running them

    def _claimable(self, now: datetime, max_attempts: int) -> Select[Any]:
        t = jobs_table.c
        mine = jobs_table.alias("mine")
        running_of_owner = (
            select(func.count())
            .select_from(mine)
            .where(mine.c.owner == t.owner, mine.c.state == JobState.RUNNING.value, mine.c.lease_until >= now)
            .scalar_subquery()
        )
        query = (
            select(t.id)
            .where(
                or_(
                    (t.state == JobState.QUEUED.value) & (or_(t.not_before.is_(None), t.not_before <= now)),
                    (t.state == JobState.RUNNING.value) & (t.lease_until < now) & (t.attempts < max_attempts),
                )
            )
            .order_by(running_of_owner, t.created_at, t.id)
            .limit(1)
        )
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True, of=jobs_table)
        return query

    def claim(self, worker: str, *, lease_s: float, max_attempts: int) -> Job | None:
        """Take the next job for ``worker`` under a lease of ``lease_s`` seconds, or None. A job whose
        lease ran out is taken over (an attempt: its worker died); one that has used ``max_attempts``
        that way is left to :meth:`fail_abandoned`. The pose stage is counted as started unless a
        checkpoint holds its result."""
        now = _now()
        t = jobs_table.c
        with self._write() as conn:
            job_id = conn.execute(self._claimable(now, max_attempts)).scalar_one_or_none()
            if job_id is None:
                return None
            row = conn.execute(
                update(jobs_table)
                .where(t.id == job_id)
                .values(
                    state=JobState.RUNNING.value,
                    stage=case((t.checkpoint.is_(None), "pose"), else_=t.checkpoint),
                    lease_owner=worker,
                    lease_until=now + timedelta(seconds=lease_s),
                    attempts=t.attempts + 1,
                    pose_runs=t.pose_runs + case((t.checkpoint.is_(None), 1), else_=0),
                    started_at=func.coalesce(t.started_at, literal(now, UTCDateTime())),
                    not_before=None,
                    updated_at=now,
                )
                .returning(*jobs_table.c)
            ).one()
        return _job(row)

    def _owned(self, job_id: str, worker: str) -> Any:
        t = jobs_table.c
        return (t.id == job_id) & (t.lease_owner == worker) & (t.state == JobState.RUNNING.value)

    def renew(self, job_id: str, worker: str, *, lease_s: float) -> bool:
        """Extend ``worker``'s lease; False when it no longer holds the job (taken over or deleted)."""
        now = _now()
        with self._write() as conn:
            n = conn.execute(
                update(jobs_table)
                .where(self._owned(job_id, worker))
                .values(lease_until=now + timedelta(seconds=lease_s))
            ).rowcount
        return bool(n)

    def set_progress(self, job_id: str, worker: str, stage: str, progress: float, *, lease_s: float) -> bool:
        """Record progress (clamped to 0..1) and extend the lease; False when ``worker`` lost the job."""
        if math.isnan(progress):
            raise ValueError("progress is NaN")
        now = _now()
        with self._write() as conn:
            n = conn.execute(
                update(jobs_table)
                .where(self._owned(job_id, worker))
                .values(
                    stage=stage,
                    progress=min(max(float(progress), 0.0), 1.0),
                    lease_until=now + timedelta(seconds=lease_s),
                    updated_at=now,
                )
            ).rowcount
        return bool(n)

    def set_checkpoint(self, job_id: str, worker: str, checkpoint: str) -> bool:
        """Record that the result of stage ``checkpoint`` is saved; False when ``worker`` lost the job."""
        with self._write() as conn:
            n = conn.execute(
                update(jobs_table)
                .where(self._owned(job_id, worker))
                .values(checkpoint=checkpoint, outage_since=None)  # progress: any outage it met is over
            ).rowcount
        return bool(n)

    def _finish(self, job_id: str, worker: str | None, values: dict[str, Any]) -> Job:
        """Apply ``values`` to a job still held by ``worker`` (any unfinished job when None)."""
        t = jobs_table.c
        now = _now()
        where = (
            self._owned(job_id, worker)
            if worker is not None
            else (t.id == job_id) & t.state.in_([s.value for s in UNFINISHED])
        )
        with self._write() as conn:
            row = None
            if is_job_id(job_id):
                row = conn.execute(
                    update(jobs_table)
                    .where(where)
                    .values(updated_at=now, lease_owner=None, lease_until=None, **values)
                    .returning(*jobs_table.c)
                ).first()
            if row is None:
                job = self._get(conn, job_id)
                held = f"held by another worker ({job.state})" if job.state not in TERMINAL else job.state
                raise ConflictError(f"job {job_id} already {held}")
        return _job(row)

    def mark_done(self, job_id: str, worker: str, summary: Mapping[str, Any]) -> Job:
        return self._finish(
            job_id,
            worker,
            {
                "state": JobState.DONE.value,
                "stage": "done",
                "progress": 1.0,
                "summary": dict(summary),
                "finished_at": _now(),
            },
        )

    def mark_failed(self, job_id: str, code: str, message: str, *, worker: str | None = None) -> Job:
        return self._finish(
            job_id,
            worker,
            {
                "state": JobState.FAILED.value,
                "stage": "failed",
                "error_code": code,
                "error_message": message,
                "finished_at": _now(),
            },
        )

    def release(
        self, job_id: str, worker: str, *, delay_s: float = 0.0, attempt_used: bool, outage: bool = False
    ) -> Job:
        """Back to the queue, claimable again after ``delay_s``; the attempt is given back unless
        ``attempt_used`` (a failed try counts; a dependency outage or a shutdown does not)."""
        t = jobs_table.c
        values: dict[str, Any] = {
            "state": JobState.QUEUED.value,
            "stage": "queued",
            "progress": 0.0,
            "not_before": _now() + timedelta(seconds=delay_s) if delay_s > 0 else None,
        }
        if not attempt_used:
            values["attempts"] = t.attempts - 1
        if outage:
            values["outage_retries"] = t.outage_retries + 1
            values["outage_since"] = func.coalesce(t.outage_since, literal(_now(), UTCDateTime()))
        return self._finish(job_id, worker, values)

    def fail_abandoned(self, *, max_attempts: int) -> list[Job]:
        """Fail the running jobs whose lease ran out after ``max_attempts`` claims (their workers died each
        time) with the code ``interrupted``."""
        t = jobs_table.c
        return self._fail_where(
            (t.state == JobState.RUNNING.value) & (t.lease_until < _now()) & (t.attempts >= max_attempts),
            "interrupted",
            "the analysis was interrupted in each of its attempts",
        )

    def fail_outaged(self, *, max_outage_s: float, message: str) -> list[Job]:
        """Fail, with the code ``service_unavailable``, the queued jobs a dependency outage sent back to the
        queue more than ``max_outage_s`` ago (no worker claims them while the outage lasts)."""
        t = jobs_table.c
        cutoff = _now() - timedelta(seconds=max_outage_s)
        return self._fail_where(
            (t.state == JobState.QUEUED.value) & (t.outage_since < cutoff), "service_unavailable", message
        )

    def _fail_where(self, where: Any, code: str, message: str) -> list[Job]:
        now = _now()
        with self._write() as conn:
            rows = conn.execute(
                update(jobs_table)
                .where(where)
                .values(
                    state=JobState.FAILED.value,
                    stage="failed",
                    error_code=code,
                    error_message=message,
                    finished_at=now,
                    updated_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
                .returning(*jobs_table.c)
            ).all()
        return [_job(row) for row in rows]

    # ---------------------------------------------------------------- replicas

    def heartbeat_worker(self, worker: str, *, host: str, slots: int, draining: bool = False) -> None:
        """Record that replica ``worker`` is alive with ``slots`` analysis workers."""
        now = _now()
        ins = self._insert()(workers_table).values(
            id=worker, host=host[:255], slots=slots, started_at=now, last_seen=now, draining=draining
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[workers_table.c.id],
            set_={"slots": slots, "last_seen": now, "draining": draining},
        )
        with self._write() as conn:
            conn.execute(stmt)

    def remove_worker(self, worker: str) -> None:
        with self._write() as conn:
            conn.execute(delete(workers_table).where(workers_table.c.id == worker))
            conn.execute(delete(live_sessions_table).where(live_sessions_table.c.worker == worker))

    def live_slots(self, *, ttl_s: float) -> int:
        """Analysis workers of the replicas seen in the last ``ttl_s`` seconds and not draining."""
        with self._read() as conn:
            return self._live_slots(conn, _now(), ttl_s=ttl_s)

    @staticmethod
    def _live_slots(conn: Connection, now: datetime, *, ttl_s: float) -> int:
        w = workers_table.c
        n = conn.execute(
            select(func.coalesce(func.sum(w.slots), 0)).where(
                w.last_seen >= now - timedelta(seconds=ttl_s), w.draining.is_(False)
            )
        ).scalar_one()
        return int(n)

    # ---------------------------------------------------------------- live sessions

    def open_session(
        self, session: str, owner: str, worker: str, *, per_key: int, per_worker: int, lease_s: float
    ) -> None:
        """Register a live session, refusing it (BusyError) when ``owner`` already has ``per_key`` live
        sessions on any replica or replica ``worker`` has ``per_worker``; expired sessions do not count."""
        s = live_sessions_table.c
        now = _now()
        with self._write(_LOCK_SESSIONS) as conn:
            conn.execute(delete(live_sessions_table).where(s.lease_until < now))
            of_key = conn.execute(select(func.count()).where(s.owner == owner)).scalar_one()
            if of_key >= per_key:
                raise BusyError(
                    f"{of_key} live streams already open for this API key (limit {per_key})",
                    retry_after_s=10.0,
                )
            on_worker = conn.execute(select(func.count()).where(s.worker == worker)).scalar_one()
            if on_worker >= per_worker:
                raise BusyError(
                    f"this server is serving {on_worker} live streams (limit {per_worker})",
                    retry_after_s=10.0,
                )
            conn.execute(
                insert(live_sessions_table).values(
                    id=session,
                    owner=owner,
                    worker=worker,
                    started_at=now,
                    lease_until=now + timedelta(seconds=lease_s),
                )
            )

    def renew_session(self, session: str, *, lease_s: float) -> None:
        with self._write() as conn:
            conn.execute(
                update(live_sessions_table)
                .where(live_sessions_table.c.id == session)
                .values(lease_until=_now() + timedelta(seconds=lease_s))
            )

    def close_session(self, session: str) -> None:
        with self._write() as conn:
            conn.execute(delete(live_sessions_table).where(live_sessions_table.c.id == session))

    # ---------------------------------------------------------------- rate limits

    def peek(self, key: str, *, per_min: float, burst: float) -> float:
        """Like :meth:`take` without taking: 0 when a request would be allowed now, else the wait."""
        _, allowance = self._gcra(per_min, burst)
        now = _now().timestamp()
        with self._read() as conn:
            tat = conn.execute(
                select(rate_limits_table.c.tat).where(rate_limits_table.c.key == key[:200])
            ).scalar()
        return 0.0 if tat is None else max(0.0, float(tat) - now - allowance)

    @staticmethod
    def _gcra(per_min: float, burst: float) -> tuple[float, float]:
        if not (per_min > 0 and burst >= 1):
            raise ValueError("per_min must be > 0 and burst >= 1")
        interval = 60.0 / per_min
        return interval, (burst - 1.0) * interval  # the spacing, and how far ahead of now the bucket may run

    def take(self, key: str, *, per_min: float, burst: float) -> float:
        """One request against the token bucket ``key`` (``per_min`` tokens a minute, at most ``burst`` at
        once), shared by every replica (GCRA: one row, one conditional upsert). Returns 0 when allowed,
        else the seconds until it would be."""
        interval, allowance = self._gcra(per_min, burst)
        now = _now().timestamp()
        r = rate_limits_table.c
        ahead = self._greatest(r.tat, literal(now))
        stmt = (
            self._insert()(rate_limits_table)
            .values(key=key[:200], tat=now + interval)
            .on_conflict_do_update(
                index_elements=[r.key],
                set_={"tat": ahead + interval},
                where=ahead - now <= allowance,
            )
            .returning(r.tat)
        )
        with self._write() as conn:
            if conn.execute(stmt).first() is not None:
                return 0.0
            tat = conn.execute(select(r.tat).where(r.key == key[:200])).scalar_one()
        return max(0.0, float(tat) - now - allowance)

    # ---------------------------------------------------------------- shared secrets

    def secret(self, name: str) -> bytes:
        """The random secret ``name`` (32 bytes), made by whichever replica asks first and the same for
        every replica after (an insert that loses the race keeps the winner's)."""
        value = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        stmt = (
            self._insert()(secrets_table)
            .values(name=name, value=value, created_at=_now())
            .on_conflict_do_nothing(index_elements=[secrets_table.c.name])
        )
        with self._write() as conn:
            conn.execute(stmt)
            stored = conn.execute(
                select(secrets_table.c.value).where(secrets_table.c.name == name)
            ).scalar_one()
        return base64.urlsafe_b64decode(stored)
