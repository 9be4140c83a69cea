"""Backups: the catalog of backups and the record of verifications, restores and drills.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from upkeep.store.schema import BigId, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("raw_bytes", sa.BigInteger, nullable=True),
        sa.Column("stored_bytes", sa.BigInteger, nullable=True),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("copies", sa.JSON, nullable=False),
        sa.Column("verified_at", UTCDateTime, nullable=True),
        sa.Column("verified_ok", sa.Boolean, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_backups"),
    )
    op.create_index("ix_backups_source_started_at", "backups", ["source", "started_at"])
    op.create_table(
        "backup_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("backup_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_backup_events"),
    )
    op.create_index("ix_backup_events_source_kind", "backup_events", ["source", "kind"])


def downgrade() -> None:
    op.drop_index("ix_backup_events_source_kind", table_name="backup_events")
    op.drop_table("backup_events")
    op.drop_index("ix_backups_source_started_at", table_name="backups")
    op.drop_table("backups")
