"""MySQL and MariaDB targets: reachability, connections and read-only queries.

PyMySQL is synchronous, so each probe runs its whole session (connect, query, close) on a
daemon thread (``run_blocking``). Its socket timeouts, all taken from the check's timeout,
are what bound the thread: a thread cannot be cancelled from outside, so past the deadline
it is abandoned rather than waited for. PyMySQL is imported lazily to keep CLI start-up fast.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from upkeep.core.models import StrictModel
from upkeep.core.redaction import SecretMarker
from upkeep.core.text import one_line
from upkeep.io.threads import run_blocking
from upkeep.probes.base import (
    MetricSpec,
    NoParams,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
    metrics_from,
)
from upkeep.probes.sql import (
    Dialect,
    QueryFailed,
    QueryParams,
    QueryProbeMixin,
    QueryResult,
    result_metrics,
    statement_timeout_s,
)

if TYPE_CHECKING:
    from pymysql.connections import Connection

T = TypeVar("T")

DEFAULT_PORT = 3306


class MysqlTarget(TargetBase):
    """A MySQL or MariaDB server, addressed as ``mysql://user:password@host:port/database``.

    The DSN is parsed when the config is validated, so a malformed one is reported at
    ``targets.<name>.dsn`` by ``upkeep validate`` rather than when a check runs.
    """

    kind: Literal["mysql"] = "mysql"
    dsn: Annotated[str, SecretMarker(part="password"), Field(pattern=r"^(mysql|mariadb)://")]

    @field_validator("dsn")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_dsn(value)
        return value


@dataclass(frozen=True)
class MysqlAddress:
    """The parts of a MySQL DSN that PyMySQL needs."""

    host: str
    port: int
    user: str
    password: str
    database: str | None


_ENCODE_HINT = (
    "percent-encode special characters in the user name and password "
    "(# as %23, / as %2F, ? as %3F, @ as %40, : as %3A, % as %25)"
)


def parse_dsn(dsn: str) -> MysqlAddress:
    """Given ``mysql://user:password@host:port/db``, return its parts; raise ValueError.

    User and password may be percent-encoded; host defaults to 127.0.0.1, port to 3306,
    user to root, and the database may be left out. The ValueError's message never quotes
    any part of the DSN: where parsing goes wrong is usually inside the password.
    """
    try:
        parts = urlsplit(dsn)
    except ValueError:
        raise ValueError(f"the DSN is not a valid URL; {_ENCODE_HINT}") from None
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError("a MySQL DSN starts with mysql:// or mariadb://")
    # An unencoded "#", "/" or "?" in the password ends the netloc early and leaves the
    # "@host" part behind it, in the path, query or fragment.
    if "#" in dsn or "@" in f"{parts.path}{parts.query}":
        raise ValueError(
            f"the DSN does not read as mysql://user:password@host:port/database; {_ENCODE_HINT}"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        # urlsplit's own message quotes the port text, which may be part of a password.
        raise ValueError(
            f"the DSN's port is not a number from 1 to 65535; {_ENCODE_HINT}"
        ) from None
    database = unquote(parts.path.lstrip("/")) or None
    return MysqlAddress(
        host=parts.hostname or "127.0.0.1",
        port=port,
        user=unquote(parts.username) if parts.username else "root",
        password=unquote(parts.password) if parts.password else "",
        database=database,
    )


def _session(
    target: MysqlTarget, context: ProbeContext, work: Callable[[Connection[Any]], T]
) -> tuple[T, float]:
    """Given a target and a function of a connection, connect, run it and close.

    Return its result and the connect time in ms. Raise TargetUnreachable if the server
    cannot be reached, rejects the login, does not answer within the timeout or drops
    the session; other errors propagate. Runs in a worker thread (blocking I/O).
    """
    import pymysql

    address = parse_dsn(target.dsn)
    timeout = context.timeout_s
    started = time.perf_counter()
    try:
        connection = pymysql.connect(
            host=address.host,
            port=address.port,
            user=address.user,
            password=address.password,
            database=address.database,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            program_name="upkeep",
        )
    except pymysql.err.OperationalError as error:
        raise _unreachable(address, error, timeout, "cannot connect to MySQL at") from error
    connect_ms = (time.perf_counter() - started) * 1000
    try:
        try:
            return work(connection), connect_ms
        except pymysql.err.OperationalError as error:
            # PyMySQL reports a read that timed out, and a server that went away, as
            # "lost connection"; that is the target failing, not the probe.
            if error.args and error.args[0] in _CONNECTION_LOST:
                raise _unreachable(address, error, timeout, "lost MySQL at") from error
            raise
    finally:
        connection.close()


# CR_SERVER_GONE_ERROR and CR_SERVER_LOST, the client-side codes for a dropped session.
_CONNECTION_LOST = frozenset({2006, 2013})


def _unreachable(
    address: MysqlAddress, error: Exception, timeout: float, what: str
) -> TargetUnreachable:
    """Given a connection-level PyMySQL error, return the TargetUnreachable to raise.

    PyMySQL wraps socket timeouts in generic "lost connection" / "can't connect" errors;
    the original exception (kept as context or ``original_exception``) tells them apart.
    """
    where = f"{address.host}:{address.port}"
    cause = getattr(error, "original_exception", None) or error.__context__
    if isinstance(cause, TimeoutError):
        return TargetUnreachable(f"MySQL at {where} did not answer within {timeout:g}s")
    return TargetUnreachable(f"{what} {where}: {describe_error(error)}")


def describe_error(error: Exception) -> str:
    """Given a PyMySQL error, return its message without the error-code tuple syntax."""
    match error.args:
        case (int(code), str(text)):
            return f"{text} ({code})"
        case _:
            return one_line(error)


def _fetch_one(connection: Connection[Any], query: str) -> tuple[Any, ...]:
    """Given a connection and a query that yields one row, return it; RuntimeError if none."""
    with connection.cursor() as cursor:
        cursor.execute(query)
        row = cursor.fetchone()
    if row is None:
        raise RuntimeError("a server query that always yields one row yielded none")
    return tuple(row)


def _status(connection: Connection[Any], *names: str) -> dict[str, int]:
    """Given a connection and status variable names, return their global values as ints."""
    placeholders = ", ".join(["%s"] * len(names))
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({placeholders})", names)
        rows = cursor.fetchall()
    values = {str(name).lower(): int(value) for name, value in rows}
    missing = [name for name in names if name.lower() not in values]
    if missing:
        raise RuntimeError(f"server does not report status variables {', '.join(missing)}")
    return {name: values[name.lower()] for name in names}


async def run_session(
    target: MysqlTarget, context: ProbeContext, work: Callable[[Connection[Any]], T]
) -> tuple[T, float]:
    """Given a target and a function of a connection, run ``_session`` on a daemon thread.

    Raise TargetUnreachable if the whole session takes longer than the check's timeout
    (each socket timeout alone may not); the thread is then abandoned, not waited for.
    """
    try:
        return await run_blocking(_session, target, context, work, timeout_s=context.timeout_s)
    except TimeoutError as error:
        address = parse_dsn(target.dsn)
        raise TargetUnreachable(
            f"MySQL at {address.host}:{address.port} did not answer within {context.timeout_s:g}s"
        ) from error


class _MysqlProbe(Probe[MysqlTarget, NoParams]):
    """Shared by the MySQL probes (the DSN is checked by ``MysqlTarget`` itself)."""

    target_kind: ClassVar[str] = "mysql"


class PingProbe(_MysqlProbe):
    """Connect, ask the server its version, and time the answer."""

    name: ClassVar[str] = "ping"
    summary: ClassVar[str] = "Connect and run a trivial query: round-trip time and server version."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("latency_ms", "number", "round trip of a trivial query on an open connection"),
        MetricSpec("version", "string", "server version, e.g. 10.11.6-MariaDB"),
    )

    async def run(
        self, target: MysqlTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return query latency and version; raise TargetUnreachable if down."""

        def work(connection: Connection[Any]) -> tuple[str, float]:
            started = time.perf_counter()
            (version,) = _fetch_one(connection, "SELECT VERSION()")
            return str(version), (time.perf_counter() - started) * 1000

        (version, latency_ms), connect_ms = await run_session(target, context, work)
        return ProbeOutcome(
            metrics_from({"latency_ms": latency_ms, "version": version}),
            message=f"MySQL {version}: query {latency_ms:.1f} ms, connect {connect_ms:.1f} ms",
        )


