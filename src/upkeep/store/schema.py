"""Tables of the store. Alembic migrations in ``migrations/versions`` create and evolve them.

Designed for months of results from thousands of checks:

* ``checks`` is a small dimension table, so each result row carries a 4-byte id instead
  of repeating names and labels;
* ``check_results`` is append-only, indexed by (check_id, at) for history and by (at)
  for retention pruning;
* ``result_rollups`` keeps hourly/daily aggregates (counts per status, duration and
  per-metric min/avg/max) that outlive the raw rows when retention prunes them;
* ``runs`` and ``run_steps`` are the audit trail of runbook runs. A scheduled firing is
  claimed by inserting its run: (runbook, scheduled_for) is unique, so two daemons on one
  store can never both run the same firing;
* ``maintenance_windows`` holds one-off windows added from the CLI or API; one named like a
  config window is an extra opening of that window;
* ``schedule_marks`` remembers up to when each schedule was evaluated, so firings missed
  while no daemon ran are found on restart;
* ``instances`` lists running upkeep processes and their heartbeats, so runs whose owner
  died are marked ``interrupted`` instead of staying ``running`` forever;
* ``check_states`` keeps each check's recent statuses (flapping, soft/hard counts);
  ``alerts`` is one row per alert (a fired one is an incident) with its timeline in
  ``alert_events``; ``silences`` are muting rules added at run time; ``outbox`` is every
  notification, persisted before it is sent and keyed so it is never sent twice;
* ``users`` are the people who sign in to the web face (a role and an Argon2id hash);
  ``sessions`` are their signed-in browsers, keyed by the SHA-256 of the cookie's secret
  (the secret itself is never stored); ``api_tokens`` are tokens made with ``upkeep token
  add`` or the API, kept as the SHA-256 of the token with the scopes it carries.
* ``pings`` are the signals cron jobs send to their heartbeats (start, success, fail,
  log), keyed by the SHA-256 of the heartbeat's id (the id is the ping URL's credential
  and is never stored); ``heartbeats`` remembers when each was first seen, so a heartbeat
  that never pinged is judged from then.
* ``remediations`` are the alert firings that asked for a runbook (``on_alert:``): written
  with the firing, in its transaction, then started (claimed by the run's insert) or
  suppressed with the reason, once per (runbook, alert);
* ``incident_updates`` are what an operator published about an incident for the public
  status page (nothing else of an incident reaches it).
"""

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
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes in, timezone-aware UTC datetimes out, on every backend.

    Raise ValueError on a naive datetime: a time without a zone is a bug waiting to happen.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware datetimes")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


checks = Table(
    "checks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("target", String(200), nullable=False),
    Column("probe", String(100), nullable=False),
    Column("labels", JSON, nullable=False, default=dict),
    Column("first_seen", UTCDateTime, nullable=False),
)

