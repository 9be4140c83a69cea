"""postgres.autovacuum: per-table autovacuum settings applied as a reviewed change, with
the previous values recorded so that a later run can put them back.

* **Allowlist.** Only the ``autovacuum_*`` and ``toast.autovacuum_*`` storage parameters
  below, each typed and bounded as PostgreSQL bounds it, so a bad name or value is refused
  when the config is loaded (file, line and key), not half-way through a run.
* **Dry run**: the exact ``ALTER TABLE ... SET (...)`` of each table with each option's
  current value (``unset`` when the table does not set it).
* **Run**: one ``ALTER TABLE`` per table in autocommit, under ``lock_timeout`` (it takes
  SHARE UPDATE EXCLUSIVE, which waits behind a running VACUUM or DDL) and
  ``statement_timeout``. The previous values, read from ``pg_class.reloptions`` (the
  TOAST table's for ``toast.*``), are recorded in the figures as
  ``previous:<schema.table>:<option>`` (the value as text, or ``unset``).
* **Rollback** (``rollback: true``): the values recorded by the most recent run of this
  same step (same runbook and position) that ended ``ok`` and was not itself a rollback are
  restored: ``SET`` for those that were set, ``RESET`` for those that were unset. No such
  run is a failure saying so.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from upkeep.core.models import StrictModel, validate_with_key_rule
from upkeep.core.text import one_line
from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan
from upkeep.tasks.postgres.common import MAX_NAMES, LimitedParams, NotFound, hit_limit
from upkeep.tasks.sql.session import check_qualified_name, connect_limited, quoted_regclass

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from upkeep.store.store import Store

INT_MAX = 2_147_483_647
UNSET = "unset"
"""How an option the table does not set is recorded."""
PREVIOUS = "previous:"
"""The prefix of the figures that record a previous value."""
RUNS_LOOKED_AT = 200
"""How many of the runbook's latest runs a rollback searches for the step's last run."""

ScaleFactor = Annotated[float, Field(ge=0, le=100)]
Threshold = Annotated[int, Field(ge=0, le=INT_MAX)]
InsertThreshold = Annotated[int, Field(ge=-1, le=INT_MAX)]
CostDelay = Annotated[float, Field(ge=-1, le=100)]
CostLimit = Annotated[int, Field(ge=-1, le=10_000)]
FreezeMinAge = Annotated[int, Field(ge=0, le=1_000_000_000)]
FreezeMaxAge = Annotated[int, Field(ge=100_000, le=2_000_000_000)]
MultixactFreezeMaxAge = Annotated[int, Field(ge=10_000, le=2_000_000_000)]
FreezeTableAge = Annotated[int, Field(ge=0, le=2_000_000_000)]


def _option(description: str, *, toast: str | None = None) -> Any:
    if toast is None:
        return Field(default=None, description=description)
    return Field(
        default=None, alias=f"toast.{toast}", description=f"the TOAST table's: {description}"
    )


class TableSettings(StrictModel):
    """The autovacuum storage parameters one table may be given (PostgreSQL's bounds)."""

    autovacuum_enabled: bool | None = _option("autovacuum on (true) or off (false) for the table")
    autovacuum_vacuum_threshold: Threshold | None = _option(
        "dead rows before a vacuum, added to the scale factor's share (0 to 2147483647)"
    )
    autovacuum_vacuum_scale_factor: ScaleFactor | None = _option(
        "share of the table's rows dead before a vacuum (0 to 100)"
    )
    autovacuum_vacuum_insert_threshold: InsertThreshold | None = _option(
        "inserted rows before a vacuum (-1 turns insert vacuums off; up to 2147483647)"
    )
    autovacuum_vacuum_insert_scale_factor: ScaleFactor | None = _option(
        "share of the table's rows inserted before a vacuum (0 to 100)"
    )
    autovacuum_analyze_threshold: Threshold | None = _option(
        "changed rows before an analyze, added to the scale factor's share (0 to 2147483647)"
    )
    autovacuum_analyze_scale_factor: ScaleFactor | None = _option(
        "share of the table's rows changed before an analyze (0 to 100)"
    )
    autovacuum_vacuum_cost_delay: CostDelay | None = _option(
        "autovacuum's cost delay for the table in ms (-1 to 100)"
    )
    autovacuum_vacuum_cost_limit: CostLimit | None = _option(
        "autovacuum's cost limit for the table (-1 to 10000)"
    )
    autovacuum_freeze_min_age: FreezeMinAge | None = _option(
        "vacuum_freeze_min_age for the table (0 to 1000000000)"
    )
    autovacuum_freeze_max_age: FreezeMaxAge | None = _option(
        "XID age that forces an anti-wraparound vacuum (100000 to 2000000000)"
    )
    autovacuum_freeze_table_age: FreezeTableAge | None = _option(
        "vacuum_freeze_table_age for the table (0 to 2000000000)"
    )
    autovacuum_multixact_freeze_min_age: FreezeMinAge | None = _option(
        "vacuum_multixact_freeze_min_age for the table (0 to 1000000000)"
    )
    autovacuum_multixact_freeze_max_age: MultixactFreezeMaxAge | None = _option(
        "multixact age that forces an anti-wraparound vacuum (10000 to 2000000000)"
    )
    autovacuum_multixact_freeze_table_age: FreezeTableAge | None = _option(
        "vacuum_multixact_freeze_table_age for the table (0 to 2000000000)"
    )
    toast_autovacuum_enabled: bool | None = _option(
        "autovacuum on (true) or off (false) for the table",
        toast="autovacuum_enabled",
    )
    toast_autovacuum_vacuum_threshold: Threshold | None = _option(
        "dead rows before a vacuum, added to the scale factor's share (0 to 2147483647)",
        toast="autovacuum_vacuum_threshold",
    )
    toast_autovacuum_vacuum_scale_factor: ScaleFactor | None = _option(
        "share of the table's rows dead before a vacuum (0 to 100)",
        toast="autovacuum_vacuum_scale_factor",
    )
    toast_autovacuum_vacuum_insert_threshold: InsertThreshold | None = _option(
        "inserted rows before a vacuum (-1 turns insert vacuums off; up to 2147483647)",
        toast="autovacuum_vacuum_insert_threshold",
    )
    toast_autovacuum_vacuum_insert_scale_factor: ScaleFactor | None = _option(
        "share of the table's rows inserted before a vacuum (0 to 100)",
        toast="autovacuum_vacuum_insert_scale_factor",
    )
    toast_autovacuum_vacuum_cost_delay: CostDelay | None = _option(
        "autovacuum's cost delay for the table in ms (-1 to 100)",
        toast="autovacuum_vacuum_cost_delay",
    )
    toast_autovacuum_vacuum_cost_limit: CostLimit | None = _option(
        "autovacuum's cost limit for the table (-1 to 10000)",
        toast="autovacuum_vacuum_cost_limit",
    )
    toast_autovacuum_freeze_min_age: FreezeMinAge | None = _option(
        "vacuum_freeze_min_age for the table (0 to 1000000000)",
        toast="autovacuum_freeze_min_age",
    )
    toast_autovacuum_freeze_max_age: FreezeMaxAge | None = _option(
        "XID age that forces an anti-wraparound vacuum (100000 to 2000000000)",
        toast="autovacuum_freeze_max_age",
    )
    toast_autovacuum_freeze_table_age: FreezeTableAge | None = _option(
        "vacuum_freeze_table_age for the table (0 to 2000000000)",
        toast="autovacuum_freeze_table_age",
    )

    def options(self) -> dict[str, str]:
        """Return the options given, by their PostgreSQL name, as SQL value text (numbers
        and ``true``/``false`` only: the model admits nothing else)."""
        return {
            name: _sql_value(value)
            for name, value in self.model_dump(by_alias=True, exclude_none=True).items()
        }


OPTION_NAMES = frozenset(field.alias or name for name, field in TableSettings.model_fields.items())


def _sql_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"not an option value: {value!r}")


