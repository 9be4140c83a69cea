"""The alerting tables of a store: check states, alerts, their events, and silences.

``AlertStore`` hands out one transaction (``transaction()``) in which the alert manager
reads states, changes alerts, appends events and enqueues notifications together, so a
crash either keeps all of a result's consequences or none of them.

An alert's ``routing`` column holds what each route has done about it (``Routing``): per
route, keyed by the route's stable id (its ``name:``, else a digest of its match and
channels), so reordering ``routes:`` moves no counter to another route. State written
before route ids was keyed by the route's position; it is read as ``Routing.legacy`` and
adopted once under the ids of the routes at those positions in the config at hand.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer
from sqlalchemy import Engine, and_, bindparam, delete, insert, or_, select, update

from upkeep.core.status import Status
from upkeep.store.locks import ALERTING_LOCK_KEY, serialise
from upkeep.store.outbox import FINISHED_STATUSES, WAITING_STATUSES, OutboxStatus, group_due
from upkeep.store.rows import inserted_id
from upkeep.store.schema import (
    alert_events,
    alerts,
    check_states,
    incident_updates,
    outbox,
    remediations,
    silences,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

IN_CHUNK = 500
"""Names per ``IN (...)``: well under every backend's bound-parameter limit."""


class AlertError(Exception):
    """An alert operation cannot be done; the message says why."""


class AlertState(StrEnum):
    """Where an alert is in its life (``alerts.state``)."""

    PENDING = "pending"
    """Open, soft: the check fails but not yet for ``after`` results and ``for``."""
    FIRING = "firing"
    """Open, hard: an incident; its routes are notified."""
    RESOLVED = "resolved"


class Hold(StrEnum):
    """Why a firing alert's notices wait (``alerts.held``)."""

    MUTED = "muted"
    """A silence or a window's mute: notified when the mute ends, if still firing."""
    DEPENDENCY = "dependency"
    """A parent check is critical: notified when it recovers, if this one still fails."""


ROUTING_VERSION = 2
"""The format of ``alerts.routing``: 2 keys routes by id; a mapping without a version
(keyed by route position) is the format before it."""


class RouteState(BaseModel):
    """What one route has done about one alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slot: int = Field(ge=0)
    """The route's number in this alert's notification keys (``a<alert>-r<slot>-n…``):
    its position when it first notified, or a free number if another route of this alert
    holds that one, so keys never repeat when routes move."""
    notices: int = Field(default=0, ge=0)
    """Notices queued (sent or muted): the count in notification keys."""
    sent: int = Field(default=0, ge=0)
    """Notices queued that no mute held back."""
    steps: int = Field(default=0, ge=0)
    """Escalation steps taken since escalation last (re)started."""
    last: datetime | None = None
    """When the route's own channels were last notified: repeats count from here."""

    @field_serializer("last")
    def _iso(self, value: datetime | None) -> str | None:
        # ISO 8601 as every other stored time (``+00:00``, where pydantic writes ``Z``).
        return value.isoformat() if value is not None else None


