"""Reports: the results' two indexes carry the columns a report aggregates (check,
status, run time), so a month of figures is read from the indexes alone instead of one
table page per result.

Revision ID: 0008_reports
Revises: 0007_status
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0008_reports"
down_revision = "0007_status"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_check_results_check_id_at_duration",
        "check_results",
        ["check_id", "at", "duration_ms"],
    )
    op.create_index(
        "ix_check_results_at_check_status_duration",
        "check_results",
        ["at", "check_id", "status", "duration_ms"],
    )
    # The new indexes begin with the old ones' columns: every query that used those uses
    # these.
    op.drop_index("ix_check_results_check_id_at", table_name="check_results")
    op.drop_index("ix_check_results_at", table_name="check_results")


def downgrade() -> None:
    op.create_index("ix_check_results_at", "check_results", ["at"])
    op.create_index("ix_check_results_check_id_at", "check_results", ["check_id", "at"])
    op.drop_index("ix_check_results_at_check_status_duration", table_name="check_results")
    op.drop_index("ix_check_results_check_id_at_duration", table_name="check_results")
