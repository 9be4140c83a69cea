"""Heartbeats: the pings cron jobs send, and when each heartbeat was first seen.

Revision ID: 0006_heartbeat
Revises: 0005_accounts
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from upkeep.store.schema import BigId, UTCDateTime

revision = "0006_heartbeat"
down_revision = "0005_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pings",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("heartbeat", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("exit_code", sa.SmallInteger, nullable=True),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pings"),
    )
    op.create_index(
        "ix_pings_heartbeat_kind_received_at", "pings", ["heartbeat", "kind", "received_at"]
    )
    op.create_index("ix_pings_received_at", "pings", ["received_at"])
    op.create_table(
        "heartbeats",
        sa.Column("heartbeat", sa.String(64), nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("heartbeat", name="pk_heartbeats"),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
    op.drop_index("ix_pings_received_at", table_name="pings")
    op.drop_index("ix_pings_heartbeat_kind_received_at", table_name="pings")
    op.drop_table("pings")
