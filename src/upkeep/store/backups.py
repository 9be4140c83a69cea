"""The backup catalog: every backup attempt (complete or failed), and every verification,
restore, drill and prune, so ``upkeep backup list`` and the reports can show them without
reading the repository, and failures (which leave nothing in the repository) are kept.

The repository stays the truth about what can be restored; the catalog is the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update

from upkeep.store.rows import inserted_id
from upkeep.store.schema import backup_events, backups

if TYPE_CHECKING:
    import threading

    from sqlalchemy import Engine


class BackupStatus(StrEnum):
    """What became of a backup attempt (``backups.status``)."""

    OK = "ok"
    """Complete in the repository."""
    FAILED = "failed"
    """Nothing was kept; the message says why."""
    REMOVED = "removed"
    """Deleted by retention."""


class BackupEventKind(StrEnum):
    """What a catalog event records (``backup_events.kind``)."""

    VERIFY = "verify"
    RESTORE = "restore"
    DRILL = "drill"
    PRUNE = "prune"


class BackupEventStatus(StrEnum):
    """How a verification, restore, drill or prune ended (``backup_events.status``)."""

    OK = "ok"
    FAILED = "failed"
    WRITTEN = "written"
    """A restore that wrote the backup out for loading by hand: the source is unchanged."""


@dataclass(frozen=True)
class BackupRecord:
    """One row of the catalog."""

    id: str
    source: str
    status: BackupStatus
    started_at: datetime
    finished_at: datetime | None
    raw_bytes: int | None = None
    stored_bytes: int | None = None
    location: str = ""
    copies: list[dict[str, Any]] = field(default_factory=list)
    verified_at: datetime | None = None
    verified_ok: bool | None = None
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the record as JSON-ready data."""
        return {
            "id": self.id,
            "source": self.source,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "raw_bytes": self.raw_bytes,
            "stored_bytes": self.stored_bytes,
            "location": self.location,
            "copies": self.copies,
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            "verified_ok": self.verified_ok,
            "message": self.message,
        }


@dataclass(frozen=True)
class BackupEvent:
    """A verification, restore, drill or prune."""

    id: int
    kind: BackupEventKind
    source: str
    backup_id: str | None
    status: BackupEventStatus
    started_at: datetime
    finished_at: datetime
    message: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Return the event as JSON-ready data."""
        return {
            "id": self.id,
            "kind": self.kind,
            "source": self.source,
            "backup_id": self.backup_id,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "message": self.message,
            "detail": self.detail,
        }


class BackupCatalog:
    """Reads and writes the ``backups`` and ``backup_events`` tables."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self._engine = engine
        self._lock = lock

    def add(self, record: BackupRecord) -> None:
        """Insert a backup attempt."""
        with self._lock, self._engine.begin() as connection:
            connection.execute(
                insert(backups).values(
                    id=record.id,
                    source=record.source,
                    status=record.status,
                    started_at=record.started_at,
                    finished_at=record.finished_at,
                    raw_bytes=record.raw_bytes,
                    stored_bytes=record.stored_bytes,
                    location=record.location,
                    copies=record.copies,
                    verified_at=record.verified_at,
                    verified_ok=record.verified_ok,
                    message=record.message,
                    detail=record.detail,
                )
            )

    def mark(self, backup_id: str, **values: Any) -> None:
        """Update fields of one backup (status, copies, verified_at, verified_ok, message)."""
        with self._lock, self._engine.begin() as connection:
            connection.execute(update(backups).where(backups.c.id == backup_id).values(**values))

    def get(self, backup_id: str) -> BackupRecord | None:
        """Return one backup, or None."""
        with self._engine.connect() as connection:
            row = connection.execute(select(backups).where(backups.c.id == backup_id)).first()
        return _record(row._mapping) if row is not None else None

    def records(
        self,
        source: str | None = None,
        *,
        limit: int = 500,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[BackupRecord]:
        """Return backups (of one source; started in ``[since, until)``), newest first."""
        query = select(backups).order_by(backups.c.started_at.desc()).limit(limit)
        if source is not None:
            query = query.where(backups.c.source == source)
        if since is not None:
            query = query.where(backups.c.started_at >= since)
        if until is not None:
            query = query.where(backups.c.started_at < until)
        with self._engine.connect() as connection:
            return [_record(row._mapping) for row in connection.execute(query)]

    def add_event(
        self,
        *,
        kind: BackupEventKind,
        source: str,
        backup_id: str | None,
        status: BackupEventStatus,
        started_at: datetime,
        finished_at: datetime,
        message: str,
        detail: dict[str, Any],
    ) -> int:
        """Record a verification, restore, drill or prune; return its id."""
        with self._lock, self._engine.begin() as connection:
            result = connection.execute(
                insert(backup_events).values(
                    kind=kind,
                    source=source,
                    backup_id=backup_id,
                    status=status,
                    started_at=started_at,
                    finished_at=finished_at,
                    message=message,
                    detail=detail,
                )
            )
            return inserted_id(result)

    def events(
        self,
        *,
        source: str | None = None,
        kind: BackupEventKind | None = None,
        limit: int = 200,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[BackupEvent]:
        """Return events (started in ``[since, until)``), newest first."""
        query = select(backup_events).order_by(backup_events.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(backup_events.c.started_at >= since)
        if until is not None:
            query = query.where(backup_events.c.started_at < until)
        if source is not None:
            query = query.where(backup_events.c.source == source)
        if kind is not None:
            query = query.where(backup_events.c.kind == kind)
        with self._engine.connect() as connection:
            return [
                BackupEvent(
                    id=row.id,
                    kind=BackupEventKind(row.kind),
                    source=row.source,
                    backup_id=row.backup_id,
                    status=BackupEventStatus(row.status),
                    started_at=row.started_at,
                    finished_at=row.finished_at,
                    message=row.message,
                    detail=dict(row.detail or {}),
                )
                for row in connection.execute(query)
            ]

    def prune(self, before: datetime) -> int:
        """Delete events and removed/failed backup rows older than ``before``."""
        with self._lock, self._engine.begin() as connection:
            gone = connection.execute(
                delete(backup_events).where(backup_events.c.finished_at < before)
            ).rowcount
            gone += connection.execute(
                delete(backups).where(
                    backups.c.status.in_((BackupStatus.REMOVED, BackupStatus.FAILED)),
                    backups.c.started_at < before,
                )
            ).rowcount
        return int(gone)


def _record(row: Any) -> BackupRecord:
    return BackupRecord(
        id=row["id"],
        source=row["source"],
        status=BackupStatus(row["status"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        raw_bytes=row["raw_bytes"],
        stored_bytes=row["stored_bytes"],
        location=row["location"],
        copies=list(row["copies"] or []),
        verified_at=row["verified_at"],
        verified_ok=row["verified_ok"],
        message=row["message"],
        detail=dict(row["detail"] or {}),
    )
