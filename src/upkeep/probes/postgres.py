"""PostgreSQL targets: reachability, connections, long queries, replication, size, vacuum, cache.

Every probe opens one short-lived connection (autocommit, so statistics views are read
fresh rather than from a transaction snapshot), runs one or two catalog queries and closes
it. psycopg is imported inside the functions that use it: importing it costs more than the
rest of the CLI's start-up, and most commands never touch PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, LiteralString

from pydantic import field_validator

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel
from upkeep.core.redaction import SecretMarker
from upkeep.core.text import format_bytes, human_duration, one_line
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
    QueryFailed,
    QueryParams,
    QueryProbeMixin,
    QueryResult,
    result_metrics,
    statement_timeout_s,
    validate_params,
    writing_problem,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection

Row = tuple[Any, ...]


_DSN_HINT = (
    "write postgresql://user:password@host:port/database (percent-encode special characters "
    "in the user name and password) or libpq key=value pairs"
)


def check_dsn(dsn: str) -> None:
    """Given a DSN, return if libpq parses it and every port is a number; raise ValueError.

    The message never quotes the DSN, nor libpq's own message, which quotes the text it
    stumbled on (often part of a password whose special characters were not encoded).
    psycopg is imported here, so only configs with PostgreSQL targets pay for it.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        options = conninfo_to_dict(dsn)
    except psycopg.Error:
        raise ValueError(f"the DSN cannot be parsed; {_DSN_HINT}") from None
    # libpq parses "postgresql://app:pa/ss@db/x" as host "app", port "pa": the parse
    # succeeds and connecting fails later, quoting the port. Ports are checked here.
    for port in str(options.get("port") or "").split(","):
        text = port.strip()
        if text and not (text.isdigit() and 1 <= int(text) <= 65535):
            raise ValueError(f"the DSN's port is not a number from 1 to 65535; {_DSN_HINT}")


class PostgresTarget(TargetBase):
    """A PostgreSQL database, addressed by a libpq DSN (URL or ``key=value`` form).

    The DSN is parsed by libpq when the config is validated, so a malformed one is
    reported at ``targets.<name>.dsn`` by ``upkeep validate``, not when a check runs.
    """

    kind: Literal["postgres"] = "postgres"
    dsn: Annotated[str, SecretMarker(part="password")]

    @field_validator("dsn")
    @classmethod
    def _parses(cls, value: str) -> str:
        check_dsn(value)
        return value


@asynccontextmanager
async def _connect(
    target: PostgresTarget, context: ProbeContext
) -> AsyncIterator[AsyncConnection[Row]]:
    """Given a target, yield an open autocommit connection and close it afterwards.

    The whole block, connecting and querying, must finish within ``context.timeout_s``.
    Raise TargetUnreachable if the server refuses, rejects the login or does not answer in
    time; errors of the queries themselves propagate unchanged.
    """
    import psycopg

    try:
        async with asyncio.timeout(context.timeout_s):
            try:
                connection = await psycopg.AsyncConnection.connect(
                    target.dsn,
                    autocommit=True,
                    # libpq takes whole seconds (and at least 2); the asyncio deadline
                    # around this block enforces the exact, possibly shorter, timeout.
                    connect_timeout=max(1, math.ceil(context.timeout_s)),
                    application_name="upkeep",
                )
            except psycopg.OperationalError as error:
                raise TargetUnreachable(
                    f"cannot connect to PostgreSQL: {one_line(error)}"
                ) from error
            try:
                yield connection
            finally:
                await connection.close()
    except TimeoutError as error:
        raise TargetUnreachable(
            f"PostgreSQL did not answer within {context.timeout_s:g}s"
        ) from error


async def _fetch_one(
    connection: AsyncConnection[Row], query: LiteralString, params: tuple[Any, ...] = ()
) -> Row:
    """Given a connection and a query that yields one row, return that row.

    Raise RuntimeError if the query yields no row, which would be a bug in the query.
    """
    cursor = await connection.execute(query, params or None)
    row = await cursor.fetchone()
    if row is None:
        raise RuntimeError("a catalog query that always yields one row yielded none")
    return row


def _percent(part: float, whole: float) -> float:
    """Given a part and a whole, return part/whole as a percentage (0.0 if whole is 0)."""
    return part / whole * 100.0 if whole else 0.0