class AutovacuumParams(LimitedParams):
    """Params of ``postgres.autovacuum``."""

    tables: dict[str, TableSettings] = Field(
        default_factory=dict,
        max_length=MAX_NAMES,
        description="per table (`name` or `schema.name`), the autovacuum storage parameters to set",
    )
    rollback: bool = Field(
        default=False,
        description="restore the values recorded by this step's last successful run "
        "instead of setting `tables`",
    )

    @field_validator("tables")
    @classmethod
    def _names(cls, value: dict[str, TableSettings]) -> dict[str, TableSettings]:
        for name, settings in value.items():
            check_qualified_name(name)
            if not settings.options():
                raise ValueError(f"{name!r} sets no option")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _something_to_do(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> AutovacuumParams:
        return validate_with_key_rule(cls, data, handler, _something_to_do)


def _something_to_do(data: dict[str, Any]) -> str | None:
    """Return the problem of a step that neither names a table nor rolls back, or None."""
    if data.get("rollback") is not True and not data.get("tables"):
        return "name at least one table in `tables` (or set `rollback: true`)"
    return None


@dataclass(frozen=True)
class TableChange:
    """One table's change: the options to set (value text) and those to reset."""

    table: str
    set_options: dict[str, str]
    reset_options: tuple[str, ...] = ()


CURRENT_OPTIONS = """
SELECT n.nspname, c.relname, coalesce(c.reloptions, '{}'), coalesce(t.reloptions, '{}')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'm')
"""


async def current_options(
    connection: AsyncConnection[Any], name: str
) -> tuple[str, str, dict[str, str]]:
    """Given a table name as written, return its schema, its name and the storage
    parameters it sets (``toast.`` before those of its TOAST table); NotFound if no table."""
    cursor = await connection.execute(CURRENT_OPTIONS, (quoted_regclass(name),))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"PostgreSQL has no table {name}")
    options: dict[str, str] = {}
    for prefix, entries in (("", row[2]), ("toast.", row[3])):
        for entry in entries:
            key, _, value = str(entry).partition("=")
            options[prefix + key] = value
    return str(row[0]), str(row[1]), options


