"""sql.retention: delete rows older than an age from one table, in short batches.

What is deleted: rows of ``table`` whose ``column`` (a timestamp) is before the cutoff,
``now - older_than`` computed once when the run starts, and whose ``match`` columns equal
the given values. Nothing else:

* **Identifiers are quoted, values are bound.** ``table`` (optionally ``schema.table``),
  ``column`` and the ``match`` columns must be plain SQL names (letters, digits, ``_``,
  ``$``) and are quoted by the driver's identifier quoting (``psycopg.sql.Identifier``;
  backticks on MySQL, which the name rule keeps out of the name). The cutoff and ``match``
  values are bound parameters. There is deliberately no free-text ``where``: one written
  ``true) OR (true`` would empty the table.
* **Batches, each its own short transaction.** Every batch deletes at most ``batch_size``
  rows under ``lock_wait`` (how long it may wait for a lock) and ``max_lock`` (how long
  the statement may run, so how long it holds the locks it took), then commits and
  sleeps ``pause``, so writers of the same table wait at most about one batch. The run
  ends with the first batch that finds nothing to delete. On
  PostgreSQL a batch is ``DELETE ... WHERE ctid = ANY(ARRAY(SELECT ctid ... LIMIT n))``
  (a TID scan, whatever the indexes); on MySQL/MariaDB ``DELETE ... ORDER BY <column>,
  <primary key> LIMIT n`` (the table needs a primary key; an index on ``column`` keeps
  each batch from scanning and sorting every due row). A batch that hits either limit is rolled
  back and retried with half the rows (for the rest of the run), up to ``retries`` times
  in a row; then the task fails, saying how many rows it deleted before. MariaDB's
  ``max_statement_time`` bounds a ``DELETE``; MySQL's ``max_execution_time`` bounds only
  ``SELECT``, so there ``max_lock`` bounds the batch's backup read and ``lock_wait`` its
  waits, and the step's timeout the rest.
* **Backups before deletes.** With ``backup_to`` each batch's rows are written as
  zstandard-compressed JSON lines (one object per row) to a new file in that directory,
  under a temporary name, fsynced and renamed into place (``io/safefs.py``), and only then
  is the batch's transaction committed. A crash leaves either a committed file whose rows
  may still be in the table (the next run backs them up again) or a temporary
  ``.upkeep-tmp-*`` file that never looks complete; a row is never deleted without having
  been written first. Dates are ISO 8601, decimals strings, bytes base64.
* **Dry run**: ``plan`` counts the rows that would go, with the cutoff, and changes
  nothing.
* **Time**: naive timestamp columns are read as UTC (the session's time zone is set to
  UTC). The run stops starting batches when the step's timeout is near and reports the
  run as incomplete; the next run goes on where it stopped.
* Partitioned and inherited PostgreSQL tables are refused (a ``ctid`` is unique only
  within one table): run the task per partition, or drop old partitions.

Figures recorded: ``rows_deleted``, ``batches``, ``max_batch_ms`` and ``p95_batch_ms``
(how long each batch's transaction held its locks), ``lock_retries`` (batches that hit a
limit and were retried), ``backup_files``, ``cutoff`` and ``complete``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, field_validator

from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import StrictModel
from upkeep.core.text import one_line
from upkeep.io.safefs import Directory
from upkeep.io.threads import run_blocking
from upkeep.probes.base import TargetBase
from upkeep.probes.mysql import (
    MysqlTarget,
    describe_error,
    error_code,
    parse_dsn,
    set_session_limits,
)
from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan
from upkeep.tasks.sql.session import (
    check_name,
    check_qualified_name,
    connect_postgres,
    quoted_regclass,
    set_postgres_limits,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from pymysql.connections import Connection

DEFAULT_BATCH_SIZE = 5000
"""Rows per batch unless configured."""
DEADLINE_MARGIN_S = 1.0
"""Seconds kept free before the step's timeout besides one batch's own limits."""

MAX_MATCH_NUMBER = 2**53
"""The largest number a ``match`` value may be (the exact integers of a double)."""

MatchValue = (
    bool
    | Annotated[int, Field(ge=-MAX_MATCH_NUMBER, le=MAX_MATCH_NUMBER)]
    | Annotated[float, Field(ge=-MAX_MATCH_NUMBER, le=MAX_MATCH_NUMBER)]
    | Annotated[str, Field(max_length=1000)]
    | None
)


class RetentionParams(StrictModel):
    """Params of ``sql.retention``."""

    table: str = Field(description="the table, `name` or `schema.name`")
    column: str = Field(description="the timestamp column that dates each row")
    older_than: Duration = Field(description="rows dated before now minus this go")
    match: dict[str, MatchValue] = Field(
        default={},
        description="only rows whose columns equal these values (null: IS NULL); bound values",
    )
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE, ge=1, le=100_000, description="rows per batch"
    )
    pause: Duration = Field(
        default=timedelta(milliseconds=100), description="sleep between batches"
    )
    max_lock: Duration = Field(
        default=timedelta(seconds=2),
        description="statement timeout of each batch's statements: with `backup_to`, the "
        "batch also holds its locks while its rows are written and synced to the file",
    )
    lock_wait: Duration = Field(
        default=timedelta(seconds=1),
        description="lock timeout of each batch (MySQL rounds up to whole seconds)",
    )
    retries: int = Field(
        default=3, ge=0, le=10, description="batches in a row that may hit a limit (halving)"
    )
    backup_to: str | None = Field(
        default=None,
        description="absolute directory: each batch's rows are written here (.jsonl.zst) first",
    )

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        return check_qualified_name(value)

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        check_name(value)
        return value

    @field_validator("match")
    @classmethod
    def _match(cls, value: dict[str, MatchValue]) -> dict[str, MatchValue]:
        for name in value:
            check_name(name)
        return value

    @field_validator("older_than", "max_lock", "lock_wait")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("backup_to")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_absolute():
            raise ValueError("must be an absolute directory path")
        return value


class TableUnusable(TaskFailed):
    """The table is missing or of a kind the task refuses (a dry run says so)."""


class BatchLimitHit(Exception):  # noqa: N818 - reads as an event, like TimeoutError
    """A batch hit ``lock_wait`` or ``max_lock`` and was rolled back."""


def _json_value(value: Any) -> Any:
    """Given a value JSON cannot hold as it is, return how a backup line writes it."""
    match value:
        case datetime() | date() | time_of_day():
            return value.isoformat()
        case Decimal() | uuid.UUID():
            return str(value)
        case bytes() | bytearray() | memoryview():
            return base64.b64encode(bytes(value)).decode("ascii")
        case timedelta():
            return value.total_seconds()
    return str(value)


class BackupWriter:
    """Writes each batch's rows to its own file in ``backup_to``, durably, before the
    batch is committed."""

    def __init__(self, directory: Path, table: str, started: datetime) -> None:
        self.directory = directory
        self.prefix = f"{table}-{started.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
        self.files: list[str] = []

    def write(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        """Given column names and rows, write them as one compressed JSON-lines file
        (temporary name, fsync, rename, fsync of the directory); return its name.

        Raise OSError if it cannot be written (then nothing of it is left but, at worst,
        a temporary file).
        """
        import zstandard

        name = f"{self.prefix}-{len(self.files) + 1:06d}.jsonl.zst"
        lines = b"".join(
            json.dumps(dict(zip(columns, row, strict=True)), default=_json_value).encode() + b"\n"
            for row in rows
        )
        with Directory.open(self.directory, create=True) as directory:
            temporary = directory.create_temporary(name)
            try:
                temporary.write(zstandard.ZstdCompressor(level=3).compress(lines))
                temporary.commit(name)
            except BaseException:
                temporary.abort()
                raise
        self.files.append(name)
        return name


@dataclass
class _Run:
    """What a run has done so far."""

    rows: int = 0
    batch_ms: list[float] = field(default_factory=list)
    retries: int = 0
    deleting: int = 0
    """Batches that deleted at least one row."""


class _Backend(ABC):
    """One server's way of counting and deleting a batch."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and check the table; raise TaskFailed."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection."""

    @abstractmethod
    async def count(self, cutoff: datetime) -> int:
        """Return how many rows are due; raise TaskFailed."""

    @abstractmethod
    async def delete_batch(self, cutoff: datetime, limit: int, backup: BackupWriter | None) -> int:
        """Delete up to ``limit`` due rows in one transaction (written to ``backup``
        first); return how many. Raise BatchLimitHit (rolled back) or TaskFailed."""