class PingProbe(Probe[PostgresTarget, NoParams]):
    """Connect, ask the server its version, and time the answer."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "ping"
    summary: ClassVar[str] = "Connect and run a trivial query: round-trip time and server version."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("latency_ms", "number", "round trip of a trivial query on an open connection"),
        MetricSpec("version", "string", "server version, e.g. 16.3"),
    )

    async def run(
        self, target: PostgresTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return query latency and version; raise TargetUnreachable if down."""
        started = time.perf_counter()
        async with _connect(target, context) as connection:
            connected = time.perf_counter()
            (server_version,) = await _fetch_one(
                connection, "SELECT current_setting('server_version')"
            )
            answered = time.perf_counter()
        # server_version reads like "16.3 (Debian 16.3-1)"; the first word is the version.
        version = str(server_version).split()[0]
        latency_ms = (answered - connected) * 1000
        connect_ms = (connected - started) * 1000
        return ProbeOutcome(
            metrics_from({"latency_ms": latency_ms, "version": version}),
            message=f"PostgreSQL {version}: query {latency_ms:.1f} ms, connect {connect_ms:.1f} ms",
        )


class ConnectionsProbe(Probe[PostgresTarget, NoParams]):
    """Count client connections against ``max_connections``."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "connections"
    summary: ClassVar[str] = "Client connections by state, and their share of max_connections."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("active", "number", "client backends running a query (this probe included)"),
        MetricSpec("idle", "number", "client backends waiting, including idle in transaction"),
        MetricSpec("total", "number", "all client backends"),
        MetricSpec("max", "number", "the server's max_connections"),
        MetricSpec("usage_percent", "number", "total as a percentage of max"),
    )

    async def run(
        self, target: PostgresTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return connection counts; raise TargetUnreachable if down.

        Only client backends count: background workers and WAL senders do not take
        ``max_connections`` slots. Without pg_read_all_stats another role's backends have
        no visible state, so they count in ``total`` but in neither ``active`` nor ``idle``.
        """
        async with _connect(target, context) as connection:
            active, idle, idle_in_transaction, total, maximum = await _fetch_one(
                connection,
                """
                SELECT count(*) FILTER (WHERE state = 'active'),
                       count(*) FILTER (WHERE state LIKE 'idle%'),
                       count(*) FILTER (WHERE state LIKE 'idle in transaction%'),
                       count(*),
                       current_setting('max_connections')::int
                FROM pg_stat_activity
                WHERE backend_type = 'client backend'
                """,
            )
        usage = _percent(total, maximum)
        return ProbeOutcome(
            metrics_from(
                {
                    "active": int(active),
                    "idle": int(idle),
                    "total": int(total),
                    "max": int(maximum),
                    "usage_percent": usage,
                }
            ),
            message=(
                f"{total} of {maximum} connections ({usage:.1f}%): {active} active, "
                f"{idle} idle ({idle_in_transaction} idle in transaction)"
            ),
        )


class LongQueriesParams(StrictModel):
    """Params of ``long_queries``: how long a query may run before it counts."""

    over: Duration = timedelta(seconds=30)


class LongQueriesProbe(Probe[PostgresTarget, LongQueriesParams]):
    """Count queries that have been running for longer than ``over``."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "long_queries"
    summary: ClassVar[str] = "Active queries running longer than `over` (default 30s)."
    Params: ClassVar[type[StrictModel]] = LongQueriesParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("count", "number", "active queries running longer than `over`"),
        MetricSpec("longest_s", "number", "run time of the longest of them (0 if none)"),
    )

    async def run(
        self, target: PostgresTarget, params: LongQueriesParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target and ``over``, return the count and longest run time of slow queries.

        This probe's own backend is excluded. Raise TargetUnreachable if the server is down.
        """
        async with _connect(target, context) as connection:
            count, longest_s = await _fetch_one(
                connection,
                """
                SELECT count(*),
                       coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0)
                           ::float8
                FROM pg_stat_activity
                WHERE state = 'active'
                  AND backend_type = 'client backend'
                  AND pid <> pg_backend_pid()
                  AND clock_timestamp() - query_start > %s
                """,
                (params.over,),
            )
        over_s = params.over.total_seconds()
        message = (
            f"{count} queries running longer than {over_s:g}s, longest {longest_s:.1f}s"
            if count
            else f"no query running longer than {over_s:g}s"
        )
        return ProbeOutcome(
            metrics_from({"count": int(count), "longest_s": float(longest_s)}), message=message
        )


