"""What the PostgreSQL maintenance tasks share: their limits, the tables they name, and
how a statement that hit a limit is told from one that failed."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel
from upkeep.tasks.base import TaskFailed
from upkeep.tasks.sql.session import check_qualified_name, milliseconds

MAX_NAMES = 100
"""The most tables or indexes one step may name."""


class LimitedParams(StrictModel):
    """The limits every PostgreSQL maintenance statement runs under."""

    lock_timeout: Duration = Field(
        default=timedelta(seconds=5),
        description="how long a statement may wait for a lock; it then gives up, so no "
        "reader queues behind it for longer",
    )
    statement_timeout: Duration = Field(
        default=timedelta(minutes=30),
        description="how long one statement (one index, one table) may run",
    )

    @field_validator("lock_timeout", "statement_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    def statement_s(self, step_timeout_s: float) -> float:
        """Given the step's timeout, return the statement timeout used: never longer than
        the step, whose end would otherwise leave the server running the statement."""
        return min(self.statement_timeout.total_seconds(), step_timeout_s)

    def limits_sql(self, step_timeout_s: float) -> str:
        """Given the step's timeout, return the settings the run starts with, as SQL."""
        return (
            f"SET lock_timeout = '{milliseconds(self.lock_timeout.total_seconds())}'; "
            f"SET statement_timeout = '{milliseconds(self.statement_s(step_timeout_s))}'"
        )


class NotFound(TaskFailed):
    """A named table or index does not exist (a dry run reports it as its finding)."""


def checked_names(values: list[str]) -> list[str]:
    """Given names as written, return them; ValueError for a name that is not ``name`` or
    ``schema.name``, or a name given twice."""
    seen: set[str] = set()
    for value in values:
        check_qualified_name(value)
        if value in seen:
            raise ValueError(f"{value!r} is given twice")
        seen.add(value)
    return values


def hit_limit(error: BaseException) -> str | None:
    """Given an error of a statement, return which limit it hit (``lock_timeout`` or
    ``statement_timeout``) or None if it failed otherwise."""
    from psycopg import errors

    if isinstance(error, errors.LockNotAvailable):
        return "lock_timeout"
    if isinstance(error, errors.QueryCanceled):
        return "statement_timeout"
    return None


def human_bytes(size: int) -> str:
    """Return a size for people (``8.0 kB``, ``2.3 MB``): decimal units as PostgreSQL's
    ``pg_size_pretty`` is not (it uses 1024), so say ``kB`` only for 1000."""
    if size < 1000:
        return f"{size} B"
    value = size / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
