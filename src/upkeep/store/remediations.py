"""Remediation triggers: the alert firings that asked for a runbook (``on_alert:``).

A trigger is written by the alert manager in the transaction that fires the alert, so a
crash between the firing and the run's start loses neither: the row waits ``pending``
until a leader decides. Each (runbook, alert) has one row (a unique key), and it leaves
``pending`` once: either the run's insert claims it (``RunLog.start_run`` flips it to
``started`` in the run's own transaction, or inserts no run), or the leader records it
``suppressed`` with the reason. Two daemons on one store, or one that restarts, can
therefore never start the same firing's runbook twice. Every decision and the run's end
are written to the alert's timeline (kind ``remediation``), in the same transaction as
the change of state that caused them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, insert, select, update

from upkeep.store.schema import alert_events, remediations, runs

if TYPE_CHECKING:
    import threading

    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

TIMELINE_KIND = "remediation"
"""The kind of the alert timeline events remediation writes."""
AUTHOR = "upkeep"
"""Who the timeline names as the author of a remediation event."""
_ACTIVE_RUNS = ("running", "waiting")
"""Run statuses that mean "not finished" (``RunStatus``'s, kept here to stay below it)."""


class TriggerStatus(StrEnum):
    """Where a trigger stands (``remediations.status``)."""

    PENDING = "pending"
    """Waiting for a leader's decision."""
    STARTED = "started"
    """Its run was inserted; the run's end is not on the timeline yet."""
    SUPPRESSED = "suppressed"
    """Not started: the reason says why (rate limit, cooldown, already running, ...)."""
    DONE = "done"
    """Its run ended and the outcome is on the alert's timeline."""


@dataclass(frozen=True)
class Trigger:
    """One firing that asked for a runbook."""

    id: int
    runbook: str
    alert_id: int
    check: str
    fired_at: datetime
    source_run: int | None
    status: TriggerStatus
    reason: str
    run_id: int | None

    @property
    def triggered_by(self) -> str:
        """Return what the run records as its starter: ``alert:<id> <check>``."""
        return f"alert:{self.alert_id} {self.check}"


@dataclass(frozen=True)
class AlertRun:
    """A run an alert started, as the guard rails look at it."""

    id: int
    started_at: datetime
    finished_at: datetime | None


def queue_triggers(
    connection: Connection,
    *,
    alert_id: int,
    check: str,
    fired_at: datetime,
    source_run: int | None,
    asks: Sequence[tuple[str, str | None]],
    now: datetime,
) -> int:
    """Given an open transaction (the alerting one that fires the alert) and the runbooks
    the firing asks for, each with the reason it is suppressed at once (None: pending),
    record a trigger per runbook the alert has none for yet; a suppressed one goes on the
    alert's timeline too. Return how many were recorded.
    """
    existing = {
        row.runbook
        for row in connection.execute(
            select(remediations.c.runbook).where(remediations.c.alert_id == alert_id)
        )
    }
    added = 0
    for runbook, reason in asks:
        if runbook in existing:
            continue
        connection.execute(
            insert(remediations).values(
                runbook=runbook,
                alert_id=alert_id,
                check=check,
                fired_at=fired_at,
                source_run=source_run,
                status=TriggerStatus.PENDING if reason is None else TriggerStatus.SUPPRESSED,
                reason=reason or "",
                decided_at=None if reason is None else now,
            )
        )
        if reason is not None:
            _timeline(connection, alert_id, now, f"runbook {runbook} not started: {reason}")
        added += 1
    return added


def claim_for_run(
    connection: Connection,
    *,
    runbook: str,
    alert_id: int,
    run_id: int,
    dry_run: bool,
    now: datetime,
) -> bool:
    """Given the open transaction that inserts a run an alert started, claim the alert's
    pending trigger for it and put the start on the alert's timeline; return False (the
    caller rolls back) if the trigger is not pending: decided by someone else already.
    """
    claimed = connection.execute(
        update(remediations)
        .where(
            remediations.c.runbook == runbook,
            remediations.c.alert_id == alert_id,
            remediations.c.status == TriggerStatus.PENDING,
        )
        .values(status=TriggerStatus.STARTED, run_id=run_id, decided_at=now)
    ).rowcount
    if not claimed:
        return False
    detail = f"runbook {runbook} started: run {run_id}"
    if dry_run:
        detail += " (a dry run: dry_run_only)"
    _timeline(connection, alert_id, now, detail)
    return True


def _timeline(connection: Connection, alert_id: int, at: datetime, detail: str) -> None:
    connection.execute(
        insert(alert_events).values(
            alert_id=alert_id, at=at, kind=TIMELINE_KIND, detail=detail, author=AUTHOR
        )
    )


class RemediationLog:
    """Reads and decides remediation triggers; safe to share between threads."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self.engine = engine
        self._lock = lock

    def pending(self, limit: int = 100) -> list[Trigger]:
        """Return up to ``limit`` triggers waiting for a decision, oldest firing first."""
        query = (
            select(remediations)
            .where(remediations.c.status == TriggerStatus.PENDING)
            .order_by(remediations.c.fired_at, remediations.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_trigger(row) for row in connection.execute(query)]

    def for_alert(self, alert_id: int) -> list[Trigger]:
        """Given an alert id, return the triggers its firing recorded, by runbook."""
        query = (
            select(remediations)
            .where(remediations.c.alert_id == alert_id)
            .order_by(remediations.c.runbook)
        )
        with self.engine.connect() as connection:
            return [_trigger(row) for row in connection.execute(query)]

    def suppress(self, trigger: Trigger, reason: str, now: datetime) -> bool:
        """Given a pending trigger and why it is not started, record that (and put it on
        the alert's timeline); return False, writing nothing, if it was decided already.
        """
        with self._lock, self.engine.begin() as connection:
            decided = connection.execute(
                update(remediations)
                .where(
                    remediations.c.id == trigger.id,
                    remediations.c.status == TriggerStatus.PENDING,
                )
                .values(status=TriggerStatus.SUPPRESSED, reason=reason, decided_at=now)
            ).rowcount
            if decided:
                _timeline(
                    connection,
                    trigger.alert_id,
                    now,
                    f"runbook {trigger.runbook} not started: {reason}",
                )
        return bool(decided)

    def ended(self) -> list[tuple[Trigger, str, str]]:
        """Return the started triggers whose run has ended but whose outcome is not on the
        timeline yet, each with the run's status and message."""
        query = (
            select(remediations, runs.c.status.label("run_status"), runs.c.message)
            .join(runs, runs.c.id == remediations.c.run_id)
            .where(
                remediations.c.status == TriggerStatus.STARTED,
                runs.c.status.not_in(_ACTIVE_RUNS),
            )
            .order_by(remediations.c.id)
        )
        with self.engine.connect() as connection:
            return [
                (_trigger(row), row.run_status, row.message) for row in connection.execute(query)
            ]

    def note_outcome(
        self, trigger: Trigger, run_id: int, status: str, message: str, now: datetime
    ) -> bool:
        """Given a started trigger and how its run ended, put the outcome on the alert's
        timeline once; return False if it is there already."""
        with self._lock, self.engine.begin() as connection:
            noted = connection.execute(
                update(remediations)
                .where(
                    remediations.c.id == trigger.id,
                    remediations.c.status == TriggerStatus.STARTED,
                )
                .values(status=TriggerStatus.DONE)
            ).rowcount
            if noted:
                detail = f"run {run_id} of runbook {trigger.runbook} {status}"
                if message:
                    detail += f": {message}"
                _timeline(connection, trigger.alert_id, now, detail)
        return bool(noted)

    def alert_runs_since(self, runbook: str, since: datetime) -> list[AlertRun]:
        """Given a runbook and a moment, return its alert-started runs that began since then."""
        query = (
            select(runs.c.id, runs.c.started_at, runs.c.finished_at)
            .where(
                runs.c.runbook == runbook,
                runs.c.alert_id.is_not(None),
                runs.c.started_at >= since,
            )
            .order_by(runs.c.started_at)
        )
        with self.engine.connect() as connection:
            return [
                AlertRun(row.id, row.started_at, row.finished_at)
                for row in connection.execute(query)
            ]

    def last_alert_run_end(self, runbook: str) -> AlertRun | None:
        """Given a runbook, return its alert-started run that ended last, or None."""
        latest = (
            select(func.max(runs.c.finished_at))
            .where(runs.c.runbook == runbook, runs.c.alert_id.is_not(None))
            .scalar_subquery()
        )
        query = (
            select(runs.c.id, runs.c.started_at, runs.c.finished_at)
            .where(
                and_(
                    runs.c.runbook == runbook,
                    runs.c.alert_id.is_not(None),
                    runs.c.finished_at == latest,
                )
            )
            .limit(1)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return AlertRun(row.id, row.started_at, row.finished_at) if row is not None else None

    def active_run(self, runbook: str) -> int | None:
        """Given a runbook, return the id of one of its unfinished runs (any trigger), or None."""
        with self.engine.connect() as connection:
            value = connection.execute(
                select(runs.c.id)
                .where(runs.c.runbook == runbook, runs.c.status.in_(_ACTIVE_RUNS))
                .order_by(runs.c.id.desc())
                .limit(1)
            ).scalar()
        return int(value) if value is not None else None

    def runbook_of(self, run_id: int) -> str | None:
        """Given a run id, return its runbook's name, or None if there is no such run."""
        with self.engine.connect() as connection:
            value = connection.execute(select(runs.c.runbook).where(runs.c.id == run_id)).scalar()
        return str(value) if value is not None else None


def _trigger(row: Any) -> Trigger:
    mapping = row._mapping
    return Trigger(
        id=int(mapping["id"]),
        runbook=mapping["runbook"],
        alert_id=int(mapping["alert_id"]),
        check=mapping["check"],
        fired_at=mapping["fired_at"],
        source_run=mapping["source_run"],
        status=TriggerStatus(mapping["status"]),
        reason=mapping["reason"] or "",
        run_id=mapping["run_id"],
    )
