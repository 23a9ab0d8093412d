"""The gateway's job store: analysis jobs and API keys in SQLite (default) or PostgreSQL.

Schema (SQLAlchemy Core, created on first use)::

    api_keys  id PK ("key_" + 16 hex) | name UNIQUE | secret_sha256 UNIQUE | jobs_per_day
              | requests_per_min | created_at | revoked
    jobs      id PK ("an_" + 24 hex) | owner (api_keys.id) | state | stage | progress
              | error_code | error_message | spec JSON | idempotency_key | upload_sha256
              | upload_bytes | filename | created_at | updated_at | started_at | finished_at
              | attempts | summary JSON
              UNIQUE (owner, idempotency_key); INDEX (owner, created_at, id); INDEX (state)

Times are timezone-aware UTC in Python; SQLite stores them without a zone and they get UTC back on
read. API key secrets are never stored, only their SHA-256 (secrets are high-entropy random tokens,
so a plain hash is enough).

Never lose a job: every row is either unfinished (``queued`` or ``running``), which start-up recovery
picks up again through :meth:`JobStore.unfinished`, or terminal (``done`` or ``failed``). Each state
change is one committed transaction, and nothing leaves a terminal state; only :meth:`JobStore.delete`
removes a row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import re
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    make_url,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from services.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)

log = logging.getLogger("gaitway.store")


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


TERMINAL = frozenset({JobState.DONE, JobState.FAILED})
UNFINISHED = frozenset({JobState.QUEUED, JobState.RUNNING})

MAX_PAGE = 100
SQLITE_BUSY_TIMEOUT_MS = 30_000

_JOB_ID = re.compile(r"an_[0-9a-f]{24}")
_KEY_ID = re.compile(r"key_[0-9a-f]{16}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,200}")
_MAX_IDEMPOTENCY_KEY = 255


def new_job_id() -> str:
    return "an_" + secrets.token_hex(12)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime``; naive values are refused on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> Any:
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


metadata = MetaData()

api_keys_table = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("jobs_per_day", Integer, nullable=False),
    Column("requests_per_min", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

jobs_table = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("stage", String(32), nullable=False),
    Column("progress", Float, nullable=False),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("spec", _json(), nullable=False),
    Column("idempotency_key", String(_MAX_IDEMPOTENCY_KEY)),
    Column("upload_sha256", String(64), nullable=False),
    Column("upload_bytes", BigInteger, nullable=False),
    Column("filename", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("attempts", Integer, nullable=False),
    Column("summary", _json()),
    UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    Index("ix_jobs_owner_created", "owner", "created_at", "id"),
    Index("ix_jobs_state", "state"),
)


@dataclass(frozen=True)
class Job:
    """One analysis request and where it stands."""

    id: str
    owner: str
    state: JobState
    stage: str
    progress: float
    error_code: str | None
    error_message: str | None
    spec: dict[str, Any]
    idempotency_key: str | None
    upload_sha256: str
    upload_bytes: int
    filename: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    summary: dict[str, Any] | None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class ApiKey:
    """A client of the gateway. Its secret is known only to the client."""

    id: str
    name: str
    jobs_per_day: int
    requests_per_min: int
    created_at: datetime
    revoked: bool


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
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        stamp, job_id = text.split("|")
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if created_at.tzinfo is None or not _JOB_ID.fullmatch(job_id):
        raise bad
    return created_at.astimezone(UTC), job_id


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()


class JobStore:
    """Jobs and API keys behind one SQLAlchemy engine; safe to share between threads."""

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
        metadata.create_all(self._engine)
        log.info("job store ready", extra={"dialect": self.dialect})

    def close(self) -> None:
        self._engine.dispose()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

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
        for _ in range(2):
            try:
                with self._engine.begin() as conn:
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
                with self._engine.connect() as conn:
                    clash = conn.execute(
                        select(api_keys_table.c.name).where(api_keys_table.c.secret_sha256 == digest)
                    ).first()
                if clash is not None and clash.name != name:
                    raise ConflictError("this secret already belongs to another API key") from None
        raise ConflictError(f"API key {name!r} is being changed concurrently")

    def authenticate(self, secret: str) -> ApiKey:
        """The active key of this secret; AuthenticationError otherwise."""
        if secret:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(api_keys_table).where(api_keys_table.c.secret_sha256 == hash_secret(secret))
                ).first()
            if row is not None and not row.revoked:
                return _key(row)
        raise AuthenticationError("invalid or revoked API key")

    def revoke_key(self, key_id: str) -> None:
        if _KEY_ID.fullmatch(key_id):
            with self._engine.begin() as conn:
                result = conn.execute(
                    update(api_keys_table).where(api_keys_table.c.id == key_id).values(revoked=True)
                )
            if result.rowcount:
                return
        raise NotFoundError(f"no API key {key_id!r}")

    def list_keys(self) -> list[ApiKey]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(api_keys_table).order_by(api_keys_table.c.created_at, api_keys_table.c.name)
            ).all()
        return [_key(row) for row in rows]

    # ---------------------------------------------------------------- jobs

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
    ) -> tuple[Job, bool]:
        """A new queued job, or the owner's earlier job of the same idempotency key: (job, created).

        ConflictError if the idempotency key was used by this owner for a different upload.
        """
        if idempotency_key is not None and not 0 < len(idempotency_key) <= _MAX_IDEMPOTENCY_KEY:
            raise BadRequestError(f"an idempotency key has 1-{_MAX_IDEMPOTENCY_KEY} characters")
        if not _SHA256.fullmatch(upload_sha256):
            raise ValueError("upload_sha256 must be 64 lowercase hex digits")
        if upload_bytes < 0:
            raise ValueError("upload_bytes must be >= 0")
        if job_id is None:
            job_id = new_job_id()
        elif not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"malformed job id {job_id!r}")
        if idempotency_key is not None:
            existing = self.find_idempotent(owner, idempotency_key)
            if existing is not None:
                return self._same_upload(existing, upload_sha256), False
        now = _now()
        row = {
            "id": job_id,
            "owner": owner,
            "state": JobState.QUEUED.value,
            "stage": "queued",
            "progress": 0.0,
            "error_code": None,
            "error_message": None,
            "spec": dict(spec),
            "idempotency_key": idempotency_key,
            "upload_sha256": upload_sha256,
            "upload_bytes": upload_bytes,
            "filename": filename,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
            "attempts": 0,
            "summary": None,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(jobs_table).values(**row))
                created = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).one()
        except IntegrityError:
            if idempotency_key is not None:
                existing = self.find_idempotent(owner, idempotency_key)
                if existing is not None:
                    return self._same_upload(existing, upload_sha256), False
            raise ConflictError(f"job {job_id} already exists") from None
        return _job(created), True

    @staticmethod
    def _same_upload(existing: Job, upload_sha256: str) -> Job:
        if existing.upload_sha256 != upload_sha256:
            raise ConflictError(
                f"idempotency key {existing.idempotency_key!r} was used for a different upload "
                f"(job {existing.id})"
            )
        return existing

    def find_idempotent(self, owner: str, key: str) -> Job | None:
        """The owner's job created with this idempotency key, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(jobs_table).where(jobs_table.c.owner == owner, jobs_table.c.idempotency_key == key)
            ).first()
        return None if row is None else _job(row)

    def get(self, job_id: str, *, owner: str | None = None) -> Job:
        """The job; NotFoundError if absent, PermissionDeniedError if ``owner`` is given and differs."""
        with self._engine.connect() as conn:
            job = self._get(conn, job_id)
        if owner is not None and job.owner != owner:
            raise PermissionDeniedError(f"job {job_id} belongs to another API key")
        return job

    @staticmethod
    def _get(conn: Connection, job_id: str) -> Job:
        if _JOB_ID.fullmatch(job_id):
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).first()
            if row is not None:
                return _job(row)
        raise NotFoundError(f"no job {job_id!r}")

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
                raise BadRequestError(f"unknown job state {state!r}") from None
        if cursor is not None:
            after_at, after_id = decode_cursor(cursor)
            query = query.where(or_(t.created_at < after_at, (t.created_at == after_at) & (t.id < after_id)))
        query = query.order_by(t.created_at.desc(), t.id.desc()).limit(limit + 1)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        jobs = [_job(row) for row in rows[:limit]]
        more = len(rows) > limit
        return jobs, (encode_cursor(jobs[-1].created_at, jobs[-1].id) if more else None)

    def count_since(self, owner: str, since: datetime) -> int:
        """Jobs the owner created at or after ``since`` (the daily quota)."""
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        with self._engine.connect() as conn:
            n = conn.execute(
                select(func.count())
                .select_from(jobs_table)
                .where(jobs_table.c.owner == owner, jobs_table.c.created_at >= since)
            ).scalar_one()
        return int(n)

    def _transition(self, job_id: str, values: dict[str, Any]) -> Job:
        """Apply ``values`` to a job that is not terminal; ConflictError if it is."""
        t = jobs_table.c
        changed = 0
        with self._engine.begin() as conn:
            if _JOB_ID.fullmatch(job_id):
                changed = conn.execute(
                    update(jobs_table)
                    .where(t.id == job_id, t.state.not_in([s.value for s in TERMINAL]))
                    .values(updated_at=_now(), **values)
                ).rowcount
            job = self._get(conn, job_id)
        if not changed:
            raise ConflictError(f"job {job_id} already {job.state}")
        return job

    def mark_running(self, job_id: str) -> Job:
        """Running, stage "pose", one more attempt; ``started_at`` is set the first time only."""
        now = _now()
        return self._transition(
            job_id,
            {
                "state": JobState.RUNNING.value,
                "stage": "pose",
                "attempts": jobs_table.c.attempts + 1,
                "started_at": func.coalesce(jobs_table.c.started_at, literal(now, UTCDateTime())),
            },
        )

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        """Record progress (clamped to 0..1) of a job that is not terminal; otherwise nothing happens."""
        if math.isnan(progress):
            raise ValueError("progress is NaN")
        t = jobs_table.c
        with self._engine.begin() as conn:
            conn.execute(
                update(jobs_table)
                .where(t.id == job_id, t.state.not_in([s.value for s in TERMINAL]))
                .values(stage=stage, progress=min(max(float(progress), 0.0), 1.0), updated_at=_now())
            )

    def mark_done(self, job_id: str, summary: Mapping[str, Any]) -> Job:
        return self._transition(
            job_id,
            {
                "state": JobState.DONE.value,
                "stage": "done",
                "progress": 1.0,
                "summary": dict(summary),
                "finished_at": _now(),
            },
        )

    def mark_failed(self, job_id: str, code: str, message: str) -> Job:
        return self._transition(
            job_id,
            {
                "state": JobState.FAILED.value,
                "stage": "failed",
                "error_code": code,
                "error_message": message,
                "finished_at": _now(),
            },
        )

    def requeue(self, job_id: str) -> Job:
        """Back to the queue (a retry, or recovery after a restart); attempts stay as they are."""
        return self._transition(job_id, {"state": JobState.QUEUED.value, "stage": "queued", "progress": 0.0})

    def unfinished(self) -> list[Job]:
        """Queued and running jobs, oldest first: what start-up recovery resumes."""
        t = jobs_table.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(jobs_table)
                .where(t.state.in_([s.value for s in UNFINISHED]))
                .order_by(t.created_at, t.id)
            ).all()
        return [_job(row) for row in rows]

    def delete(self, job_id: str, *, owner: str) -> Job:
        """Remove the owner's job, whatever its state, and return it."""
        job = self.get(job_id, owner=owner)
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(jobs_table).where(jobs_table.c.id == job_id, jobs_table.c.owner == owner)
            )
        if result.rowcount == 0:
            raise NotFoundError(f"no job {job_id!r}")
        return job

    def counts(self) -> dict[JobState, int]:
        """Number of jobs in each state (every state is a key)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(jobs_table.c.state, func.count()).group_by(jobs_table.c.state)).all()
        out = dict.fromkeys(JobState, 0)
        for state, n in rows:
            out[JobState(state)] = int(n)
        return out
