"""postgres.vacuum and postgres.analyze: ``VACUUM (ANALYZE)`` or ``ANALYZE`` of named
tables, one at a time, under limits.

* **Never VACUUM FULL.** ``full`` is accepted only as ``false``: a full vacuum rewrites the
  table under an ACCESS EXCLUSIVE lock for its whole duration, which blocks every reader.
  A plain ``VACUUM`` takes SHARE UPDATE EXCLUSIVE, which readers and writers do not wait
  for.
* **Limits.** The session runs in autocommit (``VACUUM`` cannot run in a transaction
  block) with ``lock_timeout`` and ``statement_timeout`` (never longer than the step's
  timeout). A table whose lock is not obtained in time is given up; the run goes on with
  the others and fails at the end naming it.
* **Dry run**: the exact statements, with each table's dead rows and size now.
* **Figures**, per table: ``dead_rows_before:<schema.table>``/``dead_rows_after:...``
  (``n_dead_tup`` of ``pg_stat_user_tables``, which the cumulative statistics keep, so
  approximate) and ``bytes_before:...``/``bytes_after:...`` (``pg_table_size``); sums
  ``dead_rows_before``, ``dead_rows_after``, ``bytes_before``, ``bytes_after``; and
  ``tables_done``, ``gave_up``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from upkeep.core.text import one_line
from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan
from upkeep.tasks.postgres.common import (
    MAX_NAMES,
    LimitedParams,
    NotFound,
    checked_names,
    hit_limit,
    human_bytes,
)
from upkeep.tasks.sql.session import connect_limited, quoted_regclass

if TYPE_CHECKING:
    from psycopg import AsyncConnection

TABLE_FIGURES = """
SELECT n.nspname, c.relname, coalesce(s.n_dead_tup, 0), pg_table_size(c.oid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'm', 't')
"""


class TablesParams(LimitedParams):
    """Params of ``postgres.analyze``: the tables and the limits."""

    tables: list[str] = Field(
        min_length=1, max_length=MAX_NAMES, description="tables, `name` or `schema.name`"
    )

    @field_validator("tables")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return checked_names(value)


class VacuumParams(TablesParams):
    """Params of ``postgres.vacuum``."""

    analyze: bool = Field(default=True, description="VACUUM (ANALYZE): refresh statistics too")
    full: Literal[False] = Field(
        default=False,
        description="only false: VACUUM FULL locks out every reader while it rewrites",
    )


@dataclass(frozen=True)
class TableFigures:
    """A table's names, dead rows and size at one moment."""

    schema: str
    name: str
    dead_rows: int
    size: int

    @property
    def qualified(self) -> str:
        """Return ``schema.name`` for people and figures."""
        return f"{self.schema}.{self.name}"


async def table_figures(connection: AsyncConnection[Any], name: str) -> TableFigures:
    """Given a table name as written, return its figures now; NotFound if no such table."""
    row = await (await connection.execute(TABLE_FIGURES, (quoted_regclass(name),))).fetchone()
    if row is None:
        raise NotFound(f"PostgreSQL has no table {name}")
    return TableFigures(str(row[0]), str(row[1]), int(row[2]), int(row[3]))


