"""PostgreSQL targets: reachability, connections, long queries, replication, size, vacuum,
cache, index findings.

Every probe opens one short-lived connection (autocommit, so statistics views are read
fresh rather than from a transaction snapshot), runs a few catalog queries and closes it;
``indexes`` and ``query`` run theirs in one read-only transaction under timeouts.
psycopg is imported inside the functions that use it: importing it costs more than the rest
of the CLI's start-up, and most commands never touch PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, LiteralString

from pydantic import Field, field_validator

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
    DEFAULT_STATEMENT_SHARE,
    Dialect,
    QueryFailed,
    QueryParams,
    QueryProbeMixin,
    QueryResult,
    result_metrics,
    statement_timeout_s,
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
async def connect_target(
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


async def fetch_one(
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


def percent_of(part: float, whole: float) -> float:
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
        async with connect_target(target, context) as connection:
            connected = time.perf_counter()
            (server_version,) = await fetch_one(
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
        async with connect_target(target, context) as connection:
            active, idle, idle_in_transaction, total, maximum = await fetch_one(
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
        usage = percent_of(total, maximum)
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
        async with connect_target(target, context) as connection:
            count, longest_s = await fetch_one(
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
        async with connect_target(target, context) as connection:
            (in_recovery,) = await fetch_one(connection, "SELECT pg_is_in_recovery()")
            # pg_basebackup's WAL sender shows up in pg_stat_replication as 'backup';
            # it is a copy in progress, not a replica. replay_lag keeps its last measured
            # value for a while after a replica has caught up, so a replica that has
            # replayed everything counts as 0 seconds behind, as it is.
            replicas, worst_bytes, worst_s = await fetch_one(
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
                lag_bytes, lag_s, replayed_any = await fetch_one(
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
        async with connect_target(target, context) as connection:
            database, size, largest, largest_name = await fetch_one(
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
        async with connect_target(target, context) as connection:
            await limit_statements(connection, context.timeout_s)
            (version,) = await fetch_one(
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


async def limit_statements(connection: AsyncConnection[Row], timeout_s: float) -> None:
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
        async with connect_target(target, context) as connection:
            hits, reads = await fetch_one(
                connection,
                """
                SELECT coalesce(blks_hit, 0), coalesce(blks_read, 0)
                FROM pg_stat_database WHERE datname = current_database()
                """,
            )
        requested = int(hits) + int(reads)
        hit_percent = percent_of(int(hits), requested) if requested else 100.0
        return ProbeOutcome(
            metrics_from({"hit_percent": hit_percent}),
            message=f"{hit_percent:.2f}% of {requested} block requests served from cache",
        )


class QueryProbe(QueryProbeMixin, Probe[PostgresTarget, QueryParams]):
    """Run a configured query in a read-only transaction; its named columns are metrics."""

    target_kind: ClassVar[str] = "postgres"
    dialect: ClassVar[Dialect] = "postgres"

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

        self.refuse_writing(params)
        statement_s = statement_timeout_s(params, context.timeout_s)
        async with connect_target(target, context) as connection:
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


class IndexesParams(StrictModel):
    """Params of ``indexes``: which schemas, how old statistics must be, how many to name."""

    schemas: list[str] | None = Field(
        default=None,
        min_length=1,
        description="schemas to inspect (default: every schema but pg_* and information_schema)",
    )
    min_stats_age: Duration = Field(
        default=timedelta(days=7),
        description=(
            "index scan counts younger than this (since the database's stats reset, else the "
            "server's start) are too short a record: `unused` is then left out"
        ),
    )
    max_scans: int = Field(
        default=0,
        ge=0,
        le=10**12,
        description="an index scanned at most this often since statistics began is unused",
    )
    largest: int = Field(
        default=5, ge=0, le=50, description="how many of the largest indexes the message names"
    )
    lock_timeout: Duration = Field(
        default=timedelta(seconds=2),
        description="the longest reading an index's size waits behind an exclusive lock",
    )


@dataclass(frozen=True)
class IndexInfo:
    """One index as the catalog describes it; ``keys`` are the key columns' attribute
    numbers (0 for an expression), ``columns`` every column's including INCLUDE ones;
    ``opclasses``, ``collations`` and ``options`` are per key column. ``attached`` is a
    partition's index that belongs to an index of the partitioned table."""

    name: str
    schema: str
    table: str
    table_oid: int
    method: str
    keys: tuple[int, ...]
    columns: tuple[int, ...]
    opclasses: tuple[int, ...]
    collations: tuple[int, ...]
    options: tuple[int, ...]
    expressions: str | None
    predicate: str | None
    unique: bool
    constraint: bool
    valid: bool
    building: bool
    scans: int | None
    size: int
    attached: bool = False

    def _shape(self) -> tuple[Any, ...]:
        return (
            self.table_oid,
            self.method,
            self.columns,
            self.keys,
            self.opclasses,
            self.collations,
            self.options,
            self.expressions,
            self.predicate,
        )


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key: its name, table, referencing columns' attribute numbers and names."""

    name: str
    table: str
    table_oid: int
    columns: tuple[int, ...]
    column_names: tuple[str, ...]


