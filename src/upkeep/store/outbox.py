"""The outbox: every notification is a row before it is a message, so none is lost.

A row is ``pending`` until a dispatcher claims it (``sending``, with a lease), then
``sent``; a failed delivery puts it back to ``pending`` with an exponential backoff, and
past ``give_up_after`` it is ``dead``. A ``muted`` row is recorded and never sent.

Rows of one channel with the same ``group_key`` that are due together go out as one
message: a *batch*. A batch's id is derived from its rows' keys and stored with them,
and from then on those rows are always claimed, retried and marked together, so a batch
re-sent after a crash or a lost lease is the same message with the same idempotency key.

Claims are serialised: on PostgreSQL by a transaction-level advisory lock, on SQLite by
taking the database's write lock first (``BEGIN IMMEDIATE``). Two dispatchers therefore
never claim one row, and a batch is always claimed whole. Marking a batch checks that the
marker still holds its lease, so a dispatcher whose lease ran out cannot overwrite what
the next owner did.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import Field
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel
from upkeep.store.locks import OUTBOX_CLAIM_LOCK_KEY, serialise
from upkeep.store.schema import outbox

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

    from upkeep.notify.message import Notification


class OutboxStatus(StrEnum):
    """Where a notification is on its way out (``outbox.status``)."""

    PENDING = "pending"
    """Waiting for its next attempt (``next_attempt_at``)."""
    SENDING = "sending"
    """Claimed by a dispatcher, under a lease."""
    SENT = "sent"
    DEAD = "dead"
    """Given up on: undelivered past ``give_up_after``, or its channel is gone."""
    MUTED = "muted"
    """Recorded and never sent: a silence or a window muted it."""


OUTBOX_STATUSES = tuple(OutboxStatus)
WAITING_STATUSES = (OutboxStatus.PENDING, OutboxStatus.SENDING)
"""A notification in one of these may still go out."""
FINISHED_STATUSES = (OutboxStatus.SENT, OutboxStatus.DEAD, OutboxStatus.MUTED)
"""A notification in one of these never changes again (retention may delete it)."""
MAX_BATCH_ROWS = 50
"""At most this many notifications are joined into one message; more wait for the next."""
INSERT_CHUNK = 200
"""Rows per multi-row INSERT: well under every backend's bound-parameter limit."""
BATCH_PREFIX = "batch:"
FALLBACK_SUFFIX = ":fallback"
_KEY_LENGTH = 128  # outbox.key is String(128)


@dataclass(frozen=True)
class OutboxRow:
    """One notification as the outbox stores it."""

    id: int
    key: str
    channel: str
    alert_id: int | None
    kind: str
    group_key: str
    severity: str | None
    level: str
    title: str
    body: str
    status: OutboxStatus
    muted_by: str | None
    created_at: datetime
    next_attempt_at: datetime
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    batch: str | None
    claimed_by: str | None
    claimed_until: datetime | None
    fallback: str | None
    fallback_after: int | None
    fallback_sent: bool

    def delivery_json(self) -> dict[str, Any]:
        """Return what happened to this notification: channel, kind, status, attempts,
        when sent or next tried, the last error (already redacted) and what muted it.
        """
        return {
            "channel": self.channel,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "next_attempt_at": (
                self.next_attempt_at.isoformat() if self.status == OutboxStatus.PENDING else None
            ),
            "last_error": self.last_error,
            "muted_by": self.muted_by,
        }

    def to_json(self, check: str | None, redact: Callable[[str], str]) -> dict[str, Any]:
        """Given the check of its alert (None if none, or pruned) and the config's
        redaction, return the row as ``upkeep notify outbox --json`` and ``GET
        /api/outbox`` show it (title and error redacted again: the config in force may
        know more secrets than the one that stored them)."""

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment is not None else None

        return {
            "id": self.id,
            "key": self.key,
            "channel": self.channel,
            "kind": self.kind,
            "alert_id": self.alert_id,
            "check": check,
            "severity": self.severity,
            "title": redact(self.title),
            "status": self.status,
            "muted_by": self.muted_by,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "next_attempt_at": iso(self.next_attempt_at),
            "sent_at": iso(self.sent_at),
            "last_error": redact(self.last_error) if self.last_error else None,
            "batch": self.batch,
        }