class ConnectionsProbe(_MysqlProbe):
    """Count client threads against ``max_connections``."""

    name: ClassVar[str] = "connections"
    summary: ClassVar[str] = "Connected and running threads, and their share of max_connections."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("active", "number", "Threads_running: threads executing (this probe included)"),
        MetricSpec("idle", "number", "connected threads not running anything"),
        MetricSpec("total", "number", "Threads_connected: open client connections"),
        MetricSpec("max", "number", "the server's max_connections"),
        MetricSpec("usage_percent", "number", "total as a percentage of max"),
    )

    async def run(
        self, target: MysqlTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return connection counts; raise TargetUnreachable if down."""

        def work(connection: Connection[Any]) -> tuple[dict[str, int], int]:
            status = _status(connection, "Threads_running", "Threads_connected")
            (maximum,) = _fetch_one(connection, "SELECT @@max_connections")
            return status, int(maximum)

        (status, maximum), _ = await run_session(target, context, work)
        running = status["Threads_running"]
        connected = status["Threads_connected"]
        # The two counters are read at slightly different moments; never report fewer
        # than zero idle threads because of that.
        idle = max(connected - running, 0)
        usage = connected / maximum * 100.0 if maximum else 0.0
        return ProbeOutcome(
            metrics_from(
                {
                    "active": running,
                    "idle": idle,
                    "total": connected,
                    "max": maximum,
                    "usage_percent": usage,
                }
            ),
            message=(
                f"{connected} of {maximum} connections ({usage:.1f}%): "
                f"{running} running, {idle} idle"
            ),
        )


# Server error codes of a query stopped by the limits set for it: ER_LOCK_WAIT_TIMEOUT,
# ER_LOCK_DEADLOCK, MySQL's ER_QUERY_TIMEOUT (max_execution_time), MariaDB's
# ER_STATEMENT_TIMEOUT (max_statement_time), and ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION.
_LOCK_WAIT = frozenset({1205, 1213})
_STATEMENT_TIMEOUT = frozenset({3024, 1969})
_READ_ONLY = 1792


def is_mariadb(connection: Connection[Any]) -> bool:
    """Given a connection, return whether the server is MariaDB (its version says so)."""
    (version,) = _fetch_one(connection, "SELECT VERSION()")
    return "mariadb" in str(version).lower()


def set_session_limits(
    connection: Connection[Any], *, statement_s: float, lock_wait_s: float
) -> None:
    """Given a connection, cap every later statement of its session at ``statement_s`` and
    every lock wait at ``lock_wait_s`` (InnoDB rows and metadata locks take whole seconds,
    at least 1).

    MariaDB's ``max_statement_time`` (seconds) covers every statement; MySQL's
    ``max_execution_time`` (ms) covers only SELECT, so a write there is bounded by the
    lock waits and the client's read timeout.
    """
    lock_s = max(1, math.ceil(lock_wait_s))
    with connection.cursor() as cursor:
        if is_mariadb(connection):
            cursor.execute("SET SESSION max_statement_time = %s", (statement_s,))
        else:
            cursor.execute(
                "SET SESSION max_execution_time = %s", (max(1, math.ceil(statement_s * 1000)),)
            )
        cursor.execute(
            "SET SESSION innodb_lock_wait_timeout = %s, lock_wait_timeout = %s", (lock_s, lock_s)
        )


def error_code(error: Exception) -> int | None:
    """Given a PyMySQL error, return the server's error code (None if it has none)."""
    match error.args:
        case (int(code), *_):
            return code
        case _:
            return None


class QueryProbe(QueryProbeMixin, Probe[MysqlTarget, QueryParams]):
    """Run a configured query in a read-only transaction; its named columns are metrics."""

    target_kind: ClassVar[str] = "mysql"
    dialect: ClassVar[Dialect] = "mysql"

    async def run(
        self, target: MysqlTarget, params: QueryParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target and a query, return its metrics (see ``probes/sql.py``).

        The session is set ``TRANSACTION READ ONLY`` with the statement limit
        (``max_statement_time`` on MariaDB, ``max_execution_time`` on MySQL) and lock wait
        limits, and the query runs in a ``START TRANSACTION READ ONLY`` that is rolled back.
        PyMySQL sends one statement only (multi-statements stay off). Raise
        TargetUnreachable if the server is down, QueryFailed if the query writes, times
        out, fails, or returns no metrics.
        """
        import pymysql

        self.refuse_writing(params)
        statement_s = statement_timeout_s(params, context.timeout_s)

        def work(connection: Connection[Any]) -> QueryResult:
            set_session_limits(
                connection,
                statement_s=statement_s,
                lock_wait_s=params.lock_timeout.total_seconds(),
            )
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
                cursor.execute("START TRANSACTION READ ONLY")
                started = time.perf_counter()
                try:
                    # No args: PyMySQL then leaves % in the query alone.
                    cursor.execute(params.query)
                    rows = cursor.fetchmany(params.max_rows + 1) if cursor.description else ()
                except pymysql.err.MySQLError as error:
                    code = error_code(error)
                    if code in _CONNECTION_LOST:
                        raise
                    raise _query_failed(error, code, params, statement_s) from error
                elapsed_ms = (time.perf_counter() - started) * 1000
                columns = [str(column[0]) for column in cursor.description or ()]
            connection.rollback()
            return QueryResult(columns, [tuple(row) for row in rows], elapsed_ms)

        result, _ = await run_session(target, context, work)
        metrics, message = result_metrics(result, params)
        return ProbeOutcome(metrics, message=message)


def _query_failed(
    error: Exception, code: int | None, params: QueryParams, statement_s: float
) -> QueryFailed:
    """Given a PyMySQL error of the configured query, return the QueryFailed to raise."""
    if code == _READ_ONLY:
        return QueryFailed(
            f"the query tried to write, and query checks run read-only: {describe_error(error)}"
        )
    if code in _LOCK_WAIT:
        return QueryFailed(
            f"the query waited longer than lock_timeout "
            f"({params.lock_timeout.total_seconds():g}s) for a lock"
        )
    if code in _STATEMENT_TIMEOUT:
        return QueryFailed(f"the query ran longer than statement_timeout ({statement_s:g}s)")
    return QueryFailed(f"the query failed: {describe_error(error)}")


# Schemas of the server itself: never judged by the index and fragmentation probes.
_SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")


def _read_only(connection: Connection[Any], statement_s: float) -> None:
    """Given a connection, bound its session and make every later statement read-only."""
    set_session_limits(connection, statement_s=statement_s, lock_wait_s=min(statement_s, 5.0))
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")


def _schema_filter() -> str:
    """Return the WHERE clause that picks the DSN's database, or every user schema if the
    DSN names none (its one bound value is the system schemas' tuple)."""
    return "TABLE_SCHEMA = COALESCE(DATABASE(), TABLE_SCHEMA) AND TABLE_SCHEMA NOT IN %s"


@dataclass(frozen=True)
class IndexShape:
    """One index as information_schema.STATISTICS describes it."""

    table: str
    name: str
    unique: bool
    kind: str
    columns: tuple[tuple[str, int | None], ...]
    """(column, prefix length) in index order."""

    @property
    def label(self) -> str:
        """Return ``table.index`` for messages."""
        return f"{self.table}.{self.name}"


def index_shapes(rows: list[tuple[Any, ...]]) -> list[IndexShape]:
    """Given STATISTICS rows (schema, table, index, non_unique, type, seq, column, sub_part)
    ordered by table, index and seq, return one IndexShape per index."""
    grouped: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault((str(row[0]), str(row[1]), str(row[2])), []).append(row)
    shapes = []
    for (schema, table, name), parts in grouped.items():
        first = parts[0]
        shapes.append(
            IndexShape(
                table=f"{schema}.{table}",
                name=name,
                unique=not int(first[3]),
                kind=str(first[4]),
                columns=tuple(
                    (str(part[6]), None if part[7] is None else int(part[7])) for part in parts
                ),
            )
        )
    return shapes


def duplicate_and_redundant(
    shapes: list[IndexShape],
) -> tuple[list[tuple[IndexShape, IndexShape]], list[tuple[IndexShape, IndexShape]]]:
    """Given the indexes of some tables, return (duplicates, redundant) as pairs of
    (the index that could go, the one that covers it).

    A duplicate has the same type and columns, in the same order, as another index of its
    table; of the pair, the non-unique one (or the later name) is the one that could go, and
    PRIMARY never is. A redundant index is a strict left prefix of another of the same type,
    and is not unique itself (a unique index enforces a rule its wider cover does not).
    """
    by_table: dict[str, list[IndexShape]] = {}
    for shape in shapes:
        by_table.setdefault(shape.table, []).append(shape)
    duplicates: list[tuple[IndexShape, IndexShape]] = []
    redundant: list[tuple[IndexShape, IndexShape]] = []
    for indexes in by_table.values():
        seen: set[str] = set()
        for index in indexes:
            for other in indexes:
                if other is index or other.kind != index.kind:
                    continue
                if other.columns == index.columns:
                    keep = sorted(
                        (index, other),
                        key=lambda shape: (shape.name != "PRIMARY", not shape.unique, shape.name),
                    )[0]
                    drop = other if keep is index else index
                    if drop.name not in seen:
                        seen.add(drop.name)
                        duplicates.append((drop, keep))
                elif (
                    not index.unique
                    and len(index.columns) < len(other.columns)
                    and other.columns[: len(index.columns)] == index.columns
                    and index.name not in seen
                ):
                    seen.add(index.name)
                    redundant.append((index, other))
    return duplicates, redundant


def _pairs(pairs: list[tuple[IndexShape, IndexShape]], limit: int = 5) -> str:
    """Given (index, cover) pairs, return them as ``a.b (covered by c)``, at most ``limit``."""
    shown = [f"{drop.label} (covered by {keep.name})" for drop, keep in pairs[:limit]]
    more = f" and {len(pairs) - limit} more" if len(pairs) > limit else ""
    return ", ".join(shown) + more


class IndexesProbe(_MysqlProbe):
    """Duplicate, redundant and (where performance_schema is on) unused indexes."""

    name: ClassVar[str] = "indexes"
    summary: ClassVar[str] = (
        "Duplicate and redundant (left-prefix) indexes from information_schema, and unused "
        "ones from performance_schema when it is on; names only, never data."
    )
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "indexes", "number", "indexes in the DSN's database (every user schema if none)"
        ),
        MetricSpec(
            "duplicate", "number", "indexes with the same columns as another of their table"
        ),
        MetricSpec(
            "redundant", "number", "non-unique indexes that are a left prefix of another one"
        ),
        MetricSpec(
            "unused",
            "number",
            "non-PRIMARY indexes with no reads or writes since the server started "
            "(absent when performance_schema is off)",
        ),
    )

    async def run(
        self, target: MysqlTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return index counts with the offending names in the message.

        Reads information_schema.STATISTICS (and, if ``@@performance_schema`` is 1,
        table_io_waits_summary_by_index_usage) in a read-only, time-limited session. Raise
        TargetUnreachable if the server is down.
        """

        def work(connection: Connection[Any]) -> tuple[list[IndexShape], list[str] | None]:
            _read_only(connection, context.timeout_s)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, INDEX_TYPE, "
                    "SEQ_IN_INDEX, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
                    f"WHERE {_schema_filter()} "
                    "ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
                    (_SYSTEM_SCHEMAS,),
                )
                rows = [tuple(row) for row in cursor.fetchall()]
            (enabled,) = _fetch_one(connection, "SELECT @@performance_schema")
            unused: list[str] | None = None
            if int(enabled):
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT OBJECT_SCHEMA, OBJECT_NAME, INDEX_NAME "
                        "FROM performance_schema.table_io_waits_summary_by_index_usage "
                        "WHERE INDEX_NAME IS NOT NULL AND INDEX_NAME <> 'PRIMARY' "
                        "AND COUNT_STAR = 0 "
                        "AND OBJECT_SCHEMA = COALESCE(DATABASE(), OBJECT_SCHEMA) "
                        "AND OBJECT_SCHEMA NOT IN %s ORDER BY 1, 2, 3",
                        (_SYSTEM_SCHEMAS,),
                    )
                    unused = [f"{s}.{t}.{i}" for s, t, i in cursor.fetchall()]
            return index_shapes(rows), unused

        (shapes, unused), _ = await run_session(target, context, work)
        duplicates, redundant = duplicate_and_redundant(shapes)
        values: dict[str, float | str] = {
            "indexes": len(shapes),
            "duplicate": len(duplicates),
            "redundant": len(redundant),
        }
        parts = [f"{len(shapes)} indexes"]
        parts.append(
            f"{len(duplicates)} duplicate: {_pairs(duplicates)}" if duplicates else "no duplicates"
        )
        parts.append(
            f"{len(redundant)} redundant: {_pairs(redundant)}" if redundant else "none redundant"
        )
        if unused is None:
            parts.append(
                "unused not measured: performance_schema is off "
                "(set performance_schema=ON in the server config and restart)"
            )
        else:
            values["unused"] = len(unused)
            shown = ", ".join(unused[:5]) + (
                f" and {len(unused) - 5} more" if len(unused) > 5 else ""
            )
            parts.append(
                f"{len(unused)} unused since the server started: {shown}"
                if unused
                else "none unused since the server started"
            )
        return ProbeOutcome(metrics_from(values), message="; ".join(parts))


class FragmentationParams(StrictModel):
    """Params of the MySQL ``fragmentation`` probe."""

    min_free_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=0,
        le=2**60,
        description="a table counts as fragmented only with at least this much DATA_FREE",
    )
    min_free_percent: float = Field(
        default=20.0,
        ge=0,
        le=100,
        description="... and only if DATA_FREE is at least this share of data + index + free",
    )


class FragmentationProbe(Probe[MysqlTarget, FragmentationParams]):
    """Tables whose free space (DATA_FREE) is large against their size."""

    target_kind: ClassVar[str] = "mysql"
    name: ClassVar[str] = "fragmentation"
    summary: ClassVar[str] = (
        "Tables whose DATA_FREE is large in bytes and against their size "
        "(candidates for mysql.optimize); the worst is named."
    )
    Params: ClassVar[type[StrictModel]] = FragmentationParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("fragmented", "number", "tables past both min_free_bytes and min_free_percent"),
        MetricSpec("free_bytes_max", "number", "the largest DATA_FREE of any table"),
    )

    async def run(
        self, target: MysqlTarget, params: FragmentationParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target and thresholds, return the fragmented tables' count and the
        largest free space, naming the worst tables. Raise TargetUnreachable if down."""

        def work(connection: Connection[Any]) -> list[tuple[str, int, int]]:
            _read_only(connection, context.timeout_s)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), "
                    "COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0), "
                    "COALESCE(DATA_FREE, 0) FROM information_schema.TABLES "
                    f"WHERE TABLE_TYPE = 'BASE TABLE' AND {_schema_filter()} "
                    "ORDER BY 3 DESC",
                    (_SYSTEM_SCHEMAS,),
                )
                return [(str(n), int(size), int(free)) for n, size, free in cursor.fetchall()]

        tables, _ = await run_session(target, context, work)
        fragmented = [
            (name, size, free)
            for name, size, free in tables
            if free >= params.min_free_bytes
            and free > 0
            and free * 100.0 / (size + free) >= params.min_free_percent
        ]
        free_max = max((free for _, _, free in tables), default=0)
        if fragmented:
            shown = ", ".join(
                f"{name} ({free:,} bytes free, {free * 100.0 / (size + free):.0f}% of "
                f"{size + free:,})"
                for name, size, free in fragmented[:5]
            )
            more = f" and {len(fragmented) - 5} more" if len(fragmented) > 5 else ""
            message = f"{len(fragmented)} of {len(tables)} tables fragmented: {shown}{more}"
        else:
            message = (
                f"none of {len(tables)} tables has {params.min_free_bytes:,}+ bytes and "
                f"{params.min_free_percent:g}%+ free; largest free {free_max:,} bytes"
            )
        return ProbeOutcome(
            metrics_from({"fragmented": len(fragmented), "free_bytes_max": free_max}),
            message=message,
        )
