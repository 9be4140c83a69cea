"""Serialising read-modify-write transactions across processes sharing one store.

Two processes may work on the same rows at once: the daemon and ``upkeep check`` from
cron, or two daemons for a moment during a takeover. A thread lock covers neither.

On PostgreSQL the locks are advisory locks. PostgreSQL already keeps them apart per
database; ``lock_key`` folds the store's schema into each key as well, so two stores in
different schemas of one database never wait for each other (nor share a leader).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

ALERTING_LOCK_KEY = 0x7570_6B61  # "upka": alert state changes
OUTBOX_CLAIM_LOCK_KEY = 0x7570_6B6F  # "upko": outbox claims
MIGRATION_LOCK_KEY = 0x7570_6B65  # "upke": migrations (and moving a store out of public)
LEADER_LOCK_KEY = 0x7570_6B66  # "upkf": the daemon that runs the schedule

SCHEMA_OPTION = "upkeep_schema"
"""The engine execution option that names a PostgreSQL store's schema (see ``Store.open``):
every connection of the store carries it, so whoever takes a lock on one derives the key."""


def lock_key(purpose: int, schema: str | None) -> int:
    """Given a lock's purpose (one of the 31-bit keys above) and the store's schema (None
    for SQLite, which has no advisory locks), return the advisory lock key to take: the
    purpose in the high 32 bits and a hash of the schema in the low 32, a signed 64-bit
    value as ``pg_advisory_lock(bigint)`` takes it. Without a schema, the purpose itself.
    """
    if schema is None:
        return purpose
    digest = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:4], "big")
    return (purpose << 32) | digest


def connection_lock_key(connection: Connection, purpose: int) -> int:
    """Given a connection of a store and a lock's purpose, return that store's key for it."""
    schema = connection.get_execution_options().get(SCHEMA_OPTION)
    return lock_key(purpose, schema if isinstance(schema, str) else None)


def serialise(connection: Connection, purpose: int) -> bool:
    """Given a connection that has not yet read or written in its transaction and a lock's
    purpose, hold an exclusive lock until the transaction ends; return whether this is
    PostgreSQL.

    PostgreSQL: a transaction-level advisory lock on the store's key for ``purpose``,
    released at commit or rollback (or when the session dies). SQLite: ``BEGIN
    IMMEDIATE`` takes the database's write lock now, waiting up to the busy timeout;
    pysqlite would otherwise begin the transaction only at the first write, after our
    reads, so another process could change what we read before we write.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": connection_lock_key(connection, purpose)},
        )
        return True
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    return False