class Routing(BaseModel):
    """Per-route state of one alert (the ``alerts.routing`` column).

    ``routes`` is keyed by route id. ``legacy`` holds state stored by route position
    before route ids: ``adopt`` moves it under the ids of the routes now at those
    positions (the config at hand is the best knowledge of which route was meant).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: dict[str, RouteState] = {}
    legacy: dict[int, RouteState] = {}

    @classmethod
    def from_column(cls, stored: Mapping[str, Any] | None) -> Routing:
        """Given the stored column (either format, or None), return it as a Routing.
        Raise ValueError (pydantic's ValidationError is one) if it is neither format."""
        if not stored:
            return cls()
        if "version" in stored:
            if stored["version"] != ROUTING_VERSION:
                raise ValueError(
                    f"alert routing state of format {stored['version']!r}; "
                    f"this upkeep reads {ROUTING_VERSION}"
                )
            return cls.model_validate({"routes": stored.get("routes", {})})
        legacy = {
            int(position): RouteState(
                slot=int(position),
                notices=int(value.get("n", 0)),
                sent=int(value.get("sent", 0)),
                steps=int(value.get("steps", 0)),
                last=datetime.fromisoformat(value["last"]) if value.get("last") else None,
            )
            for position, value in stored.items()
        }
        return cls(legacy=legacy)

    def to_column(self) -> dict[str, Any]:
        """Return what the column stores: always the current format (``legacy`` must have
        been adopted, or it is dropped)."""
        return {
            "version": ROUTING_VERSION,
            "routes": {
                route_id: state.model_dump(mode="json") for route_id, state in self.routes.items()
            },
        }

    def adopt(self, route_ids: Sequence[str]) -> Routing:
        """Given the ids of the configured routes in order, return this routing with its
        legacy state moved under the id of the route at each position. State of a position
        no route has now is kept under ``position:<n>`` (no route id has a ``:`` but a
        digest's ``match:``): its slot stays taken, so no later route reuses its keys."""
        if not self.legacy:
            return self
        routes = dict(self.routes)
        for position, state in sorted(self.legacy.items()):
            known = position < len(route_ids)
            routes.setdefault(route_ids[position] if known else f"position:{position}", state)
        return Routing(routes=routes)

    def state(self, route_id: str, position: int) -> RouteState:
        """Given a route's id and its position now, return its state: the stored one, or
        a fresh one whose slot is its position if no other route of this alert holds it,
        else the next free number after it."""
        found = self.routes.get(route_id)
        if found is not None:
            return found
        taken = {state.slot for state in self.routes.values()}
        slot = position
        while slot in taken:
            slot += 1
        return RouteState(slot=slot)

    def with_state(self, route_id: str, state: RouteState) -> Routing:
        """Return this routing with one route's state replaced."""
        return Routing(routes={**self.routes, route_id: state}, legacy=self.legacy)

    def restarted(self) -> Routing:
        """Return this routing with every route's escalation back at its first step (a
        lapsed acknowledgement, the end of a hold)."""
        return Routing(
            routes={
                key: state.model_copy(update={"steps": 0}) for key, state in self.routes.items()
            },
            legacy={
                key: state.model_copy(update={"steps": 0}) for key, state in self.legacy.items()
            },
        )

    @property
    def any_sent(self) -> bool:
        """Return whether any route has queued a notice no mute held back."""
        return any(state.sent > 0 for state in (*self.routes.values(), *self.legacy.values()))


@dataclass(frozen=True)
class AlertRecord:
    """One alert as stored (a fired one is an incident)."""

    id: int
    check: str
    target: str
    severity: str
    labels: dict[str, str]
    state: AlertState
    status: Status
    message: str
    opened_at: datetime
    fired_at: datetime | None
    resolved_at: datetime | None
    last_result_at: datetime
    flapping: bool
    suppressed_by: str | None
    held: Hold | None
    acked_by: str | None
    acked_at: datetime | None
    ack_expires_at: datetime | None
    ack_comment: str | None
    first_acked_at: datetime | None
    routing: Routing
    escalation_base: datetime | None
    response_missed: bool

    def to_json(self) -> dict[str, Any]:
        """Return the alert as JSON-ready data (datetimes as ISO 8601)."""
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, Status):
                value = value.label
            data[name] = value
        data.pop("routing")
        return data


@dataclass(frozen=True)
class AlertEvent:
    """One entry of an alert's timeline."""

    id: int
    alert_id: int
    at: datetime
    kind: str
    detail: str
    author: str | None

    def to_json(self) -> dict[str, Any]:
        """Return the event as JSON-ready data (``at`` as ISO 8601)."""
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "detail": self.detail,
            "author": self.author,
        }


@dataclass(frozen=True)
class Silence:
    """A muting rule added at run time."""

    id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str
    created_at: datetime
    removed_at: datetime | None
    removed_by: str | None

    def active(self, moment: datetime) -> bool:
        """Given an aware moment, return whether the silence mutes then."""
        return self.removed_at is None and self.starts_at <= moment < self.ends_at

    def to_json(self, now: datetime) -> dict[str, Any]:
        """Given the time, return the silence as JSON-ready data, with whether it mutes now."""
        return {
            "id": self.id,
            "matchers": self.matchers,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "author": self.author,
            "comment": self.comment,
            "active": self.active(now),
            "removed_by": self.removed_by,
        }


def alert_from_row(row: Any) -> AlertRecord:
    """Given an `alerts` row, return it as an AlertRecord."""
    values = dict(row._mapping)
    values.pop("active", None)
    values["status"] = Status(values["status"])
    values["state"] = AlertState(values["state"])
    values["held"] = Hold(values["held"]) if values["held"] is not None else None
    values["routing"] = Routing.from_column(values["routing"])
    return AlertRecord(**values)