class ReplicationProbe(Probe[PostgresTarget, NoParams]):
    """Measure replication lag from whichever side of replication the target is on."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "replication"
    summary: ClassVar[str] = "Replication lag in bytes and seconds, and the number of replicas."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("lag_bytes", "number", "WAL not yet replayed (worst replica on a primary)"),
        MetricSpec("lag_s", "number", "replay delay in seconds (worst replica on a primary)"),
        MetricSpec("replicas", "number", "standbys streaming from this server"),
    )

    async def run(
        self, target: PostgresTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return its replication lag; raise TargetUnreachable if down.

        On a primary the lag is the largest over ``pg_stat_replication`` (0 with no
        replicas); its seconds are ``replay_lag`` as last reported by the replica, which
        grows in steps of ``wal_receiver_status_interval`` (10 s by default) while replay
        is stuck, so ``lag_bytes`` is the quicker signal.
        On a standby it is received-but-unreplayed WAL and the age of the last replayed
        transaction (0 while everything received is replayed, since an idle primary
        sends nothing newer to compare with). ``replicas`` counts servers streaming from
        this one, so a standby reports only cascading replicas.
        """
        async with _connect(target, context) as connection:
            (in_recovery,) = await _fetch_one(connection, "SELECT pg_is_in_recovery()")
            # pg_basebackup's WAL sender shows up in pg_stat_replication as 'backup';
            # it is a copy in progress, not a replica. replay_lag keeps its last measured
            # value for a while after a replica has caught up, so a replica that has
            # replayed everything counts as 0 seconds behind, as it is.
            replicas, worst_bytes, worst_s = await _fetch_one(
                connection,
                """
                WITH here AS (
                    SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                                ELSE pg_current_wal_lsn() END AS lsn
                )
                SELECT count(*),
                       coalesce(max(greatest(pg_wal_lsn_diff(here.lsn, replay_lsn), 0)), 0)
                           ::bigint,
                       coalesce(max(CASE WHEN replay_lsn >= here.lsn THEN 0
                                         ELSE extract(epoch FROM replay_lag) END), 0)::float8
                FROM pg_stat_replication, here
                WHERE state <> 'backup'
                """,
            )
            if in_recovery:
                lag_bytes, lag_s, replayed_any = await _fetch_one(
                    connection,
                    """
                    SELECT coalesce(greatest(pg_wal_lsn_diff(pg_last_wal_receive_lsn(),
                                                             pg_last_wal_replay_lsn()), 0),
                                    0)::bigint,
                           CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                                THEN 0
                                ELSE coalesce(extract(epoch FROM clock_timestamp()
                                                      - pg_last_xact_replay_timestamp()), 0)
                           END::float8,
                           pg_last_xact_replay_timestamp() IS NOT NULL
                    """,
                )
                message = (
                    f"standby: {format_bytes(lag_bytes)} and {human_duration(lag_s)} "
                    "behind its primary"
                )
                if not replayed_any:
                    message += " (no transaction replayed yet)"
            else:
                lag_bytes, lag_s = worst_bytes, worst_s
                message = (
                    f"primary with {replicas} replicas, worst {format_bytes(lag_bytes)} / "
                    f"{human_duration(lag_s)}"
                    if replicas
                    else "primary with no replicas"
                )
        return ProbeOutcome(
            metrics_from(
                {"lag_bytes": int(lag_bytes), "lag_s": float(lag_s), "replicas": int(replicas)}
            ),
            message=message,
        )


