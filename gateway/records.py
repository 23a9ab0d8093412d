"""What the gateway stores, independent of where: analysis jobs, API keys, the replicas' workers and live
sessions, and the interface a store offers (:class:`Store`), which ``gateway.store.SqlStore`` implements on
SQLite and PostgreSQL and ``tests/test_gateway_store.py`` checks as a contract.

A job's life::

    queued --claim--> running --done/failed--> done | failed
       ^                 |
       +-- release ------+   (a dependency outage, a shutdown, a retry: back in the queue)

A running job is held by one worker under a *lease* (``lease_owner``, ``lease_until``) that the worker
renews while it works. A lease that runs out (its replica died) makes the job claimable again by any
replica; nothing else ever takes a job from a live lease. Every transition of a running job names the lease
owner, so a worker that lost its lease (taken over, or the job deleted) can change nothing.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "MAX_IDEMPOTENCY_KEY",
    "MAX_PAGE",
    "TERMINAL",
    "UNFINISHED",
    "Admission",
    "ApiKey",
    "Job",
    "JobState",
    "Store",
    "is_job_id",
    "new_job_id",
    "new_key_id",
]


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


TERMINAL = frozenset({JobState.DONE, JobState.FAILED})
UNFINISHED = frozenset({JobState.QUEUED, JobState.RUNNING})

#: the longest page of a job listing
MAX_PAGE = 100
#: the longest idempotency key (HTTP header and gRPC field alike)
MAX_IDEMPOTENCY_KEY = 255

_JOB_ID = re.compile(r"an_[0-9a-f]{24}")
_KEY_ID = re.compile(r"key_[0-9a-f]{16}")


def new_job_id() -> str:
    return "an_" + secrets.token_hex(12)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID.fullmatch(value))


def is_key_id(value: str) -> bool:
    return bool(_KEY_ID.fullmatch(value))


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
    attempts: int  # claims that ran the job (a dependency outage or a shutdown gives its attempt back)
    summary: dict[str, Any] | None
    lease_owner: str | None = None  # the worker running it
    lease_until: datetime | None = None
    not_before: datetime | None = None  # not claimed before this time (a retry's backoff)
    checkpoint: str | None = None  # the last stage whose result is saved ("pose")
    pose_runs: int = 0  # times the pose stage was started for this job
    outage_retries: int = 0  # releases because a dependency was down
    outage_since: datetime | None = None  # when a dependency outage first sent it back to the queue


@dataclass(frozen=True)
class ApiKey:
    """A client of the gateway. Its secret is known only to the client."""

    id: str
    name: str
    jobs_per_day: int
    requests_per_min: int
    created_at: datetime
    revoked: bool


@dataclass(frozen=True)
class Admission:
    """The limits a new job is admitted against, decided atomically with its creation."""

    jobs_per_day: int | None  # the owner's rolling 24 h quota; None: unlimited
    max_queued: int | None  # jobs waiting for a worker across every replica; None: unlimited


class Store(Protocol):
    """The job store. Every method is safe to call from several threads and several processes at once."""

    @property
    def dialect(self) -> str: ...

    def close(self) -> None: ...

    # API keys
    def create_key(
        self, name: str, *, jobs_per_day: int, requests_per_min: int, secret: str | None = None
    ) -> tuple[ApiKey, str]: ...

    def authenticate(self, secret: str) -> ApiKey: ...

    def revoke_key(self, key_id: str) -> None: ...

    def list_keys(self) -> list[ApiKey]: ...

    # jobs: admission and reading
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
    ) -> tuple[Job, bool]: ...

    def find_idempotent(self, owner: str, key: str) -> Job | None: ...

    def get(self, job_id: str, *, owner: str | None = None) -> Job: ...

    def list_jobs(
        self, owner: str, *, limit: int = 20, cursor: str | None = None, state: JobState | None = None
    ) -> tuple[list[Job], str | None]: ...

    def count_since(self, owner: str, since: datetime) -> int: ...

    def check_quota(self, owner: str, jobs_per_day: int) -> None: ...

    def counts(self) -> dict[JobState, int]: ...

    def wait_estimate_s(self, ahead: int) -> float: ...

    def delete(self, job_id: str, *, owner: str) -> Job: ...

    # jobs: running them
    def claim(self, worker: str, *, lease_s: float, max_attempts: int) -> Job | None: ...

    def renew(self, job_id: str, worker: str, *, lease_s: float) -> bool: ...

    def set_progress(
        self, job_id: str, worker: str, stage: str, progress: float, *, lease_s: float
    ) -> bool: ...

    def set_checkpoint(self, job_id: str, worker: str, checkpoint: str) -> bool: ...

    def mark_done(self, job_id: str, worker: str, summary: Mapping[str, Any]) -> Job: ...

    def mark_failed(self, job_id: str, code: str, message: str, *, worker: str | None = None) -> Job: ...

    def release(
        self, job_id: str, worker: str, *, delay_s: float = 0.0, attempt_used: bool, outage: bool = False
    ) -> Job: ...

    def fail_abandoned(self, *, max_attempts: int) -> list[Job]: ...

    def fail_outaged(self, *, max_outage_s: float, message: str) -> list[Job]: ...

    # replicas
    def heartbeat_worker(self, worker: str, *, host: str, slots: int, draining: bool = False) -> None: ...

    def remove_worker(self, worker: str) -> None: ...

    def live_slots(self, *, ttl_s: float) -> int: ...

    # live sessions and rate limits
    def open_session(
        self, session: str, owner: str, worker: str, *, per_key: int, per_worker: int, lease_s: float
    ) -> None: ...

    def renew_session(self, session: str, *, lease_s: float) -> None: ...

    def close_session(self, session: str) -> None: ...

    def take(self, key: str, *, per_min: float, burst: float) -> float: ...

    # shared secrets
    def secret(self, name: str) -> bytes: ...

    def peek(self, key: str, *, per_min: float, burst: float) -> float: ...