def _chunks(names: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(names), IN_CHUNK):
        yield names[start : start + IN_CHUNK]


class AlertStore:
    """Reads and writes the alerting tables; safe to share between threads."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self.engine = engine
        self._lock = lock

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Yield a connection in one transaction, committed when the block ends cleanly,
        holding the alerting lock from its start: every read in it sees what no other
        process can change before it commits (the daemon and a cron ``upkeep check`` may
        process results of the same checks at once).
        """
        with self._lock, self.engine.begin() as connection:
            serialise(connection, ALERTING_LOCK_KEY)
            yield connection

    # --- check states --------------------------------------------------------------------

    def states(self, connection: Connection, checks: Collection[str]) -> dict[str, CheckState]:
        """Given check names, return the stored state of those that have one."""
        found: dict[str, CheckState] = {}
        for chunk in _chunks(sorted(set(checks))):
            rows = connection.execute(select(check_states).where(check_states.c.check.in_(chunk)))
            for row in rows:
                values = dict(row._mapping)
                values["last_status"] = Status(values["last_status"])
                found[values["check"]] = CheckState(**values)
        return found

    def save_states(
        self, connection: Connection, changed: Sequence[CheckState], existing: Collection[str]
    ) -> None:
        """Given states that changed and the names already stored, insert or update them
        (one statement each way, executed for many rows)."""
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        for state in changed:
            values = {
                "history": state.history,
                "flapping": state.flapping,
                "consecutive_bad": state.consecutive_bad,
                "consecutive_ok": state.consecutive_ok,
                "bad_since": state.bad_since,
                "last_status": int(state.last_status),
                "last_at": state.last_at,
            }
            if state.check in existing:
                updates.append({"name": state.check, **values})
            else:
                inserts.append({"check": state.check, **values})
        if updates:
            connection.execute(
                update(check_states).where(check_states.c.check == bindparam("name")), updates
            )
        if inserts:
            connection.execute(insert(check_states), inserts)

    # --- alerts --------------------------------------------------------------------------

    def any_open(self) -> bool:
        """Return whether any alert is open (a read without the alerting lock)."""
        with self.engine.connect() as connection:
            return (
                connection.execute(
                    select(alerts.c.id).where(alerts.c.active.is_not(None)).limit(1)
                ).first()
                is not None
            )

    def open_alerts(
        self, connection: Connection, checks: Collection[str] | None = None
    ) -> dict[str, AlertRecord]:
        """Return the open (pending or firing) alerts by check, of the given checks or all."""
        found: dict[str, AlertRecord] = {}
        if checks is None:
            rows = connection.execute(select(alerts).where(alerts.c.active.is_not(None)))
            return {record.check: record for record in map(alert_from_row, rows)}
        for chunk in _chunks(sorted(set(checks))):
            rows = connection.execute(select(alerts).where(alerts.c.active.in_(chunk)))
            found.update({record.check: record for record in map(alert_from_row, rows)})
        return found

    def insert_alert(self, connection: Connection, **values: Any) -> int:
        """Given an open transaction and the new alert's columns, insert it; return its id."""
        values["active"] = values["check"]
        values["status"] = int(values["status"])
        values["routing"] = values.get("routing", Routing()).to_column()
        return inserted_id(connection.execute(insert(alerts).values(**values)))

    def update_alert(self, connection: Connection, alert_id: int, **values: Any) -> None:
        """Given an open transaction, an alert id and columns, update them (``state`` of
        ``resolved`` also frees the check for its next alert).
        """
        if values.get("state") == AlertState.RESOLVED:
            values["active"] = None
        if isinstance(values.get("status"), Status):
            values["status"] = int(values["status"])
        if isinstance(values.get("routing"), Routing):
            values["routing"] = values["routing"].to_column()
        connection.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))

    def mute_pending_notices(self, connection: Connection, alert_id: int, muted_by: str) -> int:
        """Given an open transaction, mark an alert's notices that no dispatcher has taken
        yet as ``muted`` (recorded, never sent); return how many.
        """
        return int(
            connection.execute(
                update(outbox)
                .where(
                    outbox.c.alert_id == alert_id,
                    outbox.c.status == OutboxStatus.PENDING,
                    outbox.c.batch.is_(None),
                )
                .values(status=OutboxStatus.MUTED, muted_by=muted_by)
            ).rowcount
        )

    def has_undelivered(self, connection: Connection, alert_id: int, channel: str) -> bool:
        """Return whether an alert has a notice for a channel still waiting to be sent."""
        row = connection.execute(
            select(outbox.c.id)
            .where(
                outbox.c.alert_id == alert_id,
                outbox.c.channel == channel,
                outbox.c.status.in_(WAITING_STATUSES),
            )
            .limit(1)
        ).first()
        return row is not None

    def group_due(
        self, connection: Connection, channel: str, group_key: str, now: datetime
    ) -> datetime | None:
        """Return when the earliest notice of a group still waiting for its group's wait
        to end is due, or None if none is waiting (``outbox.group_due``).
        """
        return group_due(connection, channel, group_key, now)

    def add_event(
        self,
        connection: Connection,
        alert_id: int,
        at: datetime,
        kind: str,
        detail: str = "",
        author: str | None = None,
    ) -> int:
        """Given an open transaction, append an event to an alert's timeline; return its id."""
        result = connection.execute(
            insert(alert_events).values(
                alert_id=alert_id, at=at, kind=kind, detail=detail, author=author
            )
        )
        return inserted_id(result)

    def get(self, alert_id: int) -> AlertRecord | None:
        """Given an alert id, return the alert, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        return alert_from_row(row) if row is not None else None

    def list_alerts(
        self, *, open_only: bool = True, since: datetime | None = None, limit: int = 500
    ) -> list[AlertRecord]:
        """Return alerts, newest first: open ones only, or every one opened since a moment."""
        query = select(alerts).order_by(alerts.c.opened_at.desc(), alerts.c.id.desc()).limit(limit)
        if open_only:
            query = query.where(alerts.c.active.is_not(None))
        if since is not None:
            query = query.where(or_(alerts.c.opened_at >= since, alerts.c.active.is_not(None)))
        with self.engine.connect() as connection:
            return [alert_from_row(row) for row in connection.execute(query)]

    def events(self, alert_id: int) -> list[AlertEvent]:
        """Given an alert id, return its timeline, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(alert_events)
                .where(alert_events.c.alert_id == alert_id)
                .order_by(alert_events.c.at, alert_events.c.id)
            )
            return [AlertEvent(**dict(row._mapping)) for row in rows]

    def add_note(self, alert_id: int, text: str, author: str, at: datetime) -> bool:
        """Given an incident (a fired alert), append a ``note`` to its timeline and return
        True; return False, writing nothing, if there is no such incident.
        """
        with self.transaction() as connection:
            exists = connection.execute(
                select(alerts.c.id).where(alerts.c.id == alert_id, alerts.c.fired_at.is_not(None))
            ).first()
            if exists is None:
                return False
            self.add_event(connection, alert_id, at, "note", text, author)
        return True

    def acknowledge(
        self,
        alert_id: int,
        *,
        author: str,
        at: datetime,
        expires_at: datetime | None,
        comment: str,
    ) -> AlertRecord:
        """Given an open alert's id, record an acknowledgement; return the updated alert.

        Raise ``AlertError`` if there is no such alert or it is already resolved.
        """
        with self.transaction() as connection:
            row = connection.execute(select(alerts).where(alerts.c.id == alert_id)).first()
            if row is None:
                raise AlertError(f"no alert #{alert_id}")
            record = alert_from_row(row)
            if record.state == AlertState.RESOLVED:
                raise AlertError(f"alert #{alert_id} is already resolved")
            self.update_alert(
                connection,
                alert_id,
                acked_by=author,
                acked_at=at,
                ack_expires_at=expires_at,
                ack_comment=comment or None,
                first_acked_at=record.first_acked_at or at,
            )
            until = f" until {expires_at.isoformat()}" if expires_at else ""
            detail = f"acknowledged{until}" + (f": {comment}" if comment else "")
            self.add_event(connection, alert_id, at, "acknowledged", detail, author)
            updated = connection.execute(select(alerts).where(alerts.c.id == alert_id)).one()
        return alert_from_row(updated)

    def prune(
        self, *, keep_alerts: timedelta, keep_notifications: timedelta, now: datetime | None = None
    ) -> tuple[int, int]:
        """Delete alerts resolved before ``keep_alerts`` ago (with their timelines) and
        finished notifications (sent, dead, muted) created before ``keep_notifications``
        ago; return (alerts deleted, notifications deleted). Open alerts and notifications
        still to be delivered are never touched.
        """
        moment = now or datetime.now(UTC)
        alert_cutoff, notice_cutoff = moment - keep_alerts, moment - keep_notifications
        with self.transaction() as connection:
            old = select(alerts.c.id).where(
                alerts.c.state == AlertState.RESOLVED, alerts.c.resolved_at < alert_cutoff
            )
            connection.execute(delete(alert_events).where(alert_events.c.alert_id.in_(old)))
            connection.execute(delete(incident_updates).where(incident_updates.c.alert_id.in_(old)))
            connection.execute(delete(remediations).where(remediations.c.alert_id.in_(old)))
            # The notices of a deleted alert go with it, whatever their own retention.
            connection.execute(
                delete(outbox).where(
                    outbox.c.alert_id.in_(old), outbox.c.status.in_(FINISHED_STATUSES)
                )
            )
            removed_alerts = connection.execute(
                delete(alerts).where(
                    alerts.c.state == AlertState.RESOLVED, alerts.c.resolved_at < alert_cutoff
                )
            ).rowcount
            removed_notices = connection.execute(
                delete(outbox).where(
                    outbox.c.status.in_(FINISHED_STATUSES),
                    outbox.c.created_at < notice_cutoff,
                )
            ).rowcount
        return int(removed_alerts), int(removed_notices)

    # --- silences ------------------------------------------------------------------------

    def add_silence(
        self,
        matchers: Mapping[str, str],
        *,
        starts_at: datetime,
        ends_at: datetime,
        author: str,
        comment: str,
        now: datetime | None = None,
    ) -> Silence:
        """Given matchers and a period, store a silence; return it.

        Raise ``AlertError`` if it has no matcher or ends before it starts.
        """
        if not matchers:
            raise AlertError("a silence needs at least one matcher (--match key=value)")
        if ends_at <= starts_at:
            raise AlertError("a silence must end after it starts")
        created_at = now or datetime.now(UTC)
        with self.transaction() as connection:
            inserted = connection.execute(
                insert(silences).values(
                    matchers=dict(matchers),
                    starts_at=starts_at,
                    ends_at=ends_at,
                    author=author,
                    comment=comment,
                    created_at=created_at,
                )
            )
            silence_id = inserted_id(inserted)
        return Silence(
            silence_id,
            dict(matchers),
            starts_at,
            ends_at,
            author,
            comment,
            created_at,
            None,
            None,
        )

    def silences(
        self,
        *,
        active_at: datetime | None = None,
        include_ended: bool = False,
        now: datetime | None = None,
    ) -> list[Silence]:
        """Return silences: those active at a moment, or every not-removed one not yet ended
        at ``now`` (and ended or removed ones too with ``include_ended``), newest first.
        """
        query = select(silences).order_by(silences.c.id.desc())
        if active_at is not None:
            query = query.where(
                and_(
                    silences.c.removed_at.is_(None),
                    silences.c.starts_at <= active_at,
                    silences.c.ends_at > active_at,
                )
            )
        elif not include_ended:
            query = query.where(
                and_(
                    silences.c.removed_at.is_(None), silences.c.ends_at > (now or datetime.now(UTC))
                )
            )
        with self.engine.connect() as connection:
            return [Silence(**dict(row._mapping)) for row in connection.execute(query)]

    def remove_silence(self, silence_id: int, *, by: str, now: datetime | None = None) -> bool:
        """Given a silence id, end it now; return False if there is no such active silence."""
        with self.transaction() as connection:
            changed = connection.execute(
                update(silences)
                .where(silences.c.id == silence_id, silences.c.removed_at.is_(None))
                .values(removed_at=now or datetime.now(UTC), removed_by=by)
            ).rowcount
        return bool(changed)


@dataclass(frozen=True)
class CheckState:
    """What is remembered of a check between results."""

    check: str
    history: str = ""
    flapping: bool = False
    consecutive_bad: int = 0
    consecutive_ok: int = 0
    bad_since: datetime | None = None
    last_status: Status = Status.OK
    last_at: datetime | None = None