class _Postgres(_Backend):
    def __init__(self, target: PostgresTarget, params: RetentionParams, timeout_s: float) -> None:
        self.target = target
        self.params = params
        self.timeout_s = timeout_s
        self.connection: AsyncConnection[Any] | None = None

    def _where(self) -> tuple[Any, list[Any]]:
        from psycopg import sql

        conditions = [sql.SQL("{} < %s").format(sql.Identifier(self.params.column))]
        values: list[Any] = []
        for name, value in self.params.match.items():
            if value is None:
                conditions.append(sql.SQL("{} IS NULL").format(sql.Identifier(name)))
            else:
                conditions.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
                values.append(value)
        return sql.SQL(" AND ").join(conditions), values

    def _table(self) -> Any:
        from psycopg import sql

        return sql.Identifier(*self.params.table.split("."))

    async def open(self) -> None:
        self.connection = await connect_postgres(
            self.target, self.timeout_s, "upkeep sql.retention"
        )
        row = await (
            await self.connection.execute(
                "SELECT c.relkind::text, EXISTS (SELECT 1 FROM pg_inherits i "
                "WHERE i.inhparent = c.oid) FROM pg_class c WHERE c.oid = to_regclass(%s)",
                (quoted_regclass(self.params.table),),
            )
        ).fetchone()
        await self.connection.rollback()
        if row is None:
            raise TableUnusable(f"PostgreSQL has no table {self.params.table}")
        if row[0] == "p" or row[1]:
            raise TableUnusable(
                f"{self.params.table} is partitioned or has inheritance children; run "
                "sql.retention on each partition (or drop old partitions) instead"
            )
        if row[0] != "r":
            # A ctid names a row of one plain table; views and foreign tables have none.
            kinds = {"v": "a view", "m": "a materialized view", "f": "a foreign table"}
            raise TableUnusable(
                f"{self.params.table} is {kinds.get(row[0], f'of relkind {row[0]!r}')}, not "
                "a table; sql.retention deletes from plain tables only"
            )

    def _open_connection(self) -> AsyncConnection[Any]:
        """Return the connection ``open`` made; RuntimeError before it."""
        if self.connection is None:
            raise RuntimeError("the backend is used before open()")
        return self.connection

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def _limits(self, statement_s: float) -> None:
        await set_postgres_limits(
            self._open_connection(),
            statement_s=statement_s,
            lock_s=self.params.lock_wait.total_seconds(),
            local=True,
        )

    async def count(self, cutoff: datetime) -> int:
        import psycopg
        from psycopg import sql

        connection = self._open_connection()
        where, values = self._where()
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._table(), where)
        try:
            async with connection.transaction():
                await self._limits(self.timeout_s)
                row = await (await connection.execute(query, [cutoff, *values])).fetchone()
        except psycopg.Error as error:
            raise TaskFailed(f"cannot count the rows due: {one_line(error)}") from error
        return int(row[0]) if row else 0

    async def delete_batch(self, cutoff: datetime, limit: int, backup: BackupWriter | None) -> int:
        import psycopg
        from psycopg import errors, sql

        connection = self._open_connection()
        where, values = self._where()
        query = sql.SQL(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "
            "WHERE {where} LIMIT %s)) AND {where}{returning}"
        ).format(
            table=self._table(),
            where=where,
            returning=sql.SQL(" RETURNING *" if backup else ""),
        )
        try:
            async with connection.transaction():
                await self._limits(self.params.max_lock.total_seconds())
                cursor = await connection.execute(query, [cutoff, *values, limit, cutoff, *values])
                deleted = cursor.rowcount
                if backup is not None and deleted > 0:
                    rows = await cursor.fetchall()
                    columns = [column.name for column in cursor.description or ()]
                    await asyncio.to_thread(backup.write, columns, rows)
        except (errors.LockNotAvailable, errors.QueryCanceled) as error:
            raise BatchLimitHit(one_line(error)) from error
        except psycopg.Error as error:
            raise TaskFailed(f"a batch failed: {one_line(error)}") from error
        except OSError as error:
            raise TaskFailed(f"cannot write the backup, nothing deleted: {error}") from error
        return max(deleted, 0)


