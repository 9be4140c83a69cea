"""mysql.analyze and mysql.optimize: ``ANALYZE TABLE`` or ``OPTIMIZE TABLE`` of named
tables, one at a time, under limits, with sizes before and after.

* **Names.** Only plain SQL names (``table`` or ``database.table``, see
  ``tasks/sql/session.py``) are accepted, checked when the config is loaded, and each part
  is backtick-quoted: a name never becomes SQL text of its own. A bare name is looked up in
  the DSN's database.
* **Limits.** The session sets ``lock_wait_timeout`` and ``innodb_lock_wait_timeout`` (how
  long a statement waits for a metadata or row lock) and the statement limit
  (``max_statement_time`` on MariaDB; MySQL's ``max_execution_time`` covers SELECT only, so
  there the step's timeout, as the client's read timeout, bounds the statement).
  ``OPTIMIZE TABLE`` of an InnoDB table is a table rebuild (online DDL): writes go on while
  it copies, and it needs the table's metadata lock briefly at the start and end.
* **Errors as rows.** MySQL reports a table ANALYZE/OPTIMIZE could not handle (no such
  table, a corrupt one; MariaDB a lock wait past ``lock_wait_timeout`` too) as result rows
  with ``Msg_type`` ``error``, not as an exception; the run reads every row and counts such
  a table as failed, with the server's text.
* **Dry run**: the exact statements, with each table's size and free space now.
* **Figures**, per table: ``bytes_before:<db.table>``/``bytes_after:...`` (DATA_LENGTH +
  INDEX_LENGTH) and ``free_before:...``/``free_after:...`` (DATA_FREE); the sums
  ``bytes_before``, ``bytes_after``, ``free_before``, ``free_after``; ``tables_done`` and
  ``failed``. A run with a failed table goes on with the others and then fails naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel
from upkeep.core.text import format_bytes
from upkeep.probes.base import ProbeContext, TargetUnreachable
from upkeep.probes.mysql import (
    MysqlTarget,
    describe_error,
    error_code,
    run_session,
    set_session_limits,
)
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan
from upkeep.tasks.postgres.common import MAX_NAMES, LimitedParams, checked_names

if TYPE_CHECKING:
    from pymysql.connections import Connection

# Server error codes of a statement stopped by its limits: lock waits (ER_LOCK_WAIT_TIMEOUT,
# ER_LOCK_DEADLOCK) and the statement limit (MySQL's ER_QUERY_TIMEOUT, MariaDB's
# ER_STATEMENT_TIMEOUT).
LOCK_WAIT_CODES = frozenset({1205, 1213})
STATEMENT_TIMEOUT_CODES = frozenset({3024, 1969})
# A dropped session (CR_SERVER_GONE_ERROR, CR_SERVER_LOST): the target failing, not a table.
CONNECTION_LOST_CODES = frozenset({2006, 2013})

TABLE_FIGURES = (
    "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0), "
    "COALESCE(DATA_FREE, 0) FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s "
    "AND TABLE_TYPE = 'BASE TABLE'"
)


class MysqlTablesParams(LimitedParams):
    """Params of ``mysql.analyze`` and ``mysql.optimize``: the tables and the limits (their
    check and the step's cap are ``LimitedParams``'s; the PostgreSQL-only ``limits_sql`` is
    not used here)."""

    tables: list[str] = Field(
        min_length=1, max_length=MAX_NAMES, description="tables, `name` or `database.name`"
    )
    lock_timeout: Duration = Field(
        default=timedelta(seconds=5),
        description="lock_wait_timeout and innodb_lock_wait_timeout (whole seconds, at "
        "least 1): how long a statement waits for a lock before giving up",
    )
    statement_timeout: Duration = Field(
        default=timedelta(minutes=30),
        description="how long one statement (one table) may run; never longer than the step",
    )

    @field_validator("tables")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return checked_names(value)


def quoted(schema: str, name: str) -> str:
    """Given a checked database and table name, return them backtick-quoted."""
    return f"`{schema}`.`{name}`"


@dataclass(frozen=True)
class TableSize:
    """A table's size (data + indexes) and free space at one moment."""

    schema: str
    name: str
    size: int
    free: int

    @property
    def qualified(self) -> str:
        """Return ``database.table`` for people and figures."""
        return f"{self.schema}.{self.name}"

    def describe(self) -> str:
        """Return the size and free space for people."""
        return f"{format_bytes(self.size)} data+index, {format_bytes(self.free)} free"


