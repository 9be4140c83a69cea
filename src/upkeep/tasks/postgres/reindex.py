"""postgres.reindex: rebuild named indexes (or every index of named tables) with
``REINDEX INDEX CONCURRENTLY``, one at a time, after removing the leftovers of an earlier
interrupted rebuild.

* **Leftovers first.** A ``REINDEX ... CONCURRENTLY`` that is interrupted (cancelled,
  its backend killed, a lock or statement timeout in a late phase) leaves an invalid
  index named ``<index>_ccnew`` (``_ccnew1``, ... when the name is taken), or after the
  swap an invalid ``<index>_ccold``; PostgreSQL never removes it, every write keeps
  maintaining it, and the next ``REINDEX ... CONCURRENTLY`` of the table would rebuild it
  too. The run drops each such index on the tables concerned (invalid, named after an
  index the step rebuilds, or after any index of a named table) with ``DROP INDEX
  CONCURRENTLY``. A valid index is never dropped, whatever its name. (A leftover whose
  name PostgreSQL shortened to 63 bytes is not recognised.)
* **One index at a time, under limits.** The session runs in autocommit (a concurrent
  rebuild cannot run in a transaction block) with ``lock_timeout`` and
  ``statement_timeout`` (never longer than the step's timeout). A statement that cannot
  get its lock within ``lock_timeout`` gives up, so readers queued behind it wait at most
  that long; the run then removes what the attempt left behind, goes on with the other
  indexes and fails at the end, naming the indexes it gave up on (the next run retries).
* **Dry run**: the exact statements, in order, with each index's current size.
* **Figures**: ``indexes_reindexed``, ``leftovers_dropped``, ``gave_up``, ``bytes_before``
  and ``bytes_after`` (sums over the rebuilt indexes), and per index
  ``bytes_before:<schema.index>`` and ``bytes_after:<schema.index>`` (``pg_relation_size``
  just before and just after its rebuild); each rebuild is also a change with both sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, ValidatorFunctionWrapHandler, field_validator, model_validator

from upkeep.core.models import validate_with_key_rule
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
from upkeep.tasks.sql.session import connect_postgres, quoted_regclass, set_postgres_limits

if TYPE_CHECKING:
    from psycopg import AsyncConnection

LEFTOVER = re.compile(r"^(?P<index>.+)_cc(?:new|old)[0-9]*$")
"""The name PostgreSQL gives the transient index of a concurrent rebuild."""

INDEXES_OF_TABLE = """
SELECT n.nspname, c.relname, i.indisvalid, pg_relation_size(c.oid), t.oid::int8
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class t ON t.oid = i.indrelid
WHERE i.indrelid = %s::oid AND c.relkind = 'i'
ORDER BY c.relname
"""
"""The plain indexes of one table (partitioned parents are not rebuilt: their partitions'
indexes are, each named or through its table)."""


class ReindexParams(LimitedParams):
    """Params of ``postgres.reindex``."""

    indexes: list[str] = Field(
        default=[],
        max_length=MAX_NAMES,
        description="indexes to rebuild, `name` or `schema.name`",
    )
    tables: list[str] = Field(
        default=[],
        max_length=MAX_NAMES,
        description="tables whose every index is rebuilt, `name` or `schema.name`",
    )

    @field_validator("indexes", "tables")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return checked_names(value)

    @model_validator(mode="wrap")
    @classmethod
    def _something(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> ReindexParams:
        return validate_with_key_rule(cls, data, handler, _names_something)


def _names_something(data: dict[str, Any]) -> str | None:
    """Return the problem of a step that names no index and no table, or None."""
    if not data.get("indexes") and not data.get("tables"):
        return "name at least one of `indexes` or `tables`"
    return None


@dataclass(frozen=True)
class IndexInfo:
    """One index as the catalog shows it now."""

    schema: str
    name: str
    valid: bool
    size: int
    table_oid: int

    @property
    def qualified(self) -> str:
        """Return ``schema.name`` for people and figures."""
        return f"{self.schema}.{self.name}"

    def sql(self, statement: str) -> Any:
        """Given ``REINDEX INDEX CONCURRENTLY`` or ``DROP INDEX CONCURRENTLY IF EXISTS``,
        return it applied to this index, its names quoted as identifiers."""
        from psycopg import sql

        return sql.SQL(statement + " {}").format(sql.Identifier(self.schema, self.name))

    def text(self, statement: str) -> str:
        """Return the statement ``sql`` makes, as text for a dry run."""
        return f'{statement} "{self.schema}"."{self.name}"'


@dataclass
class Inventory:
    """What the run will do: the leftovers to drop, then the indexes to rebuild."""

    leftovers: list[IndexInfo]
    rebuilds: list[IndexInfo]


async def _regclass(connection: AsyncConnection[Any], name: str) -> tuple[int, str] | None:
    """Return the oid and relkind of the relation ``name`` names, or None."""
    row = await (
        await connection.execute(
            "SELECT c.oid::int8, c.relkind::text FROM pg_class c WHERE c.oid = to_regclass(%s)",
            (quoted_regclass(name),),
        )
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


async def _indexes_of(connection: AsyncConnection[Any], table_oid: int) -> list[IndexInfo]:
    cursor = await connection.execute(INDEXES_OF_TABLE, (table_oid,))
    return [
        IndexInfo(str(row[0]), str(row[1]), bool(row[2]), int(row[3]), int(row[4]))
        for row in await cursor.fetchall()
    ]


def _leftover_of(index: IndexInfo) -> str | None:
    """Return the name of the index ``index`` is an invalid leftover of, or None."""
    match = LEFTOVER.fullmatch(index.name)
    return match["index"] if match and not index.valid else None


async def take_inventory(connection: AsyncConnection[Any], params: ReindexParams) -> Inventory:
    """Given params, return the leftovers to drop and the indexes to rebuild, in order.

    Raise NotFound for a name that is not an index (``indexes``) or a table (``tables``).
    """
    wanted: dict[int, set[str] | None] = {}
    """Per table: the names of the indexes to rebuild, or None for all of them."""
    for name in params.indexes:
        found = await _regclass(connection, name)
        if found is None or found[1] != "i":
            raise NotFound(f"PostgreSQL has no index {name} (partitioned indexes excepted)")
        row = await (
            await connection.execute(
                "SELECT indrelid::int8, c.relname FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE indexrelid = %s::oid",
                (found[0],),
            )
        ).fetchone()
        if row is None:  # dropped between the two statements
            raise NotFound(f"PostgreSQL has no index {name}")
        names = wanted.setdefault(int(row[0]), set())
        if names is not None:
            names.add(str(row[1]))
    for name in params.tables:
        found = await _regclass(connection, name)
        if found is None or found[1] not in ("r", "m", "t"):
            raise NotFound(f"PostgreSQL has no table {name}")
        wanted[found[0]] = None
    inventory = Inventory([], [])
    for table_oid, names in wanted.items():
        for index in await _indexes_of(connection, table_oid):
            origin = _leftover_of(index)
            if origin is not None and (names is None or origin in names):
                inventory.leftovers.append(index)
            elif origin is None and (names is None or index.name in names):
                inventory.rebuilds.append(index)
    return inventory


class PostgresReindex(Task[PostgresTarget, ReindexParams]):
    """Rebuild indexes concurrently after dropping invalid leftovers (module docstring)."""

    name: ClassVar[str] = "postgres.reindex"
    summary: ClassVar[str] = (
        "Rebuild the named `indexes` (or every index of the named `tables`) with REINDEX "
        "INDEX CONCURRENTLY, one at a time, in autocommit under `lock_timeout` and "
        "`statement_timeout`; first drops, with DROP INDEX CONCURRENTLY, the invalid "
        "`<index>_ccnew`/`_ccold` leftovers of an earlier interrupted rebuild. An index "
        "whose lock is not obtained in time is given up (its leftovers removed) and the "
        "step fails naming it. The dry run lists the exact statements and current sizes; "
        "figures: indexes_reindexed, leftovers_dropped, gave_up, bytes_before, "
        "bytes_after and per index bytes_before:/bytes_after:<schema.index>."
    )
    Params: ClassVar[type[LimitedParams]] = ReindexParams
    target_kinds: ClassVar[tuple[str, ...]] = ("postgres",)
    target_required: ClassVar[bool] = True

    async def plan(
        self, target: PostgresTarget, params: ReindexParams, context: TaskContext
    ) -> TaskPlan:
        """Given the target and params, return the statements the run would execute, with
        the indexes' current sizes; change nothing.

        A name not found is the plan's finding ("the run would fail: ..."); raise
        TaskFailed if the server cannot be reached or the catalog cannot be read.
        """
        import psycopg

        connection = await connect_postgres(
            target, context.timeout_s, "upkeep postgres.reindex (dry run)", autocommit=True
        )
        try:
            await set_postgres_limits(
                connection,
                statement_s=params.statement_s(context.timeout_s),
                lock_s=params.lock_timeout.total_seconds(),
                local=False,
            )
            inventory = await take_inventory(connection, params)
        except NotFound as error:
            return TaskPlan(note=f"the run would fail: {error}")
        except psycopg.Error as error:
            raise TaskFailed(f"cannot read the indexes: {one_line(error)}") from error
        finally:
            await connection.close()
        changes = [
            Change(
                "drop",
                index.qualified,
                f"{index.text('DROP INDEX CONCURRENTLY IF EXISTS')}; invalid leftover of an "
                f"interrupted rebuild, {human_bytes(index.size)} ({index.size} B)",
            )
            for index in inventory.leftovers
        ] + [
            Change(
                "reindex",
                index.qualified,
                f"{index.text('REINDEX INDEX CONCURRENTLY')}; now {human_bytes(index.size)} "
                f"({index.size} B)" + ("" if index.valid else ", invalid"),
            )
            for index in inventory.rebuilds
        ]
        note = params.limits_sql(context.timeout_s)
        if not changes:
            note = "no index to rebuild on the named tables"
        return TaskPlan(changes=changes, note=note)

    async def run(
        self, target: PostgresTarget, params: ReindexParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the target and params, drop the leftovers, then rebuild each index;
        return the changes with both sizes of each index.

        Raise TaskFailed if the server cannot be reached, a name is not found, a statement
        fails, or any index was given up on a limit (the message says what was done).
        """
        import psycopg

        outcome = TaskOutcome()
        figures = outcome.figures
        gave_up: list[str] = []
        totals = {"bytes_before": 0, "bytes_after": 0}
        connection = await connect_postgres(
            target, context.timeout_s, "upkeep postgres.reindex", autocommit=True
        )
        try:
            await set_postgres_limits(
                connection,
                statement_s=params.statement_s(context.timeout_s),
                lock_s=params.lock_timeout.total_seconds(),
                local=False,
            )
            inventory = await take_inventory(connection, params)
            dropped = 0
            for leftover in inventory.leftovers:
                problem = await _drop(connection, leftover)
                if problem == "":
                    continue
                if problem is None:
                    dropped += 1
                    outcome.changes.append(
                        Change(
                            "drop",
                            leftover.qualified,
                            f"invalid leftover of an interrupted rebuild, {leftover.size} B",
                        )
                    )
                else:
                    gave_up.append(f"dropping {leftover.qualified}: {problem}")
            reindexed = 0
            for index in inventory.rebuilds:
                before = await _size(connection, index)
                try:
                    await connection.execute(index.sql("REINDEX INDEX CONCURRENTLY"))
                except psycopg.Error as error:
                    limit = hit_limit(error)
                    if limit is None:
                        raise
                    gave_up.append(
                        f"{index.qualified}: {limit} hit ({one_line(error)})"
                        + await _clean_up_after(connection, index)
                    )
                    continue
                after = await _size(connection, index)
                reindexed += 1
                totals["bytes_before"] += before
                totals["bytes_after"] += after
                figures[f"bytes_before:{index.qualified}"] = before
                figures[f"bytes_after:{index.qualified}"] = after
                outcome.changes.append(
                    Change(
                        "reindex",
                        index.qualified,
                        f"{human_bytes(before)} -> {human_bytes(after)} "
                        f"(before {before} B, after {after} B)",
                    )
                )
        except psycopg.Error as error:
            done = "; ".join(f"{c.action} {c.subject}: {c.detail}" for c in outcome.changes)
            raise TaskFailed(
                f"{one_line(error)}" + (f"; done before: {done}" if done else "")
            ) from error
        finally:
            await connection.close()
        figures.update(
            indexes_reindexed=reindexed,
            leftovers_dropped=dropped,
            gave_up=len(gave_up),
            **totals,
        )
        outcome.message = (
            f"rebuilt {reindexed} index(es), {human_bytes(totals['bytes_before'])} -> "
            f"{human_bytes(totals['bytes_after'])}; dropped {dropped} leftover(s)"
        )
        if gave_up:
            raise TaskFailed(f"{outcome.message}; gave up on {len(gave_up)}: " + "; ".join(gave_up))
        return outcome