class _Mysql(_Backend):
    def __init__(self, target: MysqlTarget, params: RetentionParams, timeout_s: float) -> None:
        self.target = target
        self.params = params
        self.timeout_s = timeout_s
        self.connection: Connection[Any] | None = None
        self.key: list[str] = []

    def _table(self) -> str:
        return ".".join(f"`{part}`" for part in self.params.table.split("."))

    def _where(self, cutoff: datetime) -> tuple[str, list[Any]]:
        conditions = [f"`{self.params.column}` < %s"]
        # PyMySQL writes an aware datetime with its offset, which MySQL refuses; the
        # session's time zone is UTC, so the naive UTC moment is the same instant.
        values: list[Any] = [cutoff.astimezone(UTC).replace(tzinfo=None)]
        for name, value in self.params.match.items():
            if value is None:
                conditions.append(f"`{name}` IS NULL")
            else:
                conditions.append(f"`{name}` = %s")
                values.append(value)
        return " AND ".join(conditions), values

    async def _blocking(self, function: Any, *args: Any) -> Any:
        try:
            return await run_blocking(function, *args, timeout_s=self.timeout_s)
        except TimeoutError as error:
            raise TaskFailed(f"MySQL did not answer within {self.timeout_s:g}s") from error

    async def open(self) -> None:
        await self._blocking(self._open)

    def _open(self) -> None:
        import pymysql

        address = parse_dsn(self.target.dsn)
        try:
            self.connection = pymysql.connect(
                host=address.host,
                port=address.port,
                user=address.user,
                password=address.password,
                database=address.database,
                connect_timeout=min(self.timeout_s, 30),
                read_timeout=self.timeout_s,
                write_timeout=self.timeout_s,
                program_name="upkeep sql.retention",
                init_command="SET time_zone = '+00:00'",
            )
        except pymysql.err.MySQLError as error:
            raise TaskFailed(f"cannot connect to MySQL: {describe_error(error)}") from error
        parts = self.params.table.split(".")
        schema_sql = "%s" if len(parts) == 2 else "DATABASE()"
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name FROM information_schema.key_column_usage "
                f"WHERE table_schema = {schema_sql} AND table_name = %s "
                "AND constraint_name = 'PRIMARY' ORDER BY ordinal_position",
                parts,
            )
            self.key = [str(row[0]) for row in cursor.fetchall()]
            cursor.execute(
                f"SELECT count(*) FROM information_schema.tables "
                f"WHERE table_schema = {schema_sql} AND table_name = %s",
                parts,
            )
            found = cursor.fetchone()
        self.connection.commit()
        if not found or not found[0]:
            raise TableUnusable(f"MySQL has no table {self.params.table}")
        if not self.key:
            raise TableUnusable(
                f"{self.params.table} has no primary key; sql.retention deletes MySQL rows "
                "in primary-key order"
            )

    async def close(self) -> None:
        if self.connection is not None:
            self.connection.close()

    def _open_connection(self) -> Connection[Any]:
        """Return the connection ``open`` made; RuntimeError before it."""
        if self.connection is None:
            raise RuntimeError("the backend is used before open()")
        return self.connection

    async def count(self, cutoff: datetime) -> int:
        return int(await self._blocking(self._count, cutoff))

    def _count(self, cutoff: datetime) -> int:
        import pymysql

        connection = self._open_connection()
        where, values = self._where(cutoff)
        try:
            set_session_limits(connection, statement_s=self.timeout_s, lock_wait_s=self.timeout_s)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM {self._table()} WHERE {where}", values)
                row = cursor.fetchone()
            connection.commit()
        except pymysql.err.MySQLError as error:
            raise TaskFailed(f"cannot count the rows due: {describe_error(error)}") from error
        return int(row[0]) if row else 0

    async def delete_batch(self, cutoff: datetime, limit: int, backup: BackupWriter | None) -> int:
        return int(await self._blocking(self._delete_batch, cutoff, limit, backup))

    def _delete_batch(self, cutoff: datetime, limit: int, backup: BackupWriter | None) -> int:
        import pymysql

        connection = self._open_connection()
        where, values = self._where(cutoff)
        # The date column first: an index on it (which InnoDB extends with the primary
        # key) then gives the batch's rows in order, and the scan stops after `limit`.
        # Ordered by the key alone, the optimizer may read every due row through that
        # index and sort them all for each batch (seconds on millions of rows).
        order = ", ".join(_backticked(name) for name in [self.params.column, *self.key])
        try:
            set_session_limits(
                connection,
                statement_s=self.params.max_lock.total_seconds(),
                lock_wait_s=self.params.lock_wait.total_seconds(),
            )
            with connection.cursor() as cursor:
                if backup is None:
                    deleted: int = cursor.execute(
                        f"DELETE FROM {self._table()} WHERE {where} ORDER BY {order} LIMIT %s",
                        [*values, limit],
                    )
                else:
                    deleted = self._backed_up_batch(cursor, where, values, order, limit, backup)
            connection.commit()
        except pymysql.err.MySQLError as error:
            connection.rollback()
            if error_code(error) in (1205, 1213, 1969, 3024):
                raise BatchLimitHit(describe_error(error)) from error
            raise TaskFailed(f"a batch failed: {describe_error(error)}") from error
        except OSError as error:
            connection.rollback()
            raise TaskFailed(f"cannot write the backup, nothing deleted: {error}") from error
        return deleted

    def _backed_up_batch(
        self,
        cursor: Any,
        where: str,
        values: list[Any],
        order: str,
        limit: int,
        backup: BackupWriter,
    ) -> int:
        """Lock a batch's rows, write them to the backup, then delete them by key."""
        cursor.execute(
            f"SELECT * FROM {self._table()} WHERE {where} ORDER BY {order} LIMIT %s FOR UPDATE",
            [*values, limit],
        )
        rows = cursor.fetchall()
        if not rows:
            return 0
        columns = [str(column[0]) for column in cursor.description]
        backup.write(columns, rows)
        positions = [columns.index(name) for name in self.key]
        keys = [tuple(row[index] for index in positions) for row in rows]
        one = "(" + ", ".join(["%s"] * len(self.key)) + ")"
        key_sql = "(" + ", ".join(_backticked(name) for name in self.key) + ")"
        deleted: int = cursor.execute(
            f"DELETE FROM {self._table()} WHERE {key_sql} IN ({', '.join([one] * len(keys))})",
            [value for key in keys for value in key],
        )
        return deleted


