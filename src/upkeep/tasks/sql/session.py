"""What the database tasks share: the names they accept, and how a PostgreSQL session is
opened and limited.

Names are never interpolated as text: a task accepts only plain SQL names (``SQL_NAME``)
and quotes them with ``psycopg.sql.Identifier``. Limits are set with ``set_config`` and
bound values, so a duration never becomes SQL text either.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from upkeep.core.text import one_line
from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import TaskFailed

if TYPE_CHECKING:
    from psycopg import AsyncConnection

SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
"""A table, schema, index or column name the tasks accept: what needs no quoting in SQL."""

CONNECT_TIMEOUT_CAP_S = 30
"""The longest a task waits for PostgreSQL to accept its connection."""


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a plain SQL name."""
    if not SQL_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a plain SQL name (letters, digits, _ and $, "
            "not starting with a digit)"
        )


def check_qualified_name(value: str) -> str:
    """Given ``name`` or ``schema.name``, return it; raise ValueError unless each part is a
    plain SQL name."""
    parts = value.split(".")
    if len(parts) > 2 or not all(SQL_NAME.fullmatch(part) for part in parts):
        raise ValueError(
            f"{value!r} must be a plain name or schema.name (letters, digits, _ and $, "
            "not starting with a digit)"
        )
    return value


def quoted_regclass(value: str) -> str:
    """Given a checked ``name`` or ``schema.name``, return it double-quoted part by part,
    as ``to_regclass`` reads it (a bound value, never SQL text)."""
    return ".".join(f'"{part}"' for part in value.split("."))


def milliseconds(seconds: float) -> str:
    """Given seconds, return a PostgreSQL duration setting in whole milliseconds (at least 1:
    0 would mean no limit)."""
    return f"{max(1, math.ceil(seconds * 1000))}ms"


async def connect_postgres(
    target: PostgresTarget, timeout_s: float, application_name: str, *, autocommit: bool = False
) -> AsyncConnection[Any]:
    """Given a target, the step's timeout and a name for ``pg_stat_activity``, return an open
    connection whose session time zone is UTC.

    Raise TaskFailed if the server refuses, rejects the login or does not answer within
    ``min(timeout_s, 30)`` seconds.
    """
    import psycopg

    try:
        return await psycopg.AsyncConnection.connect(
            target.dsn,
            connect_timeout=max(1, math.ceil(min(timeout_s, CONNECT_TIMEOUT_CAP_S))),
            application_name=application_name,
            options="-c timezone=UTC",
            autocommit=autocommit,
        )
    except psycopg.OperationalError as error:
        raise TaskFailed(f"cannot connect to PostgreSQL: {one_line(error)}") from error


async def connect_limited(
    target: PostgresTarget,
    timeout_s: float,
    application_name: str,
    *,
    statement_s: float,
    lock_s: float,
) -> AsyncConnection[Any]:
    """Given a target, the step's timeout, a name for ``pg_stat_activity`` and the limits,
    return an autocommit connection whose session runs every statement under them (what
    ``VACUUM``, ``ALTER TABLE`` and ``pg_terminate_backend`` steps need).

    Raise TaskFailed as ``connect_postgres`` does; the connection is closed if the limits
    cannot be set.
    """
    connection = await connect_postgres(target, timeout_s, application_name, autocommit=True)
    try:
        await set_postgres_limits(connection, statement_s=statement_s, lock_s=lock_s, local=False)
    except BaseException:
        await connection.close()
        raise
    return connection


async def set_postgres_limits(
    connection: AsyncConnection[Any], *, statement_s: float, lock_s: float, local: bool
) -> None:
    """Set ``statement_timeout`` and ``lock_timeout`` on ``connection``: for the current
    transaction when ``local``, else for the session (what autocommit statements such as
    ``VACUUM`` and ``REINDEX CONCURRENTLY`` need)."""
    await connection.execute(
        "SELECT set_config('statement_timeout', %s, %s), set_config('lock_timeout', %s, %s)",
        (milliseconds(statement_s), local, milliseconds(lock_s), local),
    )