def _statements(schema: str, table: str, change: TableChange) -> list[Any]:
    from psycopg import sql

    identifier = sql.Identifier(schema, table)
    statements: list[Any] = []
    # Option names come from OPTION_NAMES and values from typed params: no quoting needed.
    if change.set_options:
        pairs = ", ".join(f"{key} = {value}" for key, value in change.set_options.items())
        statements.append(sql.SQL("ALTER TABLE {} SET (" + pairs + ")").format(identifier))
    if change.reset_options:
        names = ", ".join(change.reset_options)
        statements.append(sql.SQL("ALTER TABLE {} RESET (" + names + ")").format(identifier))
    return statements


def _text(schema: str, table: str, change: TableChange) -> str:
    parts = []
    if change.set_options:
        pairs = ", ".join(f"{key} = {value}" for key, value in change.set_options.items())
        parts.append(f'ALTER TABLE "{schema}"."{table}" SET ({pairs})')
    if change.reset_options:
        parts.append(f'ALTER TABLE "{schema}"."{table}" RESET ({", ".join(change.reset_options)})')
    return "; ".join(parts)


def restored_changes(figures: dict[str, Any]) -> list[TableChange]:
    """Given the figures of an earlier run, return the changes that put its previous values
    back; ValueError if a recorded option or value is not one the task admits."""
    by_table: dict[str, dict[str, str]] = {}
    for key, value in figures.items():
        if not key.startswith(PREVIOUS):
            continue
        table, _, option = key.removeprefix(PREVIOUS).rpartition(":")
        if option not in OPTION_NAMES:
            raise ValueError(f"the recorded option {option!r} is not an autovacuum option")
        by_table.setdefault(check_qualified_name(table), {})[option] = str(value)
    changes = []
    for table, options in by_table.items():
        to_set = {key: value for key, value in options.items() if value != UNSET}
        try:
            checked = TableSettings.model_validate(to_set).options()
        except ValidationError as error:
            raise ValueError(f"the recorded values of {table} are not valid: {error}") from error
        reset = tuple(sorted(key for key, value in options.items() if value == UNSET))
        changes.append(TableChange(table, checked, reset))
    return changes


def last_applied(store: Store, runbook: str, position: int) -> tuple[int, dict[str, Any]]:
    """Given the store, a runbook and a step position, return the id and figures of the
    newest run whose step there ended ``ok`` and applied settings (not a rollback).

    Raise TaskFailed if none of the runbook's latest runs has one.
    """
    from upkeep.store.runs import StepStatus

    for run in store.runs.list_runs(runbook=runbook, limit=RUNS_LOOKED_AT):
        for step in store.runs.get_run_steps(run.id):
            if step.position != position or step.status != StepStatus.OK:
                continue
            figures = step.detail.get("figures")
            if (
                isinstance(figures, dict)
                and figures.get("rollback") is False
                and any(str(key).startswith(PREVIOUS) for key in figures)
            ):
                return run.id, figures
    raise TaskFailed(
        f"nothing to roll back: no run of runbook {runbook!r} among its latest "
        f"{RUNS_LOOKED_AT} applied step {position + 1} successfully"
    )


