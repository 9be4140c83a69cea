"""Status page: the updates an operator publishes about an incident.

Revision ID: 0007_status
Revises: 0006_heartbeat
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from upkeep.store.schema import BigId, UTCDateTime

revision = "0007_status"
down_revision = "0006_heartbeat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incident_updates",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incident_updates"),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name="fk_incident_updates_alert_id_alerts",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_incident_updates_alert_id_at", "incident_updates", ["alert_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_incident_updates_alert_id_at", table_name="incident_updates")
    op.drop_table("incident_updates")