check_results = Table(
    "check_results",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("check_id", Integer, ForeignKey("checks.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("run_id", BigInteger, nullable=True),
    # Both indexes carry the columns reports aggregate, so a period's figures are read
    # from the indexes alone (migration 0008_reports): by time for every check at once,
    # by check for one check's run times.
    Index("ix_check_results_check_id_at_duration", "check_id", "at", "duration_ms"),
    Index("ix_check_results_at_check_status_duration", "at", "check_id", "status", "duration_ms"),
)

result_rollups = Table(
    "result_rollups",
    metadata,
    Column("check_id", Integer, ForeignKey("checks.id", ondelete="CASCADE"), primary_key=True),
    Column("resolution", String(4), primary_key=True),
    Column("bucket_start", UTCDateTime, primary_key=True),
    Column("results", Integer, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("warning", Integer, nullable=False),
    Column("critical", Integer, nullable=False),
    Column("unknown", Integer, nullable=False),
    Column("duration_ms_avg", Float, nullable=False),
    Column("duration_ms_max", Float, nullable=False),
    Column("metrics", JSON, nullable=False, default=dict),
    Index("ix_result_rollups_bucket_start", "bucket_start"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("runbook", String(200), nullable=False),
    Column("trigger", String(20), nullable=False),
    Column("triggered_by", String(200), nullable=True),
    Column("status", String(24), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("scheduled_for", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("owner", String(200), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("detail", JSON, nullable=False, default=dict),
    # The alert that started a remediation run (``on_alert:``); one run per runbook and alert.
    Column("alert_id", BigInteger, nullable=True),
    UniqueConstraint("runbook", "scheduled_for"),
    Index("ix_runs_started_at", "started_at"),
    Index("ix_runs_status", "status"),
    Index("ux_runs_runbook_alert_id", "runbook", "alert_id", unique=True),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", BigInteger, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("status", String(24), nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("output", Text, nullable=False, default=""),
    Column("detail", JSON, nullable=False, default=dict),
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("decision", String(20), nullable=True),
    UniqueConstraint("run_id", "position"),
)

maintenance_windows = Table(
    "maintenance_windows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("mute", JSON, nullable=True),
    Column("comment", Text, nullable=False, default=""),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime, nullable=True),
    Column("removed_by", String(200), nullable=True),
    Index("ix_maintenance_windows_ends_at", "ends_at"),
)

schedule_marks = Table(
    "schedule_marks",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("evaluated_until", UTCDateTime, nullable=False),
)

instances = Table(
    "instances",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("role", String(20), nullable=False),
)

# --- alerting (issue #4) -------------------------------------------------------------

check_states = Table(
    "check_states",
    metadata,
    Column("check", String(200), primary_key=True),
    # The last FLAP_HISTORY statuses, oldest first, one letter each (o, w, c, u).
    Column("history", String(64), nullable=False, default=""),
    Column("flapping", Boolean, nullable=False, default=False),
    Column("consecutive_bad", Integer, nullable=False, default=0),
    Column("consecutive_ok", Integer, nullable=False, default=0),
    Column("bad_since", UTCDateTime, nullable=True),
    Column("last_status", SmallInteger, nullable=False, default=0),
    Column("last_at", UTCDateTime, nullable=True),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("check", String(200), nullable=False),
    Column("target", String(200), nullable=False),
    Column("severity", String(2), nullable=False),
    Column("labels", JSON, nullable=False, default=dict),
    Column("state", String(12), nullable=False),  # pending | firing | resolved
    Column("status", SmallInteger, nullable=False),
    Column("message", Text, nullable=False, default=""),
    # The check's name while the alert is open, NULL once resolved: a unique column that
    # allows any number of NULLs, so each check has at most one open alert on every backend.
    Column("active", String(200), nullable=True, unique=True),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("fired_at", UTCDateTime, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("last_result_at", UTCDateTime, nullable=False),
    Column("flapping", Boolean, nullable=False, default=False),
    Column("suppressed_by", String(200), nullable=True),
    Column("held", String(20), nullable=True),  # why the firing notice waits: muted | dependency
    Column("acked_by", String(200), nullable=True),
    Column("acked_at", UTCDateTime, nullable=True),
    Column("ack_expires_at", UTCDateTime, nullable=True),
    Column("ack_comment", Text, nullable=True),
    Column("first_acked_at", UTCDateTime, nullable=True),
    # Escalation and repeat bookkeeping per matched route: {"0": {"last": iso, "steps": 1}}.
    Column("routing", JSON, nullable=False, default=dict),
    Column("escalation_base", UTCDateTime, nullable=True),
    Column("response_missed", Boolean, nullable=False, default=False),
    Index("ix_alerts_check_opened_at", "check", "opened_at"),
    Index("ix_alerts_fired_at", "fired_at"),
    Index("ix_alerts_state", "state"),
    # Never reuse the id of a pruned alert: notification keys are built from it, and a
    # reused one would collide with the old alert's keys and its notices be dropped.
    sqlite_autoincrement=True,
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("author", String(200), nullable=True),
    Index("ix_alert_events_alert_id_at", "alert_id", "at"),
)

remediations = Table(
    "remediations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("runbook", String(200), nullable=False),
    Column("alert_id", BigInteger, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("check", String(200), nullable=False),
    Column("fired_at", UTCDateTime, nullable=False),
    # The run whose result fired the alert, if a runbook's step recorded it (loop guard).
    Column("source_run", BigInteger, nullable=True),
    Column("status", String(20), nullable=False),  # pending | started | suppressed | done
    Column("reason", Text, nullable=False, default=""),
    Column("run_id", BigInteger, nullable=True),
    Column("decided_at", UTCDateTime, nullable=True),
    UniqueConstraint("runbook", "alert_id"),
    Index("ix_remediations_status", "status"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("matchers", JSON, nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("author", String(200), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime, nullable=True),
    Column("removed_by", String(200), nullable=True),
    Index("ix_silences_ends_at", "ends_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # The idempotency key: the same notification is enqueued once, and every delivery
    # attempt of it carries this key, so a receiver can drop a repeat after a crash.
    Column("key", String(128), nullable=False, unique=True),
    Column("channel", String(200), nullable=False),
    Column("alert_id", BigInteger, nullable=True),
    Column("kind", String(20), nullable=False),
    Column("group_key", String(400), nullable=False),
    Column("severity", String(2), nullable=True),
    Column("level", String(10), nullable=False, default="info"),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    # pending | sending | sent | dead | muted
    Column("status", String(12), nullable=False),
    Column("muted_by", String(250), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    # Rows sent together as one grouped message share a batch; a batch re-sent after a
    # crash is the same message with the same key.
    Column("batch", String(128), nullable=True),
    Column("claimed_by", String(200), nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
    Column("fallback", String(200), nullable=True),
    Column("fallback_after", Integer, nullable=True),
    Column("fallback_sent", Boolean, nullable=False, default=False),
    Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_outbox_alert_id", "alert_id"),
)

backups = Table(
    "backups",
    metadata,
    # The repository's id for a complete backup; failed attempts get an id of their own.
    Column("id", String(64), primary_key=True),
    Column("source", String(200), nullable=False),
    # ok | failed | removed
    Column("status", String(12), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("raw_bytes", BigInteger, nullable=True),
    Column("stored_bytes", BigInteger, nullable=True),
    Column("location", Text, nullable=False, default=""),
    Column("copies", JSON, nullable=False, default=list),
    Column("verified_at", UTCDateTime, nullable=True),
    Column("verified_ok", Boolean, nullable=True),
    Column("message", Text, nullable=False, default=""),
    Column("detail", JSON, nullable=False, default=dict),
    Index("ix_backups_source_started_at", "source", "started_at"),
)

backup_events = Table(
    "backup_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # verify | restore | drill | prune
    Column("kind", String(12), nullable=False),
    Column("source", String(200), nullable=False),
    Column("backup_id", String(64), nullable=True),
    # ok | failed | written (a drill that restored but missed an objective is failed too;
    # a restore that wrote the backup out for loading by hand, the source unchanged, is written)
    Column("status", String(12), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("detail", JSON, nullable=False, default=dict),
    Index("ix_backup_events_source_kind", "source", "kind"),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("role", String(12), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("password_changed_at", UTCDateTime, nullable=False),
    UniqueConstraint("name"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_sessions_user_id", "user_id"),
    Index("ix_sessions_expires_at", "expires_at"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("scopes", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    UniqueConstraint("name"),
    UniqueConstraint("digest"),
)

# --- heartbeats (issue #14) ------------------------------------------------------------

pings = Table(
    "pings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # The SHA-256 (hex) of the heartbeat's id, never the id itself: it is a credential.
    Column("heartbeat", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # start | success | fail | log
    Column("exit_code", SmallInteger, nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("source", String(64), nullable=False, default=""),
    Column("body", Text, nullable=False, default=""),
    # The newest ping of each kind per heartbeat is what the probe reads.
    Index("ix_pings_heartbeat_kind_received_at", "heartbeat", "kind", "received_at"),
    Index("ix_pings_received_at", "received_at"),
)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("heartbeat", String(64), primary_key=True),
    Column("first_seen", UTCDateTime, nullable=False),
)

# --- the public status page (issue #14) -----------------------------------------------

incident_updates = Table(
    "incident_updates",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("author", String(200), nullable=False),
    # Published by an operator for the public status page, redacted before it is stored;
    # the only text of an incident the public ever sees.
    Column("text", Text, nullable=False),
    Index("ix_incident_updates_alert_id_at", "alert_id", "at"),
)