class SizeProbe(Probe[PostgresTarget, NoParams]):
    """Measure the database and its largest table."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "size"
    summary: ClassVar[str] = "Size of the database and of its largest table (with indexes, TOAST)."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("bytes", "number", "pg_database_size of the connected database"),
        MetricSpec(
            "largest_table_bytes",
            "number",
            "largest user table incl. indexes and TOAST (0 if none)",
        ),
    )

    async def run(
        self, target: PostgresTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return database and largest-table sizes; raise TargetUnreachable."""
        async with _connect(target, context) as connection:
            database, size, largest, largest_name = await _fetch_one(
                connection,
                """
                SELECT current_database(),
                       pg_database_size(current_database()),
                       coalesce(max(pg_total_relation_size(relid)), 0),
                       (SELECT schemaname || '.' || relname FROM pg_stat_user_tables
                        ORDER BY pg_total_relation_size(relid) DESC LIMIT 1)
                FROM pg_stat_user_tables
                """,
            )
        message = f"database {database}: {format_bytes(size)}"
        if largest_name is not None:
            message += f"; largest table {largest_name}: {format_bytes(largest)}"
        return ProbeOutcome(
            metrics_from({"bytes": int(size), "largest_table_bytes": int(largest)}),
            message=message,
        )


class VacuumProbe(Probe[PostgresTarget, NoParams]):
    """Report dead tuples, stale statistics and tables past their effective autovacuum
    and autoanalyze thresholds."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "vacuum"
    summary: ClassVar[str] = (
        "Dead-tuple share, tables past their effective autovacuum / autoanalyze / insert "
        "thresholds (per-table settings included), age of the oldest analyze."
    )
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("dead_tuple_percent_max", "number", "highest dead/(live+dead) of any table"),
        MetricSpec(
            "tables_needing_vacuum",
            "number",
            "tables whose dead tuples exceed their effective autovacuum threshold",
        ),
        MetricSpec(
            "tables_needing_analyze",
            "number",
            "tables whose rows changed since the last analyze exceed their effective "
            "autoanalyze threshold",
        ),
        MetricSpec(
            "tables_needing_insert_vacuum",
            "number",
            "tables whose rows inserted since the last vacuum exceed their effective insert "
            "threshold (PostgreSQL 13+; 0 before)",
        ),
        MetricSpec(
            "vacuum_threshold_ratio_max",
            "number",
            "dead tuples / effective autovacuum threshold of the table furthest past it",
        ),
        MetricSpec(
            "autovacuum_disabled_tables",
            "number",
            "tables with autovacuum_enabled = false (all tables if autovacuum is off)",
        ),
        MetricSpec(
            "oldest_analyze_s",
            "number",
            "seconds since the least recently analysed table was last analysed",
        ),
    )

    async def run(
        self, target: PostgresTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return vacuum and analyze health; raise TargetUnreachable if down.

        Each threshold is the one autovacuum itself applies: ``base + scale_factor *
        reltuples``, where base and scale factor come from the table's storage parameters
        (``ALTER TABLE ... SET (autovacuum_vacuum_threshold = ...)``) or else the server's
        settings, and are compared with ``n_dead_tup`` (vacuum), ``n_mod_since_analyze``
        (analyze) and ``n_ins_since_vacuum`` (insert-triggered vacuum, PostgreSQL 13+;
        a base of -1 disables it); on PostgreSQL 18+ ``autovacuum_vacuum_max_threshold``
        caps the vacuum threshold. Tables for which autovacuum is disabled still count
        when past a threshold: nothing will vacuum them. A table never analysed counts
        from when statistics began: the database's stats reset, else the server's start.
        Only counters and catalog rows are read, never a table.
        """
        async with _connect(target, context) as connection:
            await _limit_statements(connection, context.timeout_s)
            (version,) = await _fetch_one(
                connection, "SELECT current_setting('server_version_num')::int"
            )
            cursor = await connection.execute(_vacuum_query(int(version)))
            row = await cursor.fetchone()
        if row is None:
            raise RuntimeError("a catalog query that always yields one row yielded none")
        (
            tables,
            dead_max,
            needing,
            needing_analyze,
            needing_insert,
            ratio_max,
            disabled,
            oldest_s,
            never_analysed,
            worst_vacuum,
            worst_analyze,
            worst_insert,
        ) = row
        parts = [f"{tables} tables: {needing} past their vacuum threshold"]
        if worst_vacuum is not None:
            parts[0] += f" (worst {_threshold_evidence(worst_vacuum, 'dead tuples')})"
        parts.append(f"{needing_analyze} past their analyze threshold")
        if worst_analyze is not None:
            parts[-1] += f" (worst {_threshold_evidence(worst_analyze, 'rows changed')})"
        if int(version) >= _PG13:
            parts.append(f"{needing_insert} past their insert threshold")
            if worst_insert is not None:
                parts[-1] += f" (worst {_threshold_evidence(worst_insert, 'rows inserted')})"
        parts.append(f"{disabled} with autovacuum disabled")
        parts.append(f"worst {dead_max:.1f}% dead tuples")
        parts.append(f"oldest analyze {oldest_s:.0f}s ago ({never_analysed} never analysed)")
        return ProbeOutcome(
            metrics_from(
                {
                    "dead_tuple_percent_max": float(dead_max),
                    "tables_needing_vacuum": int(needing),
                    "tables_needing_analyze": int(needing_analyze),
                    "tables_needing_insert_vacuum": int(needing_insert),
                    "vacuum_threshold_ratio_max": float(ratio_max),
                    "autovacuum_disabled_tables": int(disabled),
                    "oldest_analyze_s": float(oldest_s),
                }
            ),
            message="; ".join(parts),
        )