def duplicate_indexes(indexes: Sequence[IndexInfo]) -> list[tuple[IndexInfo, IndexInfo]]:
    """Given valid indexes, return (extra, kept) for each index identical to another one on
    the same table: method, key and INCLUDE columns, expressions, predicate, operator
    classes, collations and sort options all alike. In each group the kept one is a
    constraint's index if any (dropping it means dropping the constraint), else a unique
    one, else the first by name; every other member is an extra. A partition's index
    attached to a partitioned one is judged there, once, not per partition."""
    groups: dict[tuple[Any, ...], list[IndexInfo]] = {}
    for index in sorted(indexes, key=lambda each: each.name):
        if index.valid and not index.attached:
            groups.setdefault(index._shape(), []).append(index)
    pairs: list[tuple[IndexInfo, IndexInfo]] = []
    for group in groups.values():
        if len(group) < 2:
            continue
        kept = min(group, key=lambda each: (not each.constraint, not each.unique))
        pairs.extend((index, kept) for index in group if index is not kept)
    return pairs


def redundant_indexes(
    indexes: Sequence[IndexInfo], duplicates: Sequence[IndexInfo] = ()
) -> list[tuple[IndexInfo, IndexInfo]]:
    """Given valid indexes (and those already counted as duplicates, left out here), return
    (covered, covering) for each non-unique plain btree index whose columns, including
    INCLUDE ones, are a strict prefix of another valid, non-partial btree index's key
    columns on the same table with the same operator classes, collations and sort options.
    Either having an expression or a predicate rules it out: they are not compared.
    Attached partition indexes are judged on their partitioned index, as duplicates are."""

    def plain_btree(index: IndexInfo) -> bool:
        return (
            index.valid
            and index.method == "btree"
            and index.expressions is None
            and index.predicate is None
        )

    skipped = {id(index) for index in duplicates}
    pairs: list[tuple[IndexInfo, IndexInfo]] = []
    for covered in indexes:
        if covered.unique or covered.attached or not plain_btree(covered) or id(covered) in skipped:
            continue
        width, key_width = len(covered.columns), len(covered.keys)
        for covering in indexes:
            if (
                covering is not covered
                and plain_btree(covering)
                and covering.table_oid == covered.table_oid
                and len(covering.keys) > width
                and covering.keys[:width] == covered.columns
                and covering.opclasses[:key_width] == covered.opclasses
                and covering.collations[:key_width] == covered.collations
                and covering.options[:key_width] == covered.options
            ):
                pairs.append((covered, covering))
                break
    return pairs