def table_size(connection: Connection[Any], written: str) -> TableSize | None:
    """Given a connection and a table name as written, return its size now; None if the
    server has no such base table (a bare name is looked up in the DSN's database)."""
    schema, _, name = written.rpartition(".")
    with connection.cursor() as cursor:
        cursor.execute(TABLE_FIGURES, (schema or None, name))
        row = cursor.fetchone()
    if row is None:
        return None
    return TableSize(str(row[0]), str(row[1]), int(row[2]), int(row[3]))


def read_result_rows(rows: list[tuple[Any, ...]]) -> tuple[list[str], str]:
    """Given the result rows of ANALYZE/OPTIMIZE TABLE (Table, Op, Msg_type, Msg_text),
    return the texts of its error rows and its notes and warnings joined for people.

    MySQL reports a table it could not handle as an ``Error`` row (any case), not as an
    exception: a caller that ignores the rows would count a failure as done.
    """
    errors = [str(row[3]) for row in rows if str(row[2]).lower() == "error"]
    notes = "; ".join(str(row[3]) for row in rows if str(row[2]).lower() in ("note", "warning"))
    return errors, notes


def _probe_context(context: TaskContext) -> ProbeContext:
    """Given a task's context, return the probe context whose timeout bounds the session."""
    return ProbeContext(timeout=context.timeout, http=context.http, redactor=context.redactor)


@dataclass
class _Done:
    """What a run did to one table: sizes before and after, or why it failed."""

    before: TableSize | None
    after: TableSize | None = None
    problem: str | None = None
    notes: str = ""


