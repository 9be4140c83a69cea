"""Remediation: runs record the alert that started them, and ``remediations`` keeps each
firing that asked for a runbook (pending, started or suppressed, with the reason).

Revision ID: 0009_remedy
Revises: 0008_reports
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from upkeep.store.schema import BigId, UTCDateTime

revision = "0009_remedy"
down_revision = "0008_reports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("alert_id", sa.BigInteger(), nullable=True))
    # NULLs are distinct in a unique index on SQLite and PostgreSQL alike: runs without an
    # alert never collide.
    op.create_index("ux_runs_runbook_alert_id", "runs", ["runbook", "alert_id"], unique=True)
    op.create_table(
        "remediations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("runbook", sa.String(200), nullable=False),
        sa.Column(
            "alert_id",
            sa.BigInteger(),
            sa.ForeignKey("alerts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("check", sa.String(200), nullable=False),
        sa.Column("fired_at", UTCDateTime, nullable=False),
        sa.Column("source_run", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("runbook", "alert_id"),
    )
    op.create_index("ix_remediations_status", "remediations", ["status"])


def downgrade() -> None:
    op.drop_index("ix_remediations_status", table_name="remediations")
    op.drop_table("remediations")
    op.drop_index("ux_runs_runbook_alert_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("alert_id")