def unsupported_foreign_keys(
    foreign_keys: Sequence[ForeignKey], indexes: Sequence[IndexInfo]
) -> list[ForeignKey]:
    """Given foreign keys and indexes, return the keys no valid, non-partial index supports:
    one whose leading key columns are the key's columns in any order. Without one, every
    delete or key update on the referenced table scans the referencing table."""
    leading: dict[int, list[tuple[int, ...]]] = {}
    for index in indexes:
        if index.valid and index.predicate is None:
            leading.setdefault(index.table_oid, []).append(index.keys)
    return [
        key
        for key in foreign_keys
        if not any(
            set(keys[: len(key.columns)]) == set(key.columns)
            for keys in leading.get(key.table_oid, ())
        )
    ]


# Attribute numbers, operator classes, collations and sort options come as arrays; an
# int2vector/oidvector does not slice, so each is turned into an array here. Sizes are
# read from the files' lengths (pg_relation_size), which waits for a lock only behind an
# ACCESS EXCLUSIVE one: lock_timeout bounds that.
_INDEXES_SQL: LiteralString = """
    SELECT c.relname, n.nspname, n.nspname || '.' || t.relname, i.indrelid::bigint, am.amname,
           string_to_array(i.indkey::text, ' ')::int2[], i.indnkeyatts,
           string_to_array(i.indclass::text, ' ')::oid[]::bigint[],
           string_to_array(i.indcollation::text, ' ')::oid[]::bigint[],
           string_to_array(i.indoption::text, ' ')::int2[],
           pg_get_expr(i.indexprs, i.indrelid), pg_get_expr(i.indpred, i.indrelid),
           i.indisunique,
           EXISTS (SELECT FROM pg_constraint k
                   WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x')),
           i.indisvalid,
           EXISTS (SELECT FROM pg_stat_progress_create_index p
                   WHERE p.index_relid = i.indexrelid),
           s.idx_scan,
           pg_relation_size(i.indexrelid),
           EXISTS (SELECT FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_am am ON am.oid = c.relam
    LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
    WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
      AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[]))
"""

# A foreign key of a partitioned table is cloned onto each partition (conparentid names
# the original): only the original counts, and an index of the partitioned table covers it.
_FOREIGN_KEYS_SQL: LiteralString = """
    SELECT k.conname, n.nspname || '.' || t.relname, k.conrelid::bigint, k.conkey,
           array(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(attnum, pos)
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
                 ORDER BY u.pos)
    FROM pg_constraint k
    JOIN pg_class t ON t.oid = k.conrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE k.contype = 'f' AND k.conparentid = 0
      AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
      AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[]))
"""

# Statistics count from the last reset of the database's, else from the server's start
# (they survive a clean restart, so the true record may be longer: never shorter).
_STATS_SINCE_SQL: LiteralString = """
    SELECT extract(epoch FROM clock_timestamp()
                   - coalesce(stats_reset, pg_postmaster_start_time()))::float8,
           stats_reset IS NOT NULL, pg_is_in_recovery()
    FROM pg_stat_database WHERE datname = current_database()
"""


def _index_info(row: Row) -> IndexInfo:
    """Given a row of ``_INDEXES_SQL``, return it as an IndexInfo."""
    (name, schema, table, table_oid, method, columns, key_count, opclasses, collations, options,
     expressions, predicate, unique, constraint, valid, building, scans, size,
     attached) = row  # fmt: skip
    keys = tuple(int(each) for each in columns[:key_count])
    return IndexInfo(
        name=str(name),
        schema=str(schema),
        table=str(table),
        table_oid=int(table_oid),
        method=str(method),
        keys=keys,
        columns=tuple(int(each) for each in columns),
        opclasses=tuple(int(each) for each in opclasses),
        collations=tuple(int(each) for each in collations),
        options=tuple(int(each) for each in options),
        expressions=expressions,
        predicate=predicate,
        unique=bool(unique),
        constraint=bool(constraint),
        valid=bool(valid),
        building=bool(building),
        scans=None if scans is None else int(scans),
        size=int(size),
        attached=bool(attached),
    )