@dataclass(frozen=True)
class Batch:
    """Rows of one channel claimed together, to go out as one message.

    ``id`` is ``batch:`` + the sha256 of the rows' sorted keys. ``key`` is the idempotency
    key the message carries: the notification's own key when the batch holds one row,
    else the batch id; both are the same on every attempt.
    """

    id: str
    channel: str
    group_key: str
    owner: str
    claimed_until: datetime
    rows: tuple[OutboxRow, ...]

    @property
    def key(self) -> str:
        """Return the idempotency key of the message this batch becomes."""
        return self.rows[0].key if len(self.rows) == 1 else self.id

    @property
    def attempts(self) -> int:
        """Return how many delivery attempts this batch has had before this one."""
        return max(row.attempts for row in self.rows)


@dataclass(frozen=True)
class MarkResult:
    """What marking a failed batch did: its new status, when it is tried next, and the
    keys of fallback copies enqueued. ``status`` is None when the lease was lost (another
    dispatcher holds the batch now, or it was marked already) and nothing changed."""

    status: OutboxStatus | None
    next_attempt_at: datetime | None = None
    fallbacks: tuple[str, ...] = ()


def batch_id(keys: Iterable[str]) -> str:
    """Given the keys of a batch's rows, return the batch id (the same for any order)."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return f"{BATCH_PREFIX}{digest}"


def fallback_key(key: str) -> str:
    """Given a notification's key, return the key of its copy for the fallback channel."""
    candidate = f"{key}{FALLBACK_SUFFIX}"
    if len(candidate) <= _KEY_LENGTH:
        return candidate
    return f"fallback:{hashlib.sha256(key.encode()).hexdigest()}"


def backoff_delay(attempts: int, delivery: DeliveryConfig) -> timedelta:
    """Given how many attempts failed so far (1 after the first), return the wait before
    the next: ``backoff · 2^(attempts-1)``, at most ``max_backoff``."""
    # Seconds as a float with a capped exponent: 2**attempts as a timedelta overflows.
    seconds = delivery.backoff.total_seconds() * 2.0 ** min(max(attempts - 1, 0), 60)
    return timedelta(seconds=min(seconds, delivery.max_backoff.total_seconds()))


def _row(mapping: Any) -> OutboxRow:
    values = {name: mapping[name] for name in OutboxRow.__dataclass_fields__}
    values["status"] = OutboxStatus(values["status"])
    return OutboxRow(**values)