_PG13 = 130000
_PG18 = 180000


def _vacuum_query(version: int) -> LiteralString:
    """Given ``server_version_num``, return the vacuum probe's one-row query.

    Its columns: table count, highest dead-tuple percent, counts past the vacuum, analyze
    and insert thresholds, the highest dead/threshold ratio, tables with autovacuum off,
    seconds since the oldest analyze, tables never analysed, and for each of the three
    thresholds the table furthest past it as ``name|observed|threshold|disabled`` (NULL
    if none is past it).
    """
    inserted: LiteralString = "s.n_ins_since_vacuum" if version >= _PG13 else "NULL::bigint"
    # PostgreSQL 18 caps the vacuum threshold of big tables; -1 turns the cap off.
    cap: LiteralString = (
        "coalesce(vac_max::float8, current_setting('autovacuum_vacuum_max_threshold')::float8)"
        if version >= _PG18
        else "-1::float8"
    )
    insert_base: LiteralString = (
        "coalesce(ins_base::float8, current_setting('autovacuum_vacuum_insert_threshold')::float8)"
        if version >= _PG13
        else "-1::float8"
    )
    insert_scale: LiteralString = (
        "coalesce(ins_scale::float8, "
        "current_setting('autovacuum_vacuum_insert_scale_factor')::float8)"
        if version >= _PG13
        else "0::float8"
    )
    return (
        """
        WITH since AS (
            SELECT coalesce(stats_reset, pg_postmaster_start_time()) AS at
            FROM pg_stat_database WHERE datname = current_database()
        ),
        options AS (
            SELECT s.relid,
                   s.schemaname || '.' || s.relname AS name,
                   s.n_dead_tup, s.n_live_tup, s.n_mod_since_analyze,
                   """
        + inserted
        + """ AS n_ins,
                   s.last_analyze, s.last_autoanalyze,
                   -- -1 (PostgreSQL 14+) means never vacuumed nor analysed: autovacuum
                   -- then takes 0 rows.
                   greatest(c.reltuples, 0)::float8 AS reltuples,
                   o.*
            FROM pg_stat_user_tables s
            JOIN pg_class c ON c.oid = s.relid
            CROSS JOIN LATERAL (
                SELECT max(option_value) FILTER (WHERE option_name = 'autovacuum_enabled')
                           AS enabled,
                       max(option_value) FILTER (
                           WHERE option_name = 'autovacuum_vacuum_threshold') AS vac_base,
                       max(option_value) FILTER (
                           WHERE option_name = 'autovacuum_vacuum_scale_factor') AS vac_scale,
                       max(option_value) FILTER (
                           WHERE option_name = 'autovacuum_vacuum_max_threshold') AS vac_max,
                       max(option_value) FILTER (
                           WHERE option_name = 'autovacuum_analyze_threshold') AS anl_base,
                       max(option_value) FILTER (
                           WHERE option_name = 'autovacuum_analyze_scale_factor')
                           AS anl_scale,
                       max(option_value) FILTER (
                           WHERE option_name = 'autovacuum_vacuum_insert_threshold')
                           AS ins_base,
                       max(option_value) FILTER (
                           WHERE option_name = 'autovacuum_vacuum_insert_scale_factor')
                           AS ins_scale
                FROM pg_options_to_table(c.reloptions)
            ) o
            -- Partitioned parents hold no rows; autovacuum visits their partitions.
            WHERE c.relkind IN ('r', 'm')
        ),
        limits AS (
            SELECT name, n_dead_tup, n_live_tup, n_mod_since_analyze, n_ins,
                   last_analyze, last_autoanalyze,
                   NOT (current_setting('autovacuum')::bool
                        AND coalesce(enabled::bool, true)) AS disabled,
                   CASE WHEN """
        + cap
        + """ >= 0
                        THEN least(raw_vacuum, """
        + cap
        + """)
                        ELSE raw_vacuum END AS vacuum_limit,
                   coalesce(anl_base::float8,
                            current_setting('autovacuum_analyze_threshold')::float8)
                   + coalesce(anl_scale::float8,
                              current_setting('autovacuum_analyze_scale_factor')::float8)
                     * reltuples AS analyze_limit,
                   CASE WHEN """
        + insert_base
        + """ >= 0
                        THEN """
        + insert_base
        + " + "
        + insert_scale
        + """ * reltuples
                   END AS insert_limit
            FROM options
            CROSS JOIN LATERAL (
                SELECT coalesce(vac_base::float8,
                                current_setting('autovacuum_vacuum_threshold')::float8)
                       + coalesce(vac_scale::float8,
                                  current_setting('autovacuum_vacuum_scale_factor')::float8)
                         * reltuples AS raw_vacuum
            ) r
        )
        SELECT count(*),
               coalesce(max(100.0 * n_dead_tup
                            / nullif(n_live_tup + n_dead_tup, 0)), 0)::float8,
               count(*) FILTER (WHERE n_dead_tup > vacuum_limit),
               count(*) FILTER (WHERE n_mod_since_analyze > analyze_limit),
               count(*) FILTER (WHERE n_ins > insert_limit),
               coalesce(max(n_dead_tup / greatest(vacuum_limit, 1)), 0)::float8,
               count(*) FILTER (WHERE disabled),
               coalesce(extract(epoch FROM clock_timestamp() - min(coalesce(
                   greatest(last_analyze, last_autoanalyze),
                   (SELECT at FROM since)))), 0)::float8,
               count(*) FILTER (WHERE last_analyze IS NULL AND last_autoanalyze IS NULL),
               (SELECT concat_ws('|', name, n_dead_tup, round(vacuum_limit), disabled)
                FROM limits WHERE n_dead_tup > vacuum_limit
                ORDER BY n_dead_tup / greatest(vacuum_limit, 1) DESC, name LIMIT 1),
               (SELECT concat_ws('|', name, n_mod_since_analyze, round(analyze_limit),
                                 disabled)
                FROM limits WHERE n_mod_since_analyze > analyze_limit
                ORDER BY n_mod_since_analyze / greatest(analyze_limit, 1) DESC, name
                LIMIT 1),
               (SELECT concat_ws('|', name, n_ins, round(insert_limit), disabled)
                FROM limits WHERE n_ins > insert_limit
                ORDER BY n_ins / greatest(insert_limit, 1) DESC, name LIMIT 1)
        FROM limits
        """
    )


