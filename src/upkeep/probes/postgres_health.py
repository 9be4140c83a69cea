"""PostgreSQL transaction health: wraparound age, sequences, replication slots, sessions.

Probes of the ``postgres`` target kind (its model and connection live in
``probes/postgres.py``). Each reads catalog views and functions only, never a table, on one
short-lived read-only connection whose statements and lock waits are bounded by the check's
timeout. What each measures, and the thresholds behind it, are PostgreSQL's own: autovacuum
forces an anti-wraparound vacuum once a database's oldest unfrozen XID is older than
``autovacuum_freeze_max_age``, and the server stops assigning XIDs near 2^31.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, LiteralString

from pydantic import Field

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel
from upkeep.core.text import format_bytes, human_duration
from upkeep.probes.base import MetricSpec, NoParams, Probe, ProbeContext, ProbeOutcome, metrics_from
from upkeep.probes.postgres import (
    PostgresTarget,
    connect_target,
    fetch_one,
    limit_statements,
    percent_of,
)

# XIDs compare modulo 2^32, so a database can fall at most 2^31 transactions behind
# before old rows would seem to be in the future; the server refuses new XIDs a little
# before that. Multixact IDs wrap the same way.
WRAPAROUND_LIMIT = 2**31


class WraparoundProbe(Probe[PostgresTarget, NoParams]):
    """Report how close the cluster's databases are to transaction ID and multixact
    wraparound."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "wraparound"
    summary: ClassVar[str] = (
        "XID and multixact age of the oldest database, against autovacuum's freeze limits and 2^31."
    )
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("xid_age", "number", "age(datfrozenxid) of the oldest database"),
        MetricSpec(
            "xid_freeze_percent", "number", "xid_age as a percentage of autovacuum_freeze_max_age"
        ),
        MetricSpec("xid_wraparound_percent", "number", "xid_age as a percentage of 2^31"),
        MetricSpec("mxid_age", "number", "mxid_age(datminmxid) of the oldest database"),
        MetricSpec(
            "mxid_freeze_percent",
            "number",
            "mxid_age as a percentage of autovacuum_multixact_freeze_max_age",
        ),
        MetricSpec("mxid_wraparound_percent", "number", "mxid_age as a percentage of 2^31"),
    )

    async def run(
        self, target: PostgresTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return the wraparound ages; raise TargetUnreachable if down.

        Wraparound is cluster-wide, so every database counts (``template0`` included: it
        ages too, and autovacuum freezes it), and the oldest is named. The message also
        names the table with the oldest ``relfrozenxid`` in the connected database, the one
        a manual ``VACUUM (FREEZE)`` should start with.
        """
        async with connect_target(target, context) as connection:
            await limit_statements(connection, context.timeout_s)
            (
                xid_age,
                xid_database,
                mxid_age,
                mxid_database,
                freeze_max,
                multixact_freeze_max,
            ) = await fetch_one(
                connection,
                """
                SELECT (SELECT age(datfrozenxid) FROM pg_database
                        ORDER BY age(datfrozenxid) DESC, datname LIMIT 1),
                       (SELECT datname FROM pg_database
                        ORDER BY age(datfrozenxid) DESC, datname LIMIT 1),
                       (SELECT mxid_age(datminmxid) FROM pg_database
                        ORDER BY mxid_age(datminmxid) DESC, datname LIMIT 1),
                       (SELECT datname FROM pg_database
                        ORDER BY mxid_age(datminmxid) DESC, datname LIMIT 1),
                       current_setting('autovacuum_freeze_max_age')::float8,
                       current_setting('autovacuum_multixact_freeze_max_age')::float8
                """,
            )
            oldest_table = await (
                await connection.execute(
                    """
                    SELECT n.nspname || '.' || c.relname, age(c.relfrozenxid)
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind IN ('r', 'm', 't') AND c.relfrozenxid <> '0'
                    ORDER BY age(c.relfrozenxid) DESC LIMIT 1
                    """
                )
            ).fetchone()
        xid_freeze = percent_of(xid_age, freeze_max)
        mxid_freeze = percent_of(mxid_age, multixact_freeze_max)
        message = (
            f"oldest XID age {xid_age:,} in {xid_database} ({xid_freeze:.1f}% of "
            f"autovacuum_freeze_max_age {freeze_max:,.0f}, "
            f"{percent_of(xid_age, WRAPAROUND_LIMIT):.2f}% of wraparound); "
            f"oldest multixact age {mxid_age:,} in {mxid_database} ({mxid_freeze:.1f}% of "
            f"autovacuum_multixact_freeze_max_age {multixact_freeze_max:,.0f})"
        )
        if oldest_table is not None:
            message += f"; here the oldest table is {oldest_table[0]} (XID age {oldest_table[1]:,})"
        return ProbeOutcome(
            metrics_from(
                {
                    "xid_age": int(xid_age),
                    "xid_freeze_percent": xid_freeze,
                    "xid_wraparound_percent": percent_of(xid_age, WRAPAROUND_LIMIT),
                    "mxid_age": int(mxid_age),
                    "mxid_freeze_percent": mxid_freeze,
                    "mxid_wraparound_percent": percent_of(mxid_age, WRAPAROUND_LIMIT),
                }
            ),
            message=message,
        )


class SequencesParams(StrictModel):
    """Params of ``sequences``: the share of its range past which a sequence counts."""

    over_percent: float = Field(
        default=75.0,
        ge=0,
        le=100,
        description="share of its range (0-100) past which a sequence counts as near exhaustion",
    )


class SequencesProbe(Probe[PostgresTarget, SequencesParams]):
    """Report sequences that have used up most of their range."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "sequences"
    summary: ClassVar[str] = (
        "Sequences near exhaustion: share of the range used, against the sequence's own limit "
        "or its column's type."
    )
    Params: ClassVar[type[StrictModel]] = SequencesParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "near_exhaustion", "number", "non-cycling sequences past `over_percent` of their range"
        ),
        MetricSpec("used_percent_max", "number", "highest share of its range any sequence used"),
        MetricSpec("sequences", "number", "non-cycling sequences whose last value is readable"),
    )

    async def run(
        self, target: PostgresTarget, params: SequencesParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target and ``over_percent``, return sequence usage; raise TargetUnreachable.

        A sequence's range runs from ``min_value`` to ``max_value`` in the direction of its
        increment; when it feeds a ``smallint`` or ``integer`` column (serial, identity,
        ``OWNED BY`` or a ``nextval()`` default) whose type ends sooner, the type's limit is
        the real one. Cycling
        sequences never run out and are left out, as are those never used and those whose
        value this role may not read (``last_value`` is NULL for both).
        """
        async with connect_target(target, context) as connection:
            await limit_statements(connection, context.timeout_s)
            cursor = await connection.execute(
                """
                WITH feeds AS (
                    -- Owned sequences (serial, identity, OWNED BY) depend on their column.
                    SELECT d.objid AS seqid, d.refobjid AS relid, d.refobjsubid AS attnum
                    FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass
                      AND d.refclassid = 'pg_class'::regclass
                      AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
                    UNION
                    -- A column default calling nextval() depends on the sequence.
                    SELECT d.refobjid, ad.adrelid, ad.adnum
                    FROM pg_depend d JOIN pg_attrdef ad ON ad.oid = d.objid
                    WHERE d.classid = 'pg_attrdef'::regclass
                      AND d.refclassid = 'pg_class'::regclass
                ),
                owned AS (
                    -- Of several columns fed by one sequence the narrowest runs out first.
                    SELECT f.seqid,
                           min(CASE a.atttypid WHEN 'int2'::regtype THEN 32767
                                               WHEN 'int4'::regtype THEN 2147483647
                               END) AS column_max,
                           max(CASE a.atttypid WHEN 'int2'::regtype THEN -32768
                                               WHEN 'int4'::regtype THEN -2147483648
                               END) AS column_min
                    FROM feeds f
                    JOIN pg_attribute a ON a.attrelid = f.relid AND a.attnum = f.attnum
                    GROUP BY f.seqid
                ),
                ranges AS (
                    SELECT s.schemaname || '.' || s.sequencename AS name,
                           s.last_value::numeric AS last_value,
                           s.increment_by,
                           greatest(s.min_value::numeric,
                                    coalesce(o.column_min, s.min_value)) AS low,
                           least(s.max_value::numeric,
                                 coalesce(o.column_max, s.max_value)) AS high
                    FROM pg_sequences s
                    JOIN pg_class c ON c.relname = s.sequencename
                    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = s.schemaname
                    LEFT JOIN owned o ON o.seqid = c.oid
                    WHERE NOT s.cycle AND s.last_value IS NOT NULL
                )
                SELECT name, last_value, low, high,
                       CASE WHEN high <= low THEN 100.0
                            WHEN increment_by > 0
                            THEN 100.0 * (last_value - low) / (high - low)
                            ELSE 100.0 * (high - last_value) / (high - low)
                       END::float8 AS used
                FROM ranges
                ORDER BY used DESC, name
                """
            )
            rows = await cursor.fetchall()
        near = [row for row in rows if row[4] > params.over_percent]
        used_max = float(rows[0][4]) if rows else 0.0
        if rows:
            name, last_value, low, high, used = rows[0]
            message = (
                f"{len(near)} of {len(rows)} sequences past {params.over_percent:g}% of their "
                f"range; worst {name}: {last_value} in {low}..{high} ({used:.1f}% used)"
            )
        else:
            message = "no used, non-cycling sequence"
        return ProbeOutcome(
            metrics_from(
                {"near_exhaustion": len(near), "used_percent_max": used_max, "sequences": len(rows)}
            ),
            message=message,
        )


class ReplicationSlotsProbe(Probe[PostgresTarget, NoParams]):
    """Report replication slots nobody is reading and the WAL they hold back."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "replication_slots"
    summary: ClassVar[str] = "Inactive replication slots and the WAL they keep on disk."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("slots", "number", "replication slots on this server"),
        MetricSpec("inactive", "number", "slots no consumer is connected to"),
        MetricSpec(
            "retained_wal_bytes_max", "number", "WAL the most demanding slot keeps (any slot)"
        ),
        MetricSpec("inactive_retained_wal_bytes", "number", "WAL kept by inactive slots, summed"),
        MetricSpec(
            "lost", "number", "slots whose WAL was already removed (wal_status 'lost', PG13+)"
        ),
    )

    async def run(
        self, target: PostgresTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return slot counts and retained WAL; raise TargetUnreachable.

        Retained WAL is the distance from a slot's ``restart_lsn`` to the server's current
        WAL position (the last received one on a standby); a slot that has not reserved WAL
        yet keeps none. The inactive slot keeping the most is named.
        """
        async with connect_target(target, context) as connection:
            await limit_statements(connection, context.timeout_s)
            (version,) = await fetch_one(
                connection, "SELECT current_setting('server_version_num')::int"
            )
            lost_column: LiteralString = (
                "s.wal_status = 'lost'" if int(version) >= 130000 else "false"
            )
            cursor = await connection.execute(
                "SELECT s.slot_name, s.slot_type, s.active, "
                "coalesce(greatest(pg_wal_lsn_diff(here.lsn, s.restart_lsn), 0), 0)::bigint, "
                + lost_column
                + """
                FROM pg_replication_slots s,
                     (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                                  ELSE pg_current_wal_lsn() END AS lsn) here
                ORDER BY 4 DESC, 1
                """
            )
            rows: list[tuple[Any, ...]] = await cursor.fetchall()
        inactive = [row for row in rows if not row[2]]
        retained_inactive = sum(int(row[3]) for row in inactive)
        lost = sum(1 for row in rows if row[4])
        if inactive:
            name, kind, _active, retained, _lost = inactive[0]
            message = (
                f"{len(inactive)} of {len(rows)} replication slots inactive, keeping "
                f"{format_bytes(retained_inactive)} of WAL; worst {kind} slot {name}: "
                f"{format_bytes(int(retained))}"
            )
        elif rows:
            message = f"all {len(rows)} replication slots active"
        else:
            message = "no replication slots"
        if lost:
            message += f"; {lost} lost"
        return ProbeOutcome(
            metrics_from(
                {
                    "slots": len(rows),
                    "inactive": len(inactive),
                    "retained_wal_bytes_max": int(rows[0][3]) if rows else 0,
                    "inactive_retained_wal_bytes": retained_inactive,
                    "lost": lost,
                }
            ),
            message=message,
        )


class TransactionsParams(StrictModel):
    """Params of ``transactions``: how long a session may sit idle in a transaction, and a
    query wait for a lock, before it counts."""

    idle_over: Duration = Field(
        default=timedelta(minutes=1),
        description="how long a session may sit idle in a transaction before it counts",
    )
    blocked_over: Duration = Field(
        default=timedelta(seconds=5),
        description="how long a query may wait for another session's lock before it counts",
    )


class TransactionsProbe(Probe[PostgresTarget, TransactionsParams]):
    """Report sessions idle in a transaction and queries blocked by another session's locks."""

    target_kind: ClassVar[str] = "postgres"
    name: ClassVar[str] = "transactions"
    summary: ClassVar[str] = (
        "Sessions idle in transaction longer than `idle_over` (default 1m) and queries "
        "waiting on another session's lock longer than `blocked_over` (default 5s)."
    )
    Params: ClassVar[type[StrictModel]] = TransactionsParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "idle_in_transaction", "number", "sessions idle in a transaction longer than idle_over"
        ),
        MetricSpec(
            "idle_in_transaction_longest_s",
            "number",
            "longest time any session has sat idle in a transaction (0 if none)",
        ),
        MetricSpec("blocked", "number", "sessions waiting for a lock longer than blocked_over"),
        MetricSpec(
            "blocked_longest_s", "number", "longest lock wait of any blocked session (0 if none)"
        ),
    )

    async def run(
        self, target: PostgresTarget, params: TransactionsParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target and the two limits, return idle and blocked session figures.

        Idle time runs from the session's last state change, as
        ``idle_in_transaction_session_timeout`` measures it; the message also gives the age
        of that session's transaction. A session is blocked when ``pg_blocking_pids`` names
        anyone; its wait runs from when it asked for the lock (``pg_locks.waitstart``,
        PostgreSQL 14+) or else from its query's start. Sessions of every database count.
        Without pg_read_all_stats other roles' sessions show no state and are not seen.
        Raise TargetUnreachable if the server is down.
        """
        async with connect_target(target, context) as connection:
            await limit_statements(connection, context.timeout_s)
            (version,) = await fetch_one(
                connection, "SELECT current_setting('server_version_num')::int"
            )
            idle_rows = await (
                await connection.execute(
                    """
                    SELECT pid, usename, datname, application_name,
                           extract(epoch FROM clock_timestamp() - state_change)::float8,
                           extract(epoch FROM clock_timestamp() - xact_start)::float8
                    FROM pg_stat_activity
                    WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
                      AND backend_type = 'client backend'
                    ORDER BY state_change, pid
                    """
                )
            ).fetchall()
            wait_start: LiteralString = (
                "(SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)"
                if int(version) >= 140000
                else "NULL::timestamptz"
            )
            blocked_rows = await (
                await connection.execute(
                    "SELECT a.pid, a.usename, a.datname, pg_blocking_pids(a.pid), "
                    "extract(epoch FROM clock_timestamp() - coalesce("
                    + wait_start
                    + """, a.query_start))::float8 AS waited
                    FROM pg_stat_activity a
                    -- pg_blocking_pids takes the lock manager's locks: only ask for
                    -- sessions that wait for a heavyweight lock.
                    WHERE a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid()
                    ORDER BY waited DESC, a.pid
                    """
                )
            ).fetchall()
        idle_over_s = params.idle_over.total_seconds()
        blocked_over_s = params.blocked_over.total_seconds()
        idle = [row for row in idle_rows if row[4] > idle_over_s]
        blocked = [row for row in blocked_rows if row[3] and row[4] > blocked_over_s]
        idle_longest = float(idle_rows[0][4]) if idle_rows else 0.0
        blocked_waiting = [row for row in blocked_rows if row[3]]
        blocked_longest = float(blocked_waiting[0][4]) if blocked_waiting else 0.0
        parts = [
            f"{len(idle)} sessions idle in transaction longer than {human_duration(idle_over_s)}"
        ]
        if idle_rows:
            pid, user, database, application, idle_s, transaction_s = idle_rows[0]
            parts[0] += (
                f" (longest pid {pid}, {user}@{database}"
                + (f" [{application}]" if application else "")
                + f": idle {human_duration(idle_s)}, transaction open "
                f"{human_duration(transaction_s)})"
            )
        parts.append(
            f"{len(blocked)} queries waiting for a lock longer than "
            f"{human_duration(blocked_over_s)}"
        )
        if blocked_waiting:
            pid, user, database, blockers, waited = blocked_waiting[0]
            parts[-1] += (
                f" (longest pid {pid}, {user}@{database}: {human_duration(waited)} behind "
                f"pid {', '.join(str(blocker) for blocker in blockers)})"
            )
        return ProbeOutcome(
            metrics_from(
                {
                    "idle_in_transaction": len(idle),
                    "idle_in_transaction_longest_s": idle_longest,
                    "blocked": len(blocked),
                    "blocked_longest_s": blocked_longest,
                }
            ),
            message="; ".join(parts),
        )
