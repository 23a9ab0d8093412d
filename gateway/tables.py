"""The store's tables (SQLAlchemy Core), as the newest migration in ``gateway/migrations`` leaves them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from gateway.records import MAX_IDEMPOTENCY_KEY


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


def json_type() -> Any:
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
    Column("spec", json_type(), nullable=False),
    Column("idempotency_key", String(MAX_IDEMPOTENCY_KEY)),
    Column("upload_sha256", String(64), nullable=False),
    Column("upload_bytes", BigInteger, nullable=False),
    Column("filename", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("attempts", Integer, nullable=False),
    Column("summary", json_type()),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime()),
    Column("not_before", UTCDateTime()),
    Column("checkpoint", String(32)),
    Column("pose_runs", Integer, nullable=False, server_default="0"),
    Column("outage_retries", Integer, nullable=False, server_default="0"),
    Column("outage_since", UTCDateTime()),
    UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    Index("ix_jobs_owner_created", "owner", "created_at", "id"),
    Index("ix_jobs_state", "state"),
)

workers_table = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("slots", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("draining", Boolean, nullable=False),
)

live_sessions_table = Table(
    "live_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(32), nullable=False),
    Column("worker", String(64), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("lease_until", UTCDateTime(), nullable=False),
    Index("ix_live_sessions_owner", "owner"),
)

rate_limits_table = Table(
    "rate_limits",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("tat", Float, nullable=False),  # GCRA theoretical arrival time, epoch seconds
)

secrets_table = Table(
    "secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),  # url-safe base64 of random bytes
    Column("created_at", UTCDateTime(), nullable=False),
)