def _threshold_evidence(packed: str, what: str) -> str:
    """Given ``name|observed|threshold|disabled`` from the vacuum query and what was
    counted, return e.g. ``public.t: 500 dead tuples, threshold 150 (3.3x)``."""
    name, observed, threshold, disabled = packed.rsplit("|", 3)
    ratio = float(observed) / max(float(threshold), 1.0)
    text = f"{name}: {observed} {what}, threshold {threshold} ({ratio:.1f}x)"
    if disabled in ("t", "true"):  # concat_ws writes booleans as t/f
        text += ", autovacuum disabled"
    return text


async def _limit_statements(connection: AsyncConnection[Row], timeout_s: float) -> None:
    """Given an open connection and the check's timeout, make the session read-only and
    bound each statement (and each lock wait) by that timeout, so a catalog query that
    runs long or queues behind a lock is cancelled on the server, not only abandoned."""
    await connection.execute(
        "SELECT set_config('statement_timeout', %s, false), "
        "set_config('lock_timeout', %s, false), "
        "set_config('default_transaction_read_only', 'on', false)",
        (_ms_setting(timeout_s), _ms_setting(timeout_s)),
    )


class CacheHitProbe(Probe[PostgresTarget, NoParams]):
    """Report how often the connected database found blocks in shared buffers."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "cache_hit"
    summary: ClassVar[str] = "Buffer cache hit ratio of the connected database since stats reset."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("hit_percent", "number", "blocks found in shared buffers / blocks needed"),
    )

    async def run(
        self, target: PostgresTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return its buffer hit percentage; raise TargetUnreachable if down.

        With no block requested at all yet nothing has missed the cache, so it is 100.0.
        """
        async with _connect(target, context) as connection:
            hits, reads = await _fetch_one(
                connection,
                """
                SELECT coalesce(blks_hit, 0), coalesce(blks_read, 0)
                FROM pg_stat_database WHERE datname = current_database()
                """,
            )
        requested = int(hits) + int(reads)
        hit_percent = _percent(int(hits), requested) if requested else 100.0
        return ProbeOutcome(
            metrics_from({"hit_percent": hit_percent}),
            message=f"{hit_percent:.2f}% of {requested} block requests served from cache",
        )


