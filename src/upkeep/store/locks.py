"""Serialising read-modify-write transactions across processes sharing one store.

Two processes may work on the same rows at once: the daemon and ``upkeep check`` from
cron, or two daemons for a moment during a takeover. A thread lock covers neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

ALERTING_LOCK_KEY = 0x7570_6B61  # "upka": alert state changes
OUTBOX_CLAIM_LOCK_KEY = 0x7570_6B6F  # "upko": outbox claims


def serialise(connection: Connection, key: int) -> bool:
    """Given a connection that has not yet read or written in its transaction and a lock
    key, hold an exclusive lock until the transaction ends; return whether this is
    PostgreSQL.

    PostgreSQL: a transaction-level advisory lock on ``key``, released at commit or
    rollback (or when the session dies). SQLite: ``BEGIN IMMEDIATE`` takes the database's
    write lock now, waiting up to the busy timeout; pysqlite would otherwise begin the
    transaction only at the first write, after our reads, so another process could change
    what we read before we write.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return True
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    return False
