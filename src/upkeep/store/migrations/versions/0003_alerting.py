"""Alerting: check states, alerts and their events, silences, and the notification outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from upkeep.store.schema import BigId, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "check_states",
        sa.Column("check", sa.String(200), nullable=False),
        sa.Column("history", sa.String(64), nullable=False),
        sa.Column("flapping", sa.Boolean, nullable=False),
        sa.Column("consecutive_bad", sa.Integer, nullable=False),
        sa.Column("consecutive_ok", sa.Integer, nullable=False),
        sa.Column("bad_since", UTCDateTime, nullable=True),
        sa.Column("last_status", sa.SmallInteger, nullable=False),
        sa.Column("last_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("check", name="pk_check_states"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("check", sa.String(200), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(2), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("active", sa.String(200), nullable=True),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("fired_at", UTCDateTime, nullable=True),
        sa.Column("resolved_at", UTCDateTime, nullable=True),
        sa.Column("last_result_at", UTCDateTime, nullable=False),
        sa.Column("flapping", sa.Boolean, nullable=False),
        sa.Column("suppressed_by", sa.String(200), nullable=True),
        sa.Column("held", sa.String(20), nullable=True),
        sa.Column("acked_by", sa.String(200), nullable=True),
        sa.Column("acked_at", UTCDateTime, nullable=True),
        sa.Column("ack_expires_at", UTCDateTime, nullable=True),
        sa.Column("ack_comment", sa.Text, nullable=True),
        sa.Column("first_acked_at", UTCDateTime, nullable=True),
        sa.Column("routing", sa.JSON, nullable=False),
        sa.Column("escalation_base", UTCDateTime, nullable=True),
        sa.Column("response_missed", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("active", name="uq_alerts_active"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alerts_check_opened_at", "alerts", ["check", "opened_at"])
    op.create_index("ix_alerts_fired_at", "alerts", ["fired_at"])
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_table(
        "alert_events",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("alert_id", sa.BigInteger, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("author", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name="fk_alert_events_alert_id_alerts",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_alert_events_alert_id_at", "alert_events", ["alert_id", "at"])
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("matchers", sa.JSON, nullable=False),
        sa.Column("starts_at", UTCDateTime, nullable=False),
        sa.Column("ends_at", UTCDateTime, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("removed_at", UTCDateTime, nullable=True),
        sa.Column("removed_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_silences"),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"])
    op.create_table(
        "outbox",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("alert_id", sa.BigInteger, nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("group_key", sa.String(400), nullable=False),
        sa.Column("severity", sa.String(2), nullable=True),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("muted_by", sa.String(250), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("batch", sa.String(128), nullable=True),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("claimed_until", UTCDateTime, nullable=True),
        sa.Column("fallback", sa.String(200), nullable=True),
        sa.Column("fallback_after", sa.Integer, nullable=True),
        sa.Column("fallback_sent", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_alert_id", "outbox", ["alert_id"])


def downgrade() -> None:
    for table in ("outbox", "silences", "alert_events", "alerts", "check_states"):
        op.drop_table(table)