class PostgresAutovacuum(Task[PostgresTarget, AutovacuumParams]):
    """Set per-table autovacuum parameters, recording the previous ones (module docstring)."""

    name: ClassVar[str] = "postgres.autovacuum"
    summary: ClassVar[str] = (
        "Set per-table autovacuum storage parameters (an allowlist of autovacuum_* and "
        "toast.autovacuum_* options with typed, bounded values) with one ALTER TABLE ... "
        "SET per table under `lock_timeout` and `statement_timeout`. The dry run shows each "
        "statement with the current values; the run records the previous values (from "
        "pg_class.reloptions, `unset` if absent) as figures previous:<table>:<option>. "
        "With `rollback: true` it restores the values recorded by this step's last "
        "successful run (SET, or RESET for options that were unset)."
    )
    Params: ClassVar[type[StrictModel]] = AutovacuumParams
    target_kinds: ClassVar[tuple[str, ...]] = ("postgres",)
    target_required: ClassVar[bool] = True

    async def _changes(
        self, params: AutovacuumParams, context: TaskContext
    ) -> tuple[list[TableChange], str]:
        if not params.rollback:
            changes = [
                TableChange(table, settings.options()) for table, settings in params.tables.items()
            ]
            return changes, ""
        if context.store is None or context.runbook is None or context.step_position is None:
            raise TaskFailed("a rollback reads the store and runs only as a runbook step")
        run_id, figures = await asyncio.to_thread(
            last_applied, context.store, context.runbook, context.step_position
        )
        try:
            return restored_changes(figures), f"restoring the values recorded by run {run_id}"
        except ValueError as error:
            raise TaskFailed(str(error)) from error

    async def _connect(
        self, target: PostgresTarget, params: AutovacuumParams, context: TaskContext, suffix: str
    ) -> AsyncConnection[Any]:
        return await connect_limited(
            target,
            context.timeout_s,
            f"upkeep {self.name}{suffix}",
            statement_s=params.statement_s(context.timeout_s),
            lock_s=params.lock_timeout.total_seconds(),
        )

    async def plan(
        self, target: PostgresTarget, params: AutovacuumParams, context: TaskContext
    ) -> TaskPlan:
        """Given the target and params, return the statements the run would execute with
        each option's current value; change nothing.

        A table not found is the plan's finding; raise TaskFailed if the server cannot be
        read or a rollback has nothing recorded to restore.
        """
        import psycopg

        changes, origin = await self._changes(params, context)
        connection = await self._connect(target, params, context, " (dry run)")
        planned: list[Change] = []
        try:
            for change in changes:
                schema, table, now = await current_options(connection, change.table)
                current = ", ".join(
                    f"{key} now {now.get(key, UNSET)}"
                    for key in [*change.set_options, *change.reset_options]
                )
                planned.append(
                    Change(
                        "alter",
                        f"{schema}.{table}",
                        f"{_text(schema, table, change)}; {current}",
                    )
                )
        except NotFound as error:
            return TaskPlan(note=f"the run would fail: {error}")
        except psycopg.Error as error:
            raise TaskFailed(f"cannot read the tables: {one_line(error)}") from error
        finally:
            await connection.close()
        note = params.limits_sql(context.timeout_s)
        return TaskPlan(changes=planned, note=f"{origin}; {note}" if origin else note)

    async def run(
        self, target: PostgresTarget, params: AutovacuumParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the target and params, alter each table; return the changes with the
        previous values recorded in the figures.

        Raise TaskFailed if the server cannot be reached, a table is not found, a statement
        fails or hits a limit (the message names the tables already altered, whose previous
        values are in the message), or a rollback has nothing to restore.
        """
        import psycopg

        changes, origin = await self._changes(params, context)
        outcome = TaskOutcome()
        figures = outcome.figures
        figures["rollback"] = params.rollback
        connection = await self._connect(target, params, context, "")
        try:
            for change in changes:
                schema, table, now = await current_options(connection, change.table)
                qualified = f"{schema}.{table}"
                previous = {
                    key: now.get(key, UNSET) for key in [*change.set_options, *change.reset_options]
                }
                for statement in _statements(schema, table, change):
                    await connection.execute(statement)
                for key, value in previous.items():
                    figures[f"{PREVIOUS}{qualified}:{key}"] = value
                outcome.changes.append(
                    Change(
                        "alter",
                        qualified,
                        _text(schema, table, change)
                        + "; previously "
                        + ", ".join(f"{key} {value}" for key, value in previous.items()),
                    )
                )
        except (psycopg.Error, NotFound) as error:
            limit = hit_limit(error)
            done = "; ".join(f"{c.subject} ({c.detail})" for c in outcome.changes)
            reason = f"{limit} hit: " if limit else ""
            raise TaskFailed(
                reason + one_line(error) + (f"; altered before: {done}" if done else "")
            ) from error
        finally:
            await connection.close()
        figures["tables_done"] = len(outcome.changes)
        verb = "restored" if params.rollback else "set"
        outcome.message = f"autovacuum settings {verb} on {len(outcome.changes)} table(s)"
        if origin:
            outcome.message += f" ({origin})"
        return outcome
