"""Initial schema: checks, check_results, result_rollups.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from upkeep.store.schema import BigId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("probe", sa.String(100), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checks"),
        sa.UniqueConstraint("name", name="uq_checks_name"),
    )
    op.create_table(
        "check_results",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("check_id", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("run_id", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_check_results"),
        sa.ForeignKeyConstraint(
            ["check_id"], ["checks.id"], name="fk_check_results_check_id_checks", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_check_results_check_id_at", "check_results", ["check_id", "at"])
    op.create_index("ix_check_results_at", "check_results", ["at"])
    op.create_table(
        "result_rollups",
        sa.Column("check_id", sa.Integer, nullable=False),
        sa.Column("resolution", sa.String(4), nullable=False),
        sa.Column("bucket_start", UTCDateTime, nullable=False),
        sa.Column("results", sa.Integer, nullable=False),
        sa.Column("ok", sa.Integer, nullable=False),
        sa.Column("warning", sa.Integer, nullable=False),
        sa.Column("critical", sa.Integer, nullable=False),
        sa.Column("unknown", sa.Integer, nullable=False),
        sa.Column("duration_ms_avg", sa.Float, nullable=False),
        sa.Column("duration_ms_max", sa.Float, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("check_id", "resolution", "bucket_start", name="pk_result_rollups"),
        sa.ForeignKeyConstraint(
            ["check_id"],
            ["checks.id"],
            name="fk_result_rollups_check_id_checks",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_result_rollups_bucket_start", "result_rollups", ["bucket_start"])


def downgrade() -> None:
    op.drop_table("result_rollups")
    op.drop_table("check_results")
    op.drop_table("checks")
