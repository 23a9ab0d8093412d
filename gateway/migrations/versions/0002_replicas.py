"""Jobs any replica can run: leases, retry times, stage checkpoints and counters on jobs; the replicas'
workers, live sessions and shared rate limits."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.tables import UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("lease_owner", sa.String(64)))
        jobs.add_column(sa.Column("lease_until", UTCDateTime()))
        jobs.add_column(sa.Column("not_before", UTCDateTime()))
        jobs.add_column(sa.Column("checkpoint", sa.String(32)))
        jobs.add_column(sa.Column("pose_runs", sa.Integer, nullable=False, server_default="0"))
        jobs.add_column(sa.Column("outage_retries", sa.Integer, nullable=False, server_default="0"))
        jobs.add_column(sa.Column("outage_since", UTCDateTime()))
    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("draining", sa.Boolean, nullable=False),
    )
    op.create_table(
        "live_sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_live_sessions_owner", "live_sessions", ["owner"])
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),
    )