class _TableTask(Task[MysqlTarget, MysqlTablesParams]):
    """A table statement run on each named table in turn."""

    target_kinds: ClassVar[tuple[str, ...]] = ("mysql",)
    target_required: ClassVar[bool] = True
    verb: ClassVar[str]

    async def plan(
        self, target: MysqlTarget, params: MysqlTablesParams, context: TaskContext
    ) -> TaskPlan:
        """Given the target and tables, return the exact statements with each table's size
        now; change nothing. A missing table is the plan's finding ("the run would fail:
        ..."), not a failure of the dry run; raise TaskFailed if the server cannot be
        reached."""

        def work(connection: Connection[Any]) -> list[TableSize | None]:
            return [table_size(connection, name) for name in params.tables]

        try:
            sizes, _ = await run_session(target, _probe_context(context), work)
        except TargetUnreachable as error:
            raise TaskFailed(str(error)) from error
        missing = [name for name, size in zip(params.tables, sizes, strict=True) if not size]
        changes = [
            Change(
                self.verb.split()[0].lower(),
                size.qualified,
                f"{self.verb} {quoted(size.schema, size.name)} (now {size.describe()})",
            )
            for size in sizes
            if size is not None
        ]
        if missing:
            return TaskPlan(
                changes=changes,
                note=f"the run would fail: MySQL has no table {', '.join(missing)}",
            )
        statement_s = params.statement_s(context.timeout_s)
        return TaskPlan(
            changes=changes,
            note=f"lock waits {max(1, round(params.lock_timeout.total_seconds()))}s, "
            f"each statement at most {statement_s:g}s",
        )

    async def run(
        self, target: MysqlTarget, params: MysqlTablesParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the target and tables, run the statement on each in turn, reading its
        result rows, and return sizes before and after. Raise TaskFailed if the server
        cannot be reached, or (after the others are done) naming each table that does not
        exist, hit a limit, or was reported with an error row."""
        import pymysql

        statement_s = params.statement_s(context.timeout_s)
        lock_s = params.lock_timeout.total_seconds()

        def one(connection: Connection[Any], name: str) -> _Done:
            before = table_size(connection, name)
            if before is None:
                return _Done(None, problem=f"{name}: no such table")
            try:
                with connection.cursor() as cursor:
                    cursor.execute(f"{self.verb} {quoted(before.schema, before.name)}")
                    rows = [tuple(row) for row in cursor.fetchall()]
            except pymysql.err.MySQLError as error:
                code = error_code(error)
                if code in CONNECTION_LOST_CODES:
                    raise
                if code in LOCK_WAIT_CODES:
                    why = f"waited longer than lock_timeout ({max(1, round(lock_s))}s)"
                elif code in STATEMENT_TIMEOUT_CODES:
                    why = f"ran longer than statement_timeout ({statement_s:g}s)"
                else:
                    why = describe_error(error)
                return _Done(before, problem=f"{before.qualified}: {why}")
            errors, notes = read_result_rows(rows)
            after = table_size(connection, name)
            if errors:
                return _Done(before, after, f"{before.qualified}: {'; '.join(errors)}", notes)
            return _Done(before, after, notes=notes)

        def work(connection: Connection[Any]) -> list[_Done]:
            set_session_limits(connection, statement_s=statement_s, lock_wait_s=lock_s)
            return [one(connection, name) for name in params.tables]

        try:
            done, _ = await run_session(target, _probe_context(context), work)
        except TargetUnreachable as error:
            raise TaskFailed(str(error)) from error
        return self._outcome(done)

    def _outcome(self, done: list[_Done]) -> TaskOutcome:
        """Given what was done to each table, return the outcome; raise TaskFailed naming
        the tables that failed, if any."""
        outcome = TaskOutcome()
        sums = {"bytes_before": 0, "bytes_after": 0, "free_before": 0, "free_after": 0}
        problems: list[str] = []
        for item in done:
            if item.problem is not None:
                problems.append(item.problem)
            if item.before is None or item.after is None or item.problem is not None:
                continue
            before, after = item.before, item.after
            outcome.changes.append(
                Change(
                    self.verb.split()[0].lower(),
                    before.qualified,
                    f"{before.describe()} → {after.describe()}"
                    + (f" ({item.notes})" if item.notes else ""),
                )
            )
            for key, value in (
                ("bytes_before", before.size),
                ("bytes_after", after.size),
                ("free_before", before.free),
                ("free_after", after.free),
            ):
                outcome.figures[f"{key}:{before.qualified}"] = value
                sums[key] += value
        outcome.figures.update(sums)
        outcome.figures["tables_done"] = len(outcome.changes)
        outcome.figures["failed"] = len(problems)
        summary = (
            f"{len(outcome.changes)} table(s): data+index "
            f"{format_bytes(sums['bytes_before'])} → {format_bytes(sums['bytes_after'])}, "
            f"free {format_bytes(sums['free_before'])} → {format_bytes(sums['free_after'])}"
        )
        if problems:
            done_too = f" (done: {summary})" if outcome.changes else ""
            raise TaskFailed(f"{self.verb} failed for {'; '.join(problems)}{done_too}")
        outcome.message = summary
        return outcome


class MysqlAnalyze(_TableTask):
    """ANALYZE TABLE of named tables: refresh the optimizer's key distribution statistics."""

    name: ClassVar[str] = "mysql.analyze"
    summary: ClassVar[str] = (
        "ANALYZE TABLE of named tables under lock-wait and statement limits; error rows fail."
    )
    Params: ClassVar[type[StrictModel]] = MysqlTablesParams
    verb: ClassVar[str] = "ANALYZE TABLE"


class MysqlOptimize(_TableTask):
    """OPTIMIZE TABLE of named tables: rebuild them to return free space (DATA_FREE)."""

    name: ClassVar[str] = "mysql.optimize"
    summary: ClassVar[str] = (
        "OPTIMIZE TABLE (an online rebuild on InnoDB) of named tables under limits; "
        "size and DATA_FREE before/after."
    )
    Params: ClassVar[type[StrictModel]] = MysqlTablesParams
    verb: ClassVar[str] = "OPTIMIZE TABLE"