def _insert(connection: Connection) -> Any:
    """Return an INSERT for ``outbox`` that skips a row whose key is already there."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(outbox).on_conflict_do_nothing(index_elements=["key"])
    if dialect == "sqlite":
        return sqlite.insert(outbox).on_conflict_do_nothing(index_elements=["key"])
    raise NotImplementedError(f"the outbox supports SQLite and PostgreSQL, not {dialect}")


def add_notifications(
    connection: Connection,
    notifications: Sequence[Notification],
    now: datetime,
    *,
    deliver_after: datetime | None = None,
    muted_by: str | None = None,
) -> list[int]:
    """Given an open transaction and notifications, insert those whose key is new
    (``pending`` from ``deliver_after`` or now, or ``muted`` when ``muted_by`` is given)
    and return the ids of the rows inserted. A key already present is left as it is, even
    when another transaction inserts it at the same moment: enqueuing is idempotent."""
    unique = list({notification.key: notification for notification in notifications}.values())
    rows = [
        {
            "key": notification.key,
            "channel": notification.channel,
            "alert_id": notification.alert_id,
            "kind": notification.kind,
            "group_key": notification.group_key,
            "severity": notification.severity,
            "level": notification.level,
            "title": notification.title,
            "body": notification.body,
            "status": OutboxStatus.MUTED if muted_by else OutboxStatus.PENDING,
            "muted_by": muted_by,
            "created_at": now,
            "next_attempt_at": deliver_after or now,
            "attempts": 0,
            "fallback": notification.fallback,
            "fallback_after": notification.fallback_after,
            "fallback_sent": False,
        }
        for notification in unique
    ]
    inserted: list[int] = []
    for start in range(0, len(rows), INSERT_CHUNK):
        statement = _insert(connection).values(rows[start : start + INSERT_CHUNK])
        inserted += [int(row.id) for row in connection.execute(statement.returning(outbox.c.id))]
    return inserted


def group_due(
    connection: Connection, channel: str, group_key: str, now: datetime
) -> datetime | None:
    """Given a transaction, a channel and a group key, return when the earliest notice of
    that group still waiting for its group's wait to end is due, or None if none is: new
    notices of the group take that moment, so they go out with it as one message."""
    value = connection.execute(
        select(func.min(outbox.c.next_attempt_at)).where(
            outbox.c.channel == channel,
            outbox.c.group_key == group_key,
            outbox.c.status == OutboxStatus.PENDING,
            outbox.c.batch.is_(None),
            outbox.c.attempts == 0,
            outbox.c.next_attempt_at > now,
        )
    ).scalar()
    return value if isinstance(value, datetime) else None


class OutboxStore:
    """Reads and writes the ``outbox`` table; safe to share between threads."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self.engine = engine
        self._lock = lock
        self._queued_here: set[int] = set()
        self._queued_lock = threading.Lock()

    # --- what this process queued ------------------------------------------------------------

    def note_queued(self, ids: Iterable[int]) -> None:
        """Given the ids of pending rows a committed transaction of this process inserted
        through this store, remember them (see ``queued_here``)."""
        with self._queued_lock:
            self._queued_here.update(ids)

    def queued_here(self) -> frozenset[int]:
        """Return the ids of the pending rows this process queued through this store (a
        daemon sharing the store queues its own through its own ``Store``): what a one-shot
        command waits for, and nothing else."""
        with self._queued_lock:
            return frozenset(self._queued_here)

    # --- enqueue ---------------------------------------------------------------------------

    def enqueue(
        self,
        notifications: Sequence[Notification],
        now: datetime,
        *,
        deliver_after: datetime | None = None,
        muted_by: str | None = None,
    ) -> int:
        """Given notifications, store those whose key is new and return how many were.

        They are due at ``deliver_after`` (default ``now``); with ``muted_by`` they are
        recorded ``muted`` and never sent.
        """
        if not notifications:
            return 0
        with self._lock, self.engine.begin() as connection:
            return len(
                add_notifications(
                    connection, notifications, now, deliver_after=deliver_after, muted_by=muted_by
                )
            )

    # --- claims ----------------------------------------------------------------------------

    def claim_due(self, owner: str, now: datetime, lease: timedelta, limit: int = 8) -> list[Batch]:
        """Given a dispatcher's id, the time and a lease, claim up to ``limit`` batches that
        are due and return them, oldest first.

        Due are ``pending`` rows whose ``next_attempt_at`` has come and ``sending`` rows
        whose lease ran out (their dispatcher died or hung mid-delivery). A row that was
        part of a batch is claimed with all of that batch's rows, as the same batch; due
        rows without one are grouped by (channel, group_key), at most ``MAX_BATCH_ROWS``
        per batch. Claimed rows are ``sending``, held by ``owner`` until ``now + lease``.
        """
        until = now + lease
        due = or_(
            and_(outbox.c.status == OutboxStatus.PENDING, outbox.c.next_attempt_at <= now),
            and_(outbox.c.status == OutboxStatus.SENDING, outbox.c.claimed_until < now),
        )
        with self._lock, self.engine.begin() as connection:
            postgres = serialise(connection, OUTBOX_CLAIM_LOCK_KEY)
            # Enough due rows to find ``limit`` batches even when each fills a whole batch;
            # the first ``limit`` distinct batches (or groups) among them are claimed.
            query = (
                select(outbox.c.batch, outbox.c.channel, outbox.c.group_key)
                .where(due)
                .order_by(outbox.c.next_attempt_at, outbox.c.id)
                .limit(limit * MAX_BATCH_ROWS)
            )
            known: list[str] = []
            groups: list[tuple[str, str]] = []
            for seed in connection.execute(query.with_for_update() if postgres else query).all():
                if len(known) + len(groups) >= limit:
                    break
                if seed.batch is not None and seed.batch not in known:
                    known.append(seed.batch)
                elif seed.batch is None and (seed.channel, seed.group_key) not in groups:
                    groups.append((seed.channel, seed.group_key))
            if not known and not groups:
                return []
            planned: dict[str, list[OutboxRow]] = {}
            if known:
                siblings = (
                    select(outbox)
                    .where(
                        outbox.c.batch.in_(known),
                        outbox.c.status.in_(WAITING_STATUSES),
                    )
                    .order_by(outbox.c.id)
                )
                for row in connection.execute(siblings.with_for_update() if postgres else siblings):
                    planned.setdefault(row.batch, []).append(_row(row._mapping))
            for channel, group_key in groups:
                members = (
                    select(outbox)
                    .where(
                        due,
                        outbox.c.batch.is_(None),
                        outbox.c.channel == channel,
                        outbox.c.group_key == group_key,
                    )
                    .order_by(outbox.c.next_attempt_at, outbox.c.id)
                    .limit(MAX_BATCH_ROWS)
                )
                rows = [
                    _row(row._mapping)
                    for row in connection.execute(
                        members.with_for_update() if postgres else members
                    )
                ]
                planned[batch_id(row.key for row in rows)] = rows
            batches: list[Batch] = []
            for identifier, rows in planned.items():
                claimed = connection.execute(
                    update(outbox)
                    .where(outbox.c.id.in_([row.id for row in rows]))
                    .values(
                        status=OutboxStatus.SENDING,
                        claimed_by=owner,
                        claimed_until=until,
                        batch=identifier,
                    )
                ).rowcount
                if claimed != len(rows):  # pragma: no cover - claims are serialised
                    raise RuntimeError(f"outbox batch {identifier} changed while claimed")
                batches.append(
                    Batch(
                        id=identifier,
                        channel=rows[0].channel,
                        group_key=rows[0].group_key,
                        owner=owner,
                        claimed_until=until,
                        rows=tuple(rows),
                    )
                )
        return sorted(batches, key=lambda batch: min(row.id for row in batch.rows))

    def release(self, owner: str) -> int:
        """Given a dispatcher's id, hand its claimed rows back (``pending``, due now, same
        batch) and return how many: a clean stop need not wait for its leases to run out."""
        with self._lock, self.engine.begin() as connection:
            return int(
                connection.execute(
                    update(outbox)
                    .where(outbox.c.status == OutboxStatus.SENDING, outbox.c.claimed_by == owner)
                    .values(status=OutboxStatus.PENDING, claimed_by=None, claimed_until=None)
                ).rowcount
            )

    def release_dead_claims(self, is_dead: Callable[[str], bool]) -> int:
        """Given a test of whether an owner is certainly gone, hand back the claims of every
        gone owner (see ``release``) and return how many rows that freed."""
        with self.engine.connect() as connection:
            owners = (
                connection.execute(
                    select(outbox.c.claimed_by)
                    .where(
                        outbox.c.status == OutboxStatus.SENDING, outbox.c.claimed_by.is_not(None)
                    )
                    .distinct()
                )
                .scalars()
                .all()
            )
        return sum(self.release(owner) for owner in owners if is_dead(owner))

    # --- marks -----------------------------------------------------------------------------

    def _held(self, batch: Batch) -> Any:
        return and_(
            outbox.c.batch == batch.id,
            outbox.c.status == OutboxStatus.SENDING,
            outbox.c.claimed_by == batch.owner,
            outbox.c.claimed_until == batch.claimed_until,
        )

    def mark_sent(self, batch: Batch, now: datetime) -> bool:
        """Given a batch this dispatcher claimed, record it ``sent``; return False (and
        change nothing) if its lease was lost to another dispatcher meanwhile."""
        with self._lock, self.engine.begin() as connection:
            changed = connection.execute(
                update(outbox)
                .where(self._held(batch))
                .values(
                    status=OutboxStatus.SENT,
                    sent_at=now,
                    attempts=outbox.c.attempts + 1,
                    last_error=None,
                    claimed_by=None,
                    claimed_until=None,
                )
            ).rowcount
        return bool(changed)

    def mark_failed(
        self,
        batch: Batch,
        now: datetime,
        error: str,
        delivery: DeliveryConfig,
        *,
        not_before: datetime | None = None,
    ) -> MarkResult:
        """Given a batch whose delivery failed, count the attempt and schedule the next.

        The batch is due again after ``backoff_delay`` (``pending``), or ``dead`` once its
        oldest row is older than ``give_up_after``. A row with a fallback channel whose
        attempts reach ``fallback_after`` (or that just died) gets a copy enqueued for the
        fallback channel, once; the original keeps retrying. ``error`` must be redacted.
        ``not_before`` puts the next attempt no earlier than that (a send abandoned at its
        deadline may still be finishing in its thread).
        """
        return self._fail(batch, now, error, delivery, dead=False, not_before=not_before)

    def mark_dead(
        self, batch: Batch, now: datetime, error: str, delivery: DeliveryConfig
    ) -> MarkResult:
        """Given a batch that can never be delivered (its channel is gone from the config),
        record it ``dead`` with the error, enqueuing fallback copies not yet sent."""
        return self._fail(batch, now, error, delivery, dead=True)

    def _fail(
        self,
        batch: Batch,
        now: datetime,
        error: str,
        delivery: DeliveryConfig,
        *,
        dead: bool,
        not_before: datetime | None = None,
    ) -> MarkResult:
        with self._lock, self.engine.begin() as connection:
            query = select(outbox).where(self._held(batch))
            if connection.dialect.name == "postgresql":
                query = query.with_for_update()
            rows = [_row(row._mapping) for row in connection.execute(query)]
            if not rows:
                return MarkResult(None)
            attempts = max(row.attempts for row in rows) + 1
            oldest = min(row.created_at for row in rows)
            dead = dead or now - oldest > delivery.give_up_after
            next_attempt = max(now + backoff_delay(attempts, delivery), not_before or now)
            connection.execute(
                update(outbox)
                .where(self._held(batch))
                .values(
                    status=OutboxStatus.DEAD if dead else OutboxStatus.PENDING,
                    attempts=attempts,
                    last_error=error,
                    next_attempt_at=now if dead else next_attempt,
                    claimed_by=None,
                    claimed_until=None,
                )
            )
            fallbacks = self._fallbacks(connection, rows, attempts, now, dead=dead)
        status = OutboxStatus.DEAD if dead else OutboxStatus.PENDING
        return MarkResult(status, None if dead else next_attempt, fallbacks)

    def _fallbacks(
        self,
        connection: Connection,
        rows: Sequence[OutboxRow],
        attempts: int,
        now: datetime,
        *,
        dead: bool,
    ) -> tuple[str, ...]:
        from upkeep.notify.message import Notification

        due = [
            row
            for row in rows
            if row.fallback
            and row.fallback_after is not None
            and not row.fallback_sent
            and (dead or attempts >= row.fallback_after)
        ]
        if not due:
            return ()
        copies = [
            Notification(
                key=fallback_key(row.key),
                channel=str(row.fallback),
                kind="fallback",
                group_key=row.group_key,
                title=f"[via fallback: {row.channel} failing] {row.title}",
                body=row.body,
                level=row.level,
                severity=row.severity,
                alert_id=row.alert_id,
            )
            for row in due
        ]
        add_notifications(connection, copies, now)
        connection.execute(
            update(outbox)
            .where(outbox.c.id.in_([row.id for row in due]))
            .values(fallback_sent=True)
        )
        return tuple(copy.key for copy in copies)

    # --- reads -----------------------------------------------------------------------------

    def list_rows(
        self,
        *,
        status: OutboxStatus | None = None,
        channel: str | None = None,
        limit: int = 100,
    ) -> list[OutboxRow]:
        """Given optional filters, return outbox rows newest first (at most ``limit``)."""
        query = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(outbox.c.status == status)
        if channel is not None:
            query = query.where(outbox.c.channel == channel)
        with self.engine.connect() as connection:
            return [_row(row._mapping) for row in connection.execute(query)]

    def for_alert(self, alert_id: int) -> list[OutboxRow]:
        """Given an alert id, return every notification about it, oldest first."""
        query = select(outbox).where(outbox.c.alert_id == alert_id).order_by(outbox.c.id)
        with self.engine.connect() as connection:
            return [_row(row._mapping) for row in connection.execute(query)]

    def get(self, key: str) -> OutboxRow | None:
        """Given a notification's key, return its row, or None if there is none."""
        with self.engine.connect() as connection:
            row = connection.execute(select(outbox).where(outbox.c.key == key)).first()
        return _row(row._mapping) if row is not None else None

    def counts(self) -> dict[str, int]:
        """Return how many rows are in each status (every status present, zeros too), keyed
        by the status's plain string (ready for JSON)."""
        query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
        with self.engine.connect() as connection:
            found = {status: int(count) for status, count in connection.execute(query)}
        return {status.value: found.get(status.value, 0) for status in OUTBOX_STATUSES}

    def next_due(self) -> datetime | None:
        """Return when the earliest row is due to be claimed: a ``pending`` row's next
        attempt, or a ``sending`` row's lease end; None if there is none."""
        pending = select(func.min(outbox.c.next_attempt_at)).where(
            outbox.c.status == OutboxStatus.PENDING
        )
        sending = select(func.min(outbox.c.claimed_until)).where(
            outbox.c.status == OutboxStatus.SENDING
        )
        with self.engine.connect() as connection:
            moments = [connection.execute(query).scalar() for query in (pending, sending)]
        return min((moment for moment in moments if moment is not None), default=None)

    def first_attempt_due(self, by: datetime, among: Collection[int]) -> datetime | None:
        """Given a time and row ids, return when the earliest of those rows that is
        ``pending`` and was never attempted (one waiting for its route's group_wait) is due,
        if that is no later than ``by``; else None. Retries of failed rows do not count: a
        one-shot command waits for grouping, never for a channel's backoff; and it waits
        only for the rows it queued (``among``), never for a daemon's."""
        if not among:
            return None
        query = select(outbox.c.id, outbox.c.next_attempt_at).where(
            outbox.c.status == OutboxStatus.PENDING,
            outbox.c.attempts == 0,
            outbox.c.next_attempt_at <= by,
            # Bounds the scan; the exact set is filtered below (it may be long).
            outbox.c.id >= min(among),
        )
        with self.engine.connect() as connection:
            due = [moment for row_id, moment in connection.execute(query) if row_id in among]
        return min(due, default=None)


class DeliveryConfig(StrictModel):
    """How the outbox retries a notification a channel did not take."""

    timeout: Duration = Field(
        default=timedelta(seconds=15), description="named timeout of one delivery attempt"
    )
    backoff: Duration = Field(
        default=timedelta(seconds=5), description="wait after the first failed attempt"
    )
    max_backoff: Duration = Field(
        default=timedelta(minutes=10), description="the wait doubles up to this"
    )
    give_up_after: Duration = Field(
        default=timedelta(days=2), description="a notification still undelivered is dead"
    )
