"""Which daemon runs the schedule: exactly one per store, and another takes over quickly.

PostgreSQL store
    The leader holds a session-level advisory lock (``pg_try_advisory_lock``) on a
    connection of its own, its key derived from the store's schema (one leader per
    store, not per database). If the leader dies, even with ``kill -9``, PostgreSQL ends its
    session and releases the lock; a standby retrying every ``engine.takeover_interval``
    takes over within that interval (plus TCP keepalive time if the leader's host
    vanished without closing the socket). The leader checks its connection on the same
    interval and steps down if it is lost. Runbook firings are additionally claimed per
    firing (the ``runs`` unique key), so even two leaders for a moment cannot run one
    firing twice.

SQLite store
    Only processes on one host can share the file, so an exclusive ``flock`` on
    ``<database>.leader.lock`` is the lock; the kernel releases it when the holder dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from upkeep.store.locks import LEADER_LOCK_KEY, lock_key

if TYPE_CHECKING:
    from upkeep.store.store import Store


class Leadership(ABC):
    """The right to run the schedule of one store."""

    @abstractmethod
    async def try_acquire(self) -> bool:
        """Try once to become the leader; return whether this process now leads."""

    @abstractmethod
    async def still_held(self) -> bool:
        """Return whether this process still leads (its lock is intact)."""

    @abstractmethod
    async def release(self) -> None:
        """Give up the lead (a no-op if not held)."""


class PostgresLeadership(Leadership):
    """Leadership through a session-level advisory lock on a dedicated connection."""

    def __init__(self, store: Store, purpose: int = LEADER_LOCK_KEY) -> None:
        self._store = store
        # The store's own key: daemons of stores in other schemas of the database each lead.
        self._key = lock_key(purpose, store.schema)
        self._connection: Any = None

    def _acquire(self) -> bool:
        if self._connection is None:
            self._connection = self._store.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            )
        held = bool(
            self._connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            ).scalar()
        )
        if not held:
            self._close()
        return held

    def _check(self) -> bool:
        if self._connection is None:
            return False
        try:
            # The lock lives as long as this session; a working session means we hold it.
            self._connection.execute(text("SELECT 1")).scalar()
        except Exception:  # noqa: BLE001 - any failure of the session means the lock is gone
            self._close()
            return False
        return True

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.invalidate()
                self._connection.close()
            self._connection = None

    def _release(self) -> None:
        if self._connection is None:
            return
        with contextlib.suppress(Exception):
            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        self._close()

    async def try_acquire(self) -> bool:
        """Try once to take the advisory lock; return whether it is held."""
        try:
            return await asyncio.to_thread(self._acquire)
        except Exception:  # noqa: BLE001 - an unreachable store means "not the leader", retried later
            await asyncio.to_thread(self._close)
            return False

    async def still_held(self) -> bool:
        """Return whether the lock's session is still alive."""
        return await asyncio.to_thread(self._check)

    async def release(self) -> None:
        """Unlock and close the dedicated connection."""
        await asyncio.to_thread(self._release)


class FileLeadership(Leadership):
    """Leadership through an exclusive ``flock`` on a file beside the SQLite database."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._descriptor: int | None = None

    async def try_acquire(self) -> bool:
        """Try once to lock the file without waiting; return whether it is held."""
        if self._descriptor is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self._descriptor = descriptor
        return True

    async def still_held(self) -> bool:
        """Return whether this process holds the lock (a flock cannot be taken away)."""
        return self._descriptor is not None

    async def release(self) -> None:
        """Unlock and close the file."""
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None


def leadership_for(store: Store) -> Leadership:
    """Given an open store, return the leadership mechanism that fits its backend."""
    url = store.engine.url
    if url.get_backend_name() == "postgresql":
        return PostgresLeadership(store)
    database = url.database or ""
    if not database or database == ":memory:":
        # An in-memory store cannot be shared; a lock in the working directory still stops
        # two daemons started from the same place.
        return FileLeadership(Path.cwd() / ".upkeep" / "memory.leader.lock")
    return FileLeadership(Path(f"{database}.leader.lock"))