async def _size(connection: AsyncConnection[Any], index: IndexInfo) -> int:
    row = await (
        await connection.execute(
            "SELECT pg_relation_size(to_regclass(%s))",
            (quoted_regclass(index.qualified),),
        )
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def _drop(connection: AsyncConnection[Any], index: IndexInfo) -> str | None:
    """Drop an invalid index concurrently; return None once dropped, "" if it is gone
    already, or why it was not dropped (a limit hit, or it became valid: a valid index is
    never dropped). Other errors propagate."""
    import psycopg

    row = await (
        await connection.execute(
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
            (quoted_regclass(index.qualified),),
        )
    ).fetchone()
    if row is None or row[0]:
        return "" if row is None else "it became valid; left alone"
    try:
        await connection.execute(index.sql("DROP INDEX CONCURRENTLY IF EXISTS"))
    except psycopg.Error as error:
        limit = hit_limit(error)
        if limit is None:
            raise
        return f"{limit} hit ({one_line(error)})"
    return None


async def _clean_up_after(connection: AsyncConnection[Any], index: IndexInfo) -> str:
    """After a rebuild of ``index`` gave up, drop the leftovers it made; return what was
    left for the next run to remove, as text to append to the report (empty if none)."""
    leftovers = [
        other
        for other in await _indexes_of(connection, index.table_oid)
        if _leftover_of(other) == index.name
    ]
    problems = [
        f"{leftover.qualified} ({problem})"
        for leftover in leftovers
        if (problem := await _drop(connection, leftover))
    ]
    # A _ccold leftover means the swap happened: the rebuilt index already serves.
    swapped = any("_ccold" in leftover.name for leftover in leftovers)
    said = "; the rebuilt index is in place, the old copy is left" if swapped else ""
    if problems:
        return f"{said}; leftover(s) the next run removes: " + ", ".join(problems)
    return f"{said}; its {len(leftovers)} leftover(s) removed" if leftovers else ""