def _names(indexes: Sequence[IndexInfo], limit: int = 5) -> str:
    """Given indexes, return up to ``limit`` of their names with sizes, and how many more."""
    shown = ", ".join(
        f"{index.schema}.{index.name} ({format_bytes(index.size)})" for index in indexes[:limit]
    )
    more = len(indexes) - limit
    return f"{shown} and {more} more" if more > 0 else shown


class IndexesProbe(Probe[PostgresTarget, IndexesParams]):
    """Find unused, duplicate, redundant and invalid indexes, unindexed foreign keys, and
    measure index sizes, from the catalog and the statistics views alone."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "indexes"
    summary: ClassVar[str] = (
        "Unused, duplicate, redundant and invalid indexes, foreign keys without an index, "
        "index sizes (catalog only, read-only)."
    )
    Params: ClassVar[type[StrictModel]] = IndexesParams
    default_every: ClassVar[timedelta | None] = timedelta(hours=1)
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "unused",
            "number",
            "indexes scanned at most `max_scans` times (never, by default), unique and "
            "constraint ones excepted (partitioned parents too: they are not scanned); "
            "left out while statistics are younger than `min_stats_age`. Counts are this "
            "server's: scans on its replicas are not seen, nor is how new an index is",
        ),
        MetricSpec("unused_bytes", "number", "size of the unused indexes (left out with them)"),
        MetricSpec("duplicate", "number", "indexes identical to another one on the same table"),
        MetricSpec(
            "redundant",
            "number",
            "non-unique btree indexes whose columns lead another btree index on the table",
        ),
        MetricSpec(
            "invalid",
            "number",
            "invalid indexes not being built now (failed CREATE INDEX or REINDEX "
            "CONCURRENTLY, `_ccnew` leftovers)",
        ),
        MetricSpec("fk_without_index", "number", "foreign keys no index leads with"),
        MetricSpec("index_bytes", "number", "total size of the indexes inspected"),
        MetricSpec("indexes", "number", "indexes inspected"),
        MetricSpec("stats_age_s", "number", "seconds of index statistics (since reset/start)"),
    )

    async def run(
        self, target: PostgresTarget, params: IndexesParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target and params, return index findings, the evidence in the message.

        Everything is read from the catalog and statistics views (no table or index is
        scanned) in a ``READ ONLY`` transaction with ``statement_timeout`` and
        ``lock_timeout``. Scan counts on a standby are the standby's own. Raise
        TargetUnreachable if the server is down, QueryFailed if a query times out or fails.
        """
        import psycopg
        from psycopg import errors

        statement_s = context.timeout_s * DEFAULT_STATEMENT_SHARE
        query_params = {"schemas": params.schemas}
        async with connect_target(target, context) as connection:
            await connection.execute("BEGIN READ ONLY")
            try:
                # On a large catalog the planner's estimates pass jit_above_cost, and
                # compiling the plan took 1 s of a 20 ms query: JIT is off for these.
                await connection.execute(
                    "SELECT set_config('statement_timeout', %s, true), "
                    "set_config('lock_timeout', %s, true), set_config('jit', 'off', true)",
                    (_ms_setting(statement_s), _ms_setting(params.lock_timeout.total_seconds())),
                )
                stats_age_s, was_reset, in_recovery = await fetch_one(connection, _STATS_SINCE_SQL)
                cursor = await connection.execute(_INDEXES_SQL, query_params)
                indexes = [_index_info(row) for row in await cursor.fetchall()]
                cursor = await connection.execute(_FOREIGN_KEYS_SQL, query_params)
                foreign_keys = [
                    ForeignKey(str(name), str(table), int(oid), tuple(columns), tuple(names))
                    for name, table, oid, columns, names in await cursor.fetchall()
                ]
            except errors.LockNotAvailable as error:
                raise QueryFailed(
                    "reading index sizes waited longer than lock_timeout "
                    f"({params.lock_timeout.total_seconds():g}s) behind an exclusive lock"
                ) from error
            except errors.QueryCanceled as error:
                raise QueryFailed(
                    f"the catalog queries ran longer than statement_timeout ({statement_s:g}s)"
                ) from error
            except psycopg.OperationalError:
                raise
            except psycopg.Error as error:
                raise QueryFailed(f"the catalog queries failed: {one_line(error)}") from error
        return _indexes_outcome(
            indexes, foreign_keys, float(stats_age_s), bool(was_reset), bool(in_recovery), params
        )


