"""postgres.terminate: end sessions idle in a transaction for longer than a limit.

A session left ``idle in transaction`` holds its locks and its snapshot: VACUUM keeps every
row it may still see and DDL queues behind it. This task ends such sessions with
``pg_terminate_backend``.

* **Only client sessions.** ``backend_type = 'client backend'`` only (never autovacuum,
  WAL senders or other background workers), never a superuser's session, never a
  replication connection, never the task's own session.
* **Filters.** ``users``, ``databases`` and ``applications`` (exact names) narrow the
  sessions further; empty means any.
* **Dry run** lists each session it would end: pid, user@database, application and how
  long it has been idle. Never the query text: it may hold secrets.
* **Run**: ``pg_terminate_backend`` on each, recording the pids ended and those that could
  not be (no privilege, already gone). Not ending one fails the step only with
  ``fail_if_not_ended``.
* **Figures**: ``sessions_found``, ``sessions_ended``, ``sessions_not_ended``,
  ``longest_idle_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel
from upkeep.core.text import one_line
from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan
from upkeep.tasks.postgres.common import MAX_NAMES
from upkeep.tasks.sql.session import connect_limited, milliseconds

if TYPE_CHECKING:
    from psycopg import AsyncConnection

STATEMENT_S = 10.0
"""The longest one catalog read or terminate call may run."""

# Superusers and replication roles are excluded through pg_roles; a session whose role
# was dropped meanwhile (no row) is left alone too.
IDLE_SESSIONS = """
SELECT a.pid, a.usename, a.datname, coalesce(a.application_name, ''),
       extract(epoch FROM now() - a.state_change)::float8
FROM pg_stat_activity a
JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.backend_type = 'client backend'
  AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND a.pid <> pg_backend_pid()
  AND NOT r.rolsuper AND NOT r.rolreplication
  AND now() - a.state_change > make_interval(secs => %(limit_s)s)
  AND (cardinality(%(users)s::text[]) = 0 OR a.usename = ANY(%(users)s::text[]))
  AND (cardinality(%(databases)s::text[]) = 0 OR a.datname = ANY(%(databases)s::text[]))
  AND (cardinality(%(applications)s::text[]) = 0
       OR a.application_name = ANY(%(applications)s::text[]))