def _backticked(name: str) -> str:
    """Given a MySQL name, return it quoted: in backticks, a backtick in it doubled (the
    primary key's names come from the server, not through ``SQL_NAME``)."""
    return "`" + name.replace("`", "``") + "`"


def _backend(target: TargetBase, params: RetentionParams, timeout_s: float) -> _Backend:
    """Given the step's target, return its server's backend; TaskFailed for another kind."""
    if isinstance(target, PostgresTarget):
        return _Postgres(target, params, timeout_s)
    if isinstance(target, MysqlTarget):
        return _Mysql(target, params, timeout_s)
    raise TaskFailed(f"sql.retention takes postgres or mysql targets, not {target.kind}")


def _p95(values: list[float]) -> float:
    """Return the 95th percentile of values (nearest rank; 0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class SqlRetention(Task[TargetBase, RetentionParams]):
    """Delete rows older than an age from one table, in short batches (module docstring)."""

    name: ClassVar[str] = "sql.retention"
    summary: ClassVar[str] = (
        "Delete rows whose `column` is older than `older_than` from one table in batches, "
        "each its own transaction under `lock_wait` and `max_lock` (PostgreSQL: ctid "
        "batches; MySQL/MariaDB: `ORDER BY column, primary key LIMIT n`, a primary key is "
        "required), with `pause` between them; a batch hitting a limit is retried with "
        "half the rows. Names are quoted identifiers, `match` values bound parameters. "
        "With `backup_to`, each batch's rows go to a zstd JSON-lines file, fsynced and "
        "renamed into place, before the batch commits. The dry run counts the rows due. "
        "The run stops before the step's timeout (`complete: false`); figures: "
        "rows_deleted, batches, max_batch_ms, p95_batch_ms, lock_retries, backup_files."
    )
    Params: ClassVar[type[StrictModel]] = RetentionParams
    target_kinds: ClassVar[tuple[str, ...]] = ("postgres", "mysql")
    target_required: ClassVar[bool] = True

    def validate(self, target: TargetBase | None, params: RetentionParams) -> list[str]:
        """Given the target and params, return cross-field problems."""
        del target
        if params.column is not None and params.column in (params.match or {}):
            return [f"match: column {params.column!r} is already the date column"]
        return []

    async def plan(
        self, target: TargetBase, params: RetentionParams, context: TaskContext
    ) -> TaskPlan:
        """Given the target and params, count the rows due; change nothing.

        A missing or refused table is the plan's finding ("the run would fail: ..."), not
        a failure of the dry run; raise TaskFailed if the server cannot be reached or the
        count fails.
        """
        cutoff = datetime.now(UTC) - params.older_than
        backend = _backend(target, params, context.timeout_s)
        try:
            await backend.open()
            due = await backend.count(cutoff)
        except TableUnusable as error:
            return TaskPlan(note=f"the run would fail: {error}")
        finally:
            await backend.close()
        where = f"{params.column} before {cutoff.isoformat(timespec='seconds')}"
        if not due:
            return TaskPlan(note=f"no row of {params.table} with {where}")
        batches = math.ceil(due / params.batch_size)
        return TaskPlan(
            changes=[
                Change(
                    "delete",
                    params.table,
                    f"{due} rows with {where}, in about {batches} batches of {params.batch_size}",
                )
            ]
        )

    async def run(
        self, target: TargetBase, params: RetentionParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the target and params, delete the rows due in batches; return figures.

        Raise TaskFailed if the table cannot be used, a batch fails, or ``retries``
        batches in a row hit a limit (the message says how many rows went before).
        """
        started_at = datetime.now(UTC)
        cutoff = started_at - params.older_than
        started = time.monotonic()
        # Stop starting batches when one more (its limits, the pause) might not finish.
        budget_s = context.timeout_s - (
            params.max_lock.total_seconds()
            + params.lock_wait.total_seconds()
            + params.pause.total_seconds()
            + DEADLINE_MARGIN_S
        )
        backup = (
            BackupWriter(Path(params.backup_to), params.table, started_at)
            if params.backup_to
            else None
        )
        backend = _backend(target, params, context.timeout_s)
        done = _Run()
        size = params.batch_size
        failures = 0
        complete = False
        try:
            await backend.open()
            while time.monotonic() - started < budget_s:
                batch_started = time.perf_counter()
                try:
                    deleted = await backend.delete_batch(cutoff, size, backup)
                except BatchLimitHit as error:
                    failures += 1
                    done.retries += 1
                    if failures > params.retries:
                        raise TaskFailed(
                            f"batches hit lock_wait or max_lock {failures} time(s) in a "
                            f"row ({error}); {done.rows} rows deleted before"
                        ) from error
                    size = max(1, size // 2)
                    await asyncio.sleep(params.pause.total_seconds())
                    continue
                except TaskFailed as error:
                    raise TaskFailed(f"{error}; {done.rows} rows deleted before") from error
                failures = 0
                done.batch_ms.append((time.perf_counter() - batch_started) * 1000)
                done.rows += deleted
                done.deleting += 1 if deleted else 0
                # Only an empty batch ends the run: a batch can delete fewer rows than
                # it picked while more are due (a writer updated a picked row, which
                # moves it to a new ctid, between the batch's scan and its delete).
                if deleted == 0:
                    complete = True
                    break
                await asyncio.sleep(params.pause.total_seconds())
        finally:
            await backend.close()
        figures: dict[str, float | int | str | bool] = {
            "rows_deleted": done.rows,
            # Batches that deleted rows; the empty one that ends a run is timed, not counted.
            "batches": done.deleting,
            "max_batch_ms": round(max(done.batch_ms, default=0.0), 3),
            "p95_batch_ms": round(_p95(done.batch_ms), 3),
            "lock_retries": done.retries,
            "backup_files": len(backup.files) if backup else 0,
            "cutoff": cutoff.isoformat(timespec="seconds"),
            "complete": complete,
        }
        message = (
            f"deleted {done.rows} rows of {params.table} older than "
            f"{format_duration(params.older_than)} in {done.deleting} batches "
            f"(longest {figures['max_batch_ms']} ms)"
        )
        if not complete:
            message += "; stopped before the step's timeout, the rest goes next run"
        changes = (
            [Change("delete", params.table, f"{done.rows} rows before {figures['cutoff']}")]
            if done.rows
            else []
        )
        return TaskOutcome(changes=changes, message=message, figures=figures)