def _indexes_outcome(
    indexes: list[IndexInfo],
    foreign_keys: list[ForeignKey],
    stats_age_s: float,
    was_reset: bool,
    in_recovery: bool,
    params: IndexesParams,
) -> ProbeOutcome:
    """Given what the catalog said, return the findings as metrics and one message."""
    by_size = sorted(indexes, key=lambda index: (-index.size, index.name))
    invalid = [index for index in by_size if not index.valid and not index.building]
    building = [index for index in indexes if index.building]
    duplicates = duplicate_indexes(by_size)
    redundant = redundant_indexes(by_size, [extra for extra, _kept in duplicates])
    unindexed = unsupported_foreign_keys(foreign_keys, indexes)
    total = sum(index.size for index in indexes)
    since = "stats reset" if was_reset else "server start"
    values: dict[str, float | int] = {
        "duplicate": len(duplicates),
        "redundant": len(redundant),
        "invalid": len(invalid),
        "fk_without_index": len(unindexed),
        "index_bytes": total,
        "indexes": len(indexes),
        "stats_age_s": stats_age_s,
    }
    parts = [f"{len(indexes)} indexes, {format_bytes(total)}"]
    if params.largest and by_size:
        parts[0] += f"; largest: {_names(by_size, params.largest)}"
    min_age_s = params.min_stats_age.total_seconds()
    if stats_age_s < min_age_s:
        parts.append(
            f"unused not judged: statistics are {human_duration(stats_age_s)} old (since "
            f"{since}), younger than min_stats_age {human_duration(min_age_s)}"
        )
    else:
        unused = [
            index
            for index in by_size
            if index.valid
            and not index.unique
            and not index.constraint
            and index.scans is not None
            and index.scans <= params.max_scans
        ]
        unused_bytes = sum(index.size for index in unused)
        values |= {"unused": len(unused), "unused_bytes": unused_bytes}
        if unused:
            parts.append(
                f"{len(unused)} unused ({format_bytes(unused_bytes)}"
                f"{f', at most {params.max_scans} scans' if params.max_scans else ''}) in "
                f"{human_duration(stats_age_s)} of statistics (since {since}"
                f"{', on this standby' if in_recovery else ''}): {_names(unused)}"
            )
        else:
            parts.append(f"none unused in {human_duration(stats_age_s)} of statistics")
    if duplicates:
        parts.append(
            f"{len(duplicates)} duplicate: "
            + ", ".join(
                f"{extra.name} = {kept.name} on {kept.table}" for extra, kept in duplicates[:5]
            )
        )
    if redundant:
        parts.append(
            f"{len(redundant)} redundant: "
            + ", ".join(
                f"{covered.name} leads {covering.name} on {covering.table}"
                for covered, covering in redundant[:5]
            )
        )
    if invalid:
        leftovers = sum("_ccnew" in index.name or "_ccold" in index.name for index in invalid)
        kinds = f" ({leftovers} left by REINDEX CONCURRENTLY)" if leftovers else ""
        parts.append(f"{len(invalid)} invalid{kinds}: {_names(invalid)}")
    if building:
        parts.append(f"{len(building)} being built now")
    if unindexed:
        parts.append(
            f"{len(unindexed)} foreign key{'s' if len(unindexed) > 1 else ''} without an index: "
            + ", ".join(f"{key.table}({', '.join(key.column_names)})" for key in unindexed[:5])
        )
    return ProbeOutcome(metrics_from(values), message="; ".join(parts))