ORDER BY a.state_change, a.pid
"""


def _names(values: list[str]) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if not value or len(value) > 63:
            raise ValueError(f"{value!r} must be 1 to 63 characters")
        if value in seen:
            raise ValueError(f"{value!r} is given twice")
        seen.add(value)
    return values


class TerminateParams(StrictModel):
    """Params of ``postgres.terminate``."""

    idle_longer_than: Duration = Field(
        description="end sessions idle in a transaction for longer than this (at least 1s)"
    )
    users: list[str] = Field(
        default_factory=list, max_length=MAX_NAMES, description="only these users (any if empty)"
    )
    databases: list[str] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="only sessions on these databases (any if empty)",
    )
    applications: list[str] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="only sessions with these application names (any if empty)",
    )
    fail_if_not_ended: bool = Field(
        default=False,
        description="fail the step if a session could not be ended (no privilege); by "
        "default it is recorded and the step succeeds",
    )

    @field_validator("idle_longer_than")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value

    @field_validator("users", "databases", "applications")
    @classmethod
    def _checked(cls, value: list[str]) -> list[str]:
        return _names(value)


@dataclass(frozen=True)
class IdleSession:
    """A session idle in a transaction: who, where, and for how long (never its query)."""

    pid: int
    user: str
    database: str
    application: str
    idle_s: float

    def describe(self) -> str:
        """Return the session for people: ``pid 123 app@db (application x), idle 65s``."""
        application = self.application or "(none)"
        return (
            f"pid {self.pid} {self.user}@{self.database} (application {application}), "
            f"idle in transaction for {self.idle_s:.0f}s"
        )


async def idle_sessions(
    connection: AsyncConnection[Any], params: TerminateParams
) -> list[IdleSession]:
    """Given a connection and the params, return the sessions the params select, the
    longest idle first."""
    cursor = await connection.execute(
        IDLE_SESSIONS,
        {
            "limit_s": params.idle_longer_than.total_seconds(),
            "users": params.users,
            "databases": params.databases,
            "applications": params.applications,
        },
    )
    return [
        IdleSession(int(row[0]), str(row[1]), str(row[2]), str(row[3]), float(row[4]))
        for row in await cursor.fetchall()
    ]


class PostgresTerminate(Task[PostgresTarget, TerminateParams]):
    """End client sessions idle in a transaction past a limit (module docstring)."""

    name: ClassVar[str] = "postgres.terminate"
    summary: ClassVar[str] = (
        "End client sessions idle in a transaction longer than `idle_longer_than` (at "
        "least 1s) with pg_terminate_backend, optionally only of the given `users`, "
        "`databases` or `applications`; never superuser or replication sessions, "
        "background workers or its own session. The dry run lists pid, user@database, "
        "application and idle time (never the query text). Sessions it may not end are "
        "recorded; they fail the step only with `fail_if_not_ended`. Figures: "
        "sessions_found, sessions_ended, sessions_not_ended, longest_idle_s."
    )
    Params: ClassVar[type[StrictModel]] = TerminateParams
    target_kinds: ClassVar[tuple[str, ...]] = ("postgres",)
    target_required: ClassVar[bool] = True

    async def _connect(
        self, target: PostgresTarget, context: TaskContext, suffix: str
    ) -> AsyncConnection[Any]:
        return await connect_limited(
            target,
            context.timeout_s,
            f"upkeep {self.name}{suffix}",
            statement_s=min(STATEMENT_S, context.timeout_s),
            lock_s=min(STATEMENT_S, context.timeout_s),
        )

    async def plan(
        self, target: PostgresTarget, params: TerminateParams, context: TaskContext
    ) -> TaskPlan:
        """Given the target and params, return the sessions the run would end now; change
        nothing. Raise TaskFailed if the server cannot be reached or read."""
        import psycopg

        connection = await self._connect(target, context, " (dry run)")
        try:
            sessions = await idle_sessions(connection, params)
        except psycopg.Error as error:
            raise TaskFailed(f"cannot read pg_stat_activity: {one_line(error)}") from error
        finally:
            await connection.close()
        limit = milliseconds(params.idle_longer_than.total_seconds())
        return TaskPlan(
            changes=[
                Change("terminate", str(session.pid), session.describe()) for session in sessions
            ],
            note=f"sessions idle in transaction longer than {limit} (as of the dry run)",
        )

    async def run(
        self, target: PostgresTarget, params: TerminateParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the target and params, end the selected sessions; return the pids ended
        and those that could not be.

        Raise TaskFailed if the server cannot be reached or read, or if a session could
        not be ended and ``fail_if_not_ended`` is set.
        """
        import psycopg

        outcome = TaskOutcome()
        not_ended: list[str] = []
        connection = await self._connect(target, context, "")
        try:
            sessions = await idle_sessions(connection, params)
            for session in sessions:
                try:
                    cursor = await connection.execute(
                        "SELECT pg_terminate_backend(%s)", (session.pid,)
                    )
                    row = await cursor.fetchone()
                except psycopg.errors.InsufficientPrivilege as error:
                    not_ended.append(f"pid {session.pid}: {one_line(error)}")
                    outcome.changes.append(
                        Change("not ended", str(session.pid), f"{session.describe()}: no privilege")
                    )
                    continue
                if row is None or row[0] is not True:
                    not_ended.append(f"pid {session.pid}: already gone")
                    outcome.changes.append(
                        Change("not ended", str(session.pid), f"{session.describe()}: already gone")
                    )
                    continue
                outcome.changes.append(Change("terminate", str(session.pid), session.describe()))
        except psycopg.Error as error:
            raise TaskFailed(f"cannot end the sessions: {one_line(error)}") from error
        finally:
            await connection.close()
        ended = len(sessions) - len(not_ended)
        outcome.figures.update(
            sessions_found=len(sessions),
            sessions_ended=ended,
            sessions_not_ended=len(not_ended),
            longest_idle_s=round(max((s.idle_s for s in sessions), default=0.0), 3),
        )
        outcome.message = f"ended {ended} of {len(sessions)} session(s) idle in transaction"
        if not_ended:
            outcome.message += "; not ended: " + "; ".join(not_ended)
            if params.fail_if_not_ended:
                raise TaskFailed(outcome.message)
        return outcome