class _TableTask(Task[PostgresTarget, TablesParams]):
    """A statement run on each named table in turn (VACUUM or ANALYZE)."""

    target_kinds: ClassVar[tuple[str, ...]] = ("postgres",)
    target_required: ClassVar[bool] = True
    verb: ClassVar[str]

    def statement(self, params: TablesParams) -> str:
        """Return the statement before the table's name (``VACUUM (ANALYZE)``)."""
        del params
        return self.verb

    def _sql(self, params: TablesParams, table: TableFigures) -> Any:
        from psycopg import sql

        return sql.SQL(self.statement(params) + " {}").format(
            sql.Identifier(table.schema, table.name)
        )

    def _text(self, params: TablesParams, table: TableFigures) -> str:
        return f'{self.statement(params)} "{table.schema}"."{table.name}"'

    async def _connect(
        self, target: PostgresTarget, params: TablesParams, context: TaskContext, suffix: str
    ) -> AsyncConnection[Any]:
        return await connect_limited(
            target,
            context.timeout_s,
            f"upkeep {self.name}{suffix}",
            statement_s=params.statement_s(context.timeout_s),
            lock_s=params.lock_timeout.total_seconds(),
        )

    async def plan(
        self, target: PostgresTarget, params: TablesParams, context: TaskContext
    ) -> TaskPlan:
        """Given the target and params, return the statements the run would execute with
        each table's dead rows and size now; change nothing.

        A table not found is the plan's finding ("the run would fail: ..."); raise
        TaskFailed if the server cannot be reached or the catalog cannot be read.
        """
        import psycopg

        connection = await self._connect(target, params, context, " (dry run)")
        try:
            tables = [await table_figures(connection, name) for name in params.tables]
        except NotFound as error:
            return TaskPlan(note=f"the run would fail: {error}")
        except psycopg.Error as error:
            raise TaskFailed(f"cannot read the tables: {one_line(error)}") from error
        finally:
            await connection.close()
        return TaskPlan(
            changes=[
                Change(
                    self.verb.lower(),
                    table.qualified,
                    f"{self._text(params, table)}; now {table.dead_rows} dead rows, "
                    f"{human_bytes(table.size)} ({table.size} B)",
                )
                for table in tables
            ],
            note=params.limits_sql(context.timeout_s),
        )

    async def run(
        self, target: PostgresTarget, params: TablesParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the target and params, run the statement on each table; return the
        changes with dead rows and size before and after.

        Raise TaskFailed if the server cannot be reached, a table is not found, a statement
        fails, or a table was given up on a limit (the message says what was done).
        """
        import psycopg

        outcome = TaskOutcome()
        figures = outcome.figures
        totals = {"dead_rows_before": 0, "dead_rows_after": 0, "bytes_before": 0, "bytes_after": 0}
        gave_up: list[str] = []
        connection = await self._connect(target, params, context, "")
        try:
            for name in params.tables:
                before = await table_figures(connection, name)
                try:
                    await connection.execute(self._sql(params, before))
                except psycopg.Error as error:
                    limit = hit_limit(error)
                    if limit is None:
                        raise
                    gave_up.append(f"{before.qualified}: {limit} hit ({one_line(error)})")
                    continue
                after = await table_figures(connection, name)
                for key, value in (
                    ("dead_rows_before", before.dead_rows),
                    ("dead_rows_after", after.dead_rows),
                    ("bytes_before", before.size),
                    ("bytes_after", after.size),
                ):
                    figures[f"{key}:{before.qualified}"] = value
                    totals[key] += value
                outcome.changes.append(
                    Change(
                        self.verb.lower(),
                        before.qualified,
                        f"dead rows {before.dead_rows} -> {after.dead_rows}, "
                        f"{human_bytes(before.size)} -> {human_bytes(after.size)} "
                        f"(before {before.size} B, after {after.size} B)",
                    )
                )
        except psycopg.Error as error:
            done = ", ".join(change.subject for change in outcome.changes)
            raise TaskFailed(
                one_line(error) + (f"; done before: {done}" if done else "")
            ) from error
        finally:
            await connection.close()
        figures.update(tables_done=len(outcome.changes), gave_up=len(gave_up), **totals)
        outcome.message = (
            f"{self.verb.lower()} of {len(outcome.changes)} table(s): dead rows "
            f"{totals['dead_rows_before']} -> {totals['dead_rows_after']}, "
            f"{human_bytes(totals['bytes_before'])} -> {human_bytes(totals['bytes_after'])}"
        )
        if gave_up:
            raise TaskFailed(f"{outcome.message}; gave up on {len(gave_up)}: " + "; ".join(gave_up))
        return outcome


class PostgresVacuum(_TableTask):
    """VACUUM (ANALYZE) the named tables; never VACUUM FULL (module docstring)."""

    name: ClassVar[str] = "postgres.vacuum"
    summary: ClassVar[str] = (
        "VACUUM (ANALYZE) (or plain VACUUM with `analyze: false`) each named table in "
        "autocommit under `lock_timeout` and `statement_timeout`; `full` may only be false "
        "(VACUUM FULL locks out readers). A table whose lock is not obtained in time is "
        "given up and the step fails naming it. The dry run lists the statements with dead "
        "rows and sizes now; figures: dead rows (n_dead_tup) and pg_table_size before and "
        "after, per table and summed, tables_done, gave_up."
    )
    Params: ClassVar[type[LimitedParams]] = VacuumParams
    verb: ClassVar[str] = "VACUUM"

    def statement(self, params: TablesParams) -> str:
        """Return ``VACUUM (ANALYZE)`` or ``VACUUM``."""
        analyze = isinstance(params, VacuumParams) and params.analyze
        return "VACUUM (ANALYZE)" if analyze else "VACUUM"


class PostgresAnalyze(_TableTask):
    """ANALYZE the named tables (module docstring)."""

    name: ClassVar[str] = "postgres.analyze"
    summary: ClassVar[str] = (
        "ANALYZE each named table in autocommit under `lock_timeout` and "
        "`statement_timeout`; a table whose lock is not obtained in time is given up and "
        "the step fails naming it. The dry run lists the statements with dead rows and "
        "sizes now; figures as postgres.vacuum."
    )
    Params: ClassVar[type[LimitedParams]] = TablesParams
    verb: ClassVar[str] = "ANALYZE"