class QueryProbe(QueryProbeMixin, Probe[PostgresTarget, QueryParams]):
    """Run a configured query in a read-only transaction; its named columns are metrics."""

    target_kind: ClassVar[str] = "postgres"

    def validate(self, target: PostgresTarget, params: QueryParams) -> list[str]:
        """Given a target and params, return the rules the params model cannot express."""
        del target
        return validate_params(params, "postgres")

    async def run(
        self, target: PostgresTarget, params: QueryParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target and a query, return its metrics (see ``probes/sql.py``).

        The query runs in a ``READ ONLY`` transaction (never committed) with
        ``statement_timeout`` and ``lock_timeout`` set for it alone, as one prepared
        statement, so a second statement (``; COMMIT; DELETE ...``) cannot escape the
        transaction. Raise TargetUnreachable if the server is down, QueryFailed if the query
        writes, times out, fails, or returns no metrics.
        """
        import psycopg
        from psycopg import errors

        writing = writing_problem(params.query, "postgres")
        if writing is not None:
            raise QueryFailed(writing)  # validated at load; params may come from elsewhere
        statement_s = statement_timeout_s(params, context.timeout_s)
        async with _connect(target, context) as connection:
            await connection.execute("BEGIN READ ONLY")
            try:
                await connection.execute(
                    "SELECT set_config('statement_timeout', %s, true), "
                    "set_config('lock_timeout', %s, true)",
                    (_ms_setting(statement_s), _ms_setting(params.lock_timeout.total_seconds())),
                )
                started = time.perf_counter()
                # prepare=True sends the query as one prepared statement: the server then
                # refuses several commands, and psycopg leaves % in the text alone.
                cursor = await connection.execute(params.query, prepare=True)
                rows = await cursor.fetchmany(params.max_rows + 1) if cursor.description else []
                elapsed_ms = (time.perf_counter() - started) * 1000
                columns = [column.name for column in cursor.description or ()]
            except errors.ReadOnlySqlTransaction as error:
                raise QueryFailed(
                    f"the query tried to write, and query checks run read-only: {one_line(error)}"
                ) from error
            except errors.LockNotAvailable as error:
                raise QueryFailed(
                    f"the query waited longer than lock_timeout "
                    f"({params.lock_timeout.total_seconds():g}s) for a lock"
                ) from error
            except errors.QueryCanceled as error:
                raise QueryFailed(
                    f"the query ran longer than statement_timeout ({statement_s:g}s)"
                ) from error
            except psycopg.OperationalError:
                raise
            except psycopg.Error as error:
                raise QueryFailed(f"the query failed: {one_line(error)}") from error
            # No ROLLBACK: closing the connection (leaving this block) ends the transaction,
            # also after a timeout, when the connection may still be busy.
        metrics, message = result_metrics(QueryResult(columns, rows, elapsed_ms), params)
        return ProbeOutcome(metrics, message=message)


def _ms_setting(seconds: float) -> str:
    """Given seconds, return a PostgreSQL time setting in whole milliseconds (at least 1:
    0 would mean no limit)."""
    return f"{max(1, math.ceil(seconds * 1000))}ms"
