"""The pings of heartbeats: what cron jobs report (start, success, fail, log) and when.

A heartbeat is known here only by the SHA-256 of its id (``heartbeat_digest``): the id is
the ping URL's credential, so it is never written to the store. ``PingLog.summary`` reads
what the ``heartbeat`` probe needs (the newest ping of each kind, and the start of the
last completed run) through the index on (heartbeat, kind, received_at); ``first_seen``
records when a heartbeat was first judged, so one that never pinged is new, not down,
until its first deadline.

Retention (``prune``) deletes pings older than the cut-off, but never the newest ping of
each kind of a configured heartbeat (a quarterly job's last success outlives 90 days of
retention), and keeps at most ``MAX_PINGS_PER_HEARTBEAT`` of each heartbeat however fast
it pings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from upkeep.store.rows import inserted_id
from upkeep.store.schema import heartbeats, pings

if TYPE_CHECKING:
    import threading

    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

MAX_PING_BODY_CHARS = 10 * 1024
"""The most of a ping's body kept (its end: the end of a job's log says how it ended)."""
MAX_PINGS_PER_HEARTBEAT = 1000
"""Retention keeps at most this many pings of one heartbeat, newest first."""
MAX_SOURCE_CHARS = 64
"""A client address longer than this is cut (an IPv6 address with a zone fits)."""


class PingKind(StrEnum):
    """What a ping says (``pings.kind``)."""

    START = "start"
    """The job started; its run is timed from here."""
    SUCCESS = "success"
    """The job finished well (a plain ping, or exit code 0)."""
    FAIL = "fail"
    """The job failed (``/fail``, or exit code 1 to 255)."""
    LOG = "log"
    """A message only: it changes no state."""


COMPLETIONS = (PingKind.SUCCESS, PingKind.FAIL)
"""The kinds that end a run."""


def heartbeat_digest(heartbeat_id: str) -> str:
    """Given a heartbeat's id (its URL credential), return the hex SHA-256 it is kept under."""
    return hashlib.sha256(heartbeat_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Ping:
    """One stored ping."""

    id: int
    kind: PingKind
    received_at: datetime
    exit_code: int | None = None
    source: str = ""
    body: str = ""


@dataclass(frozen=True)
class PingSummary:
    """What the probe judges a heartbeat by: the newest ping of each state-changing kind,
    and the start of the last completed run (None if the run was not started with a ping,
    or its start came before the completion before it)."""

    start: Ping | None
    success: Ping | None
    fail: Ping | None
    run_start: Ping | None

    @property
    def completion(self) -> Ping | None:
        """Return the newer of the last success and the last failure (None: neither)."""
        done = [ping for ping in (self.success, self.fail) if ping is not None]
        return max(done, key=_order) if done else None

    @property
    def newest(self) -> Ping | None:
        """Return the newest start, success or failure (None: no ping at all)."""
        seen = [ping for ping in (self.start, self.success, self.fail) if ping is not None]
        return max(seen, key=_order) if seen else None


def _order(ping: Ping) -> tuple[datetime, int]:
    return (ping.received_at, ping.id)


def _ping(row: Any) -> Ping:
    return Ping(
        id=int(row.id),
        kind=PingKind(row.kind),
        received_at=row.received_at,
        exit_code=row.exit_code,
        source=row.source,
        body=row.body,
    )


class PingLog:
    """Reads and writes the ``pings`` and ``heartbeats`` tables."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self._engine = engine
        self._lock = lock

    def record(
        self,
        digest: str,
        kind: PingKind,
        received_at: datetime,
        *,
        exit_code: int | None = None,
        source: str = "",
        body: str = "",
    ) -> int:
        """Given a heartbeat's digest and a ping (its body already redacted), store it and
        return its id; the body keeps its last ``MAX_PING_BODY_CHARS`` characters."""
        with self._lock, self._engine.begin() as connection:
            result = connection.execute(
                insert(pings).values(
                    heartbeat=digest,
                    kind=kind.value,
                    exit_code=exit_code,
                    received_at=received_at,
                    source=source[:MAX_SOURCE_CHARS],
                    body=body[-MAX_PING_BODY_CHARS:] if body else "",
                )
            )
            return inserted_id(result)

    def recent(self, digest: str, *, limit: int = 50) -> list[Ping]:
        """Given a heartbeat's digest, return its newest pings (of every kind), newest first."""
        query = (
            select(pings)
            .where(pings.c.heartbeat == digest)
            .order_by(pings.c.received_at.desc(), pings.c.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [_ping(row) for row in connection.execute(query)]

    def summary(self, digest: str) -> PingSummary:
        """Given a heartbeat's digest, return the newest start, success and failure, and
        the start of the last completed run."""
        with self._engine.connect() as connection:
            newest = {
                kind: self._newest(connection, digest, pings.c.kind == kind.value)
                for kind in (PingKind.START, PingKind.SUCCESS, PingKind.FAIL)
            }
            found = PingSummary(
                newest[PingKind.START], newest[PingKind.SUCCESS], newest[PingKind.FAIL], None
            )
            last = found.completion
            if last is None:
                return found
            completed = pings.c.kind.in_([kind.value for kind in COMPLETIONS])
            before_last = or_(
                pings.c.received_at < last.received_at,
                and_(pings.c.received_at == last.received_at, pings.c.id < last.id),
            )
            previous = self._newest(connection, digest, and_(completed, before_last))
            start_condition = and_(pings.c.kind == PingKind.START.value, before_last)
            if previous is not None:
                start_condition = and_(start_condition, pings.c.received_at >= previous.received_at)
            run_start = self._newest(connection, digest, start_condition)
        return PingSummary(found.start, found.success, found.fail, run_start)

    @staticmethod
    def _newest(connection: Connection, digest: str, condition: Any) -> Ping | None:
        row = connection.execute(
            select(pings)
            .where(pings.c.heartbeat == digest, condition)
            .order_by(pings.c.received_at.desc(), pings.c.id.desc())
            .limit(1)
        ).first()
        return _ping(row) if row is not None else None

    def first_seen(self, digest: str, now: datetime) -> datetime:
        """Given a heartbeat's digest and the time, return when it was first seen,
        recording ``now`` if it never was."""
        query = select(heartbeats.c.first_seen).where(heartbeats.c.heartbeat == digest)
        with self._engine.connect() as connection:
            seen = connection.execute(query).scalar()
        if seen is not None:
            return seen  # type: ignore[no-any-return]
        try:
            with self._lock, self._engine.begin() as connection:
                connection.execute(insert(heartbeats).values(heartbeat=digest, first_seen=now))
        except IntegrityError:
            # Another process recorded it a moment ago: its time stands.
            with self._engine.connect() as connection:
                return connection.execute(query).scalar_one()  # type: ignore[no-any-return]
        return now

    def prune(
        self,
        before: datetime,
        configured: Collection[str],
        *,
        keep_per_heartbeat: int = MAX_PINGS_PER_HEARTBEAT,
    ) -> int:
        """Given a cut-off and the digests of the configured heartbeats, delete pings
        older than the cut-off and all but the newest ``keep_per_heartbeat`` of each
        heartbeat, keeping the newest ping of each kind of every configured heartbeat;
        forget when heartbeats no longer configured were first seen. Return how many
        pings were deleted."""
        wanted = sorted(set(configured))
        deleted = 0
        with self._lock, self._engine.begin() as connection:
            kept: dict[str, set[int]] = {}
            for chunk in _chunks(wanted, 500):
                for digest, newest_id in connection.execute(
                    select(pings.c.heartbeat, func.max(pings.c.id))
                    .where(pings.c.heartbeat.in_(chunk))
                    .group_by(pings.c.heartbeat, pings.c.kind)
                ):
                    kept.setdefault(digest, set()).add(int(newest_id))
            for digest, ids in kept.items():
                deleted += connection.execute(
                    delete(pings).where(
                        pings.c.heartbeat == digest,
                        pings.c.received_at < before,
                        pings.c.id.not_in(ids),
                    )
                ).rowcount
            others = pings.c.received_at < before
            if kept:
                others = and_(others, pings.c.heartbeat.not_in(list(kept)))
            deleted += connection.execute(delete(pings).where(others)).rowcount
            crowded = (
                connection.execute(
                    select(pings.c.heartbeat)
                    .group_by(pings.c.heartbeat)
                    .having(func.count() > keep_per_heartbeat)
                )
                .scalars()
                .all()
            )
            for digest in crowded:
                threshold = connection.execute(
                    select(pings.c.id)
                    .where(pings.c.heartbeat == digest)
                    .order_by(pings.c.id.desc())
                    .offset(keep_per_heartbeat)
                    .limit(1)
                ).scalar()
                if threshold is None:
                    continue
                crowd = and_(pings.c.heartbeat == digest, pings.c.id <= threshold)
                if digest in kept:
                    crowd = and_(crowd, pings.c.id.not_in(kept[digest]))
                deleted += connection.execute(delete(pings).where(crowd)).rowcount
            forgotten = heartbeats.c.heartbeat.not_in(wanted) if wanted else None
            connection.execute(
                delete(heartbeats) if forgotten is None else delete(heartbeats).where(forgotten)
            )
        return int(deleted)


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
