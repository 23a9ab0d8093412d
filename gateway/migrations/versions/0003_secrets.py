"""Secrets every replica shares and none is configured with (the key that signs viewer links)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.tables import UTCDateTime

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("secrets")
