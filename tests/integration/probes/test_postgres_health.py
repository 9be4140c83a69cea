"""Vacuum and transaction health probes of PostgreSQL against the real local server.

Each scenario is built for real (a table autovacuum may not touch, a sequence near its
maximum, a replication slot nobody reads, a session holding a lock) and torn down after.
Tests that need exact counts use a scratch database of their own; those that read
cluster-wide views (sessions, slots, wraparound) assert what this test holds, since other
test workers share the server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.conftest import run_probe
from tests.integration.probes.test_postgres import eventually, scalar
from upkeep.probes.postgres import PostgresTarget, VacuumProbe, limit_statements
from upkeep.probes.postgres_health import (
    WRAPAROUND_LIMIT,
    ReplicationSlotsProbe,
    SequencesProbe,
    TransactionsProbe,
    WraparoundProbe,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def scratch(postgres_dsn: str) -> Iterator[str]:
    """A DSN of a fresh, empty database, dropped after the test."""
    name = f"upkeep_health_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(postgres_dsn, dbname=name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


async def test_vacuum_applies_each_tables_own_thresholds(scratch: str) -> None:
    with psycopg.connect(scratch, autocommit=True) as connection:
        # churn's own settings make 30 dead tuples due (the server's 50 would not) and
        # 130 changed rows not due for analyze (the server's 50 would); its 100 inserts
        # pass its insert threshold of 5. plain keeps the server's settings: its 100
        # inserted rows are due for analyze only. Autovacuum is off for both, so it cannot
        # reset the counters under the test, and so that both count as disabled.
        connection.execute(
            "CREATE TABLE churn (id int) WITH (autovacuum_enabled = false, "
            "autovacuum_vacuum_threshold = 10, autovacuum_vacuum_scale_factor = 0, "
            "autovacuum_analyze_threshold = 1000, autovacuum_vacuum_insert_threshold = 5)"
        )
        connection.execute("CREATE TABLE plain (id int) WITH (autovacuum_enabled = false)")
        connection.execute("INSERT INTO churn SELECT g FROM generate_series(1, 100) g")
        connection.execute("DELETE FROM churn WHERE id <= 30")
        connection.execute("INSERT INTO plain SELECT g FROM generate_series(1, 100) g")
    assert float(scalar(scratch, "SHOW autovacuum_vacuum_threshold")) > 30
    assert float(scalar(scratch, "SHOW autovacuum_analyze_threshold")) < 100
    assert float(scalar(scratch, "SHOW autovacuum_vacuum_insert_threshold")) > 100

    outcome = await eventually(
        lambda: run_probe(VacuumProbe, PostgresTarget, {"dsn": scratch}),
        lambda outcome: (
            outcome.metrics["tables_needing_vacuum"] == 1
            and outcome.metrics["tables_needing_analyze"] == 1
        ),
    )

    assert outcome.metrics == {
        "dead_tuple_percent_max": 30.0,
        "tables_needing_vacuum": 1,
        "tables_needing_analyze": 1,
        "tables_needing_insert_vacuum": 1,
        "vacuum_threshold_ratio_max": 3.0,
        "autovacuum_disabled_tables": 2,
        "oldest_analyze_s": outcome.metrics["oldest_analyze_s"],
    }
    assert "worst public.churn: 30 dead tuples, threshold 10 (3.0x), autovacuum disabled" in (
        outcome.message
    )
    assert "worst public.plain: 100 rows changed, threshold 50 (2.0x)" in outcome.message
    assert "worst public.churn: 100 rows inserted, threshold 5 (20.0x)" in outcome.message

    with psycopg.connect(scratch, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE churn, plain")
    clean = await eventually(
        lambda: run_probe(VacuumProbe, PostgresTarget, {"dsn": scratch}),
        lambda outcome: (
            outcome.metrics["tables_needing_analyze"] == 0
            and outcome.metrics["tables_needing_vacuum"] == 0
        ),
    )
    assert clean.metrics["tables_needing_insert_vacuum"] == 0
    assert "0 past their vacuum threshold; 0 past their analyze threshold" in clean.message


async def test_wraparound_reports_the_oldest_database(postgres_dsn: str) -> None:
    outcome = await run_probe(WraparoundProbe, PostgresTarget, {"dsn": postgres_dsn})

    oldest = int(scalar(postgres_dsn, "SELECT max(age(datfrozenxid)) FROM pg_database"))
    freeze_max = int(scalar(postgres_dsn, "SHOW autovacuum_freeze_max_age"))
    xid_age = int(outcome.metrics["xid_age"])
    # Other test workers take XIDs between the probe's reading and this one.
    assert 0 < xid_age <= oldest < xid_age + 100_000
    assert outcome.metrics["xid_freeze_percent"] == round(xid_age / freeze_max * 100, 3)
    assert outcome.metrics["xid_wraparound_percent"] == round(xid_age / WRAPAROUND_LIMIT * 100, 3)
    oldest_mxid = int(scalar(postgres_dsn, "SELECT max(mxid_age(datminmxid)) FROM pg_database"))
    assert int(outcome.metrics["mxid_age"]) <= oldest_mxid
    assert f"oldest XID age {xid_age:,} in " in outcome.message
    assert "here the oldest table is " in outcome.message


async def test_sequences_near_their_limit_or_their_columns(scratch: str) -> None:
    empty = await run_probe(SequencesProbe, PostgresTarget, {"dsn": scratch})
    assert empty.metrics == {"near_exhaustion": 0, "used_percent_max": 0.0, "sequences": 0}
    assert empty.message == "no used, non-cycling sequence"

    with psycopg.connect(scratch, autocommit=True) as connection:
        connection.execute("CREATE SEQUENCE small MAXVALUE 100")
        connection.execute("SELECT setval('small', 95)")
        # A bigint sequence feeding an integer column runs out with the column.
        connection.execute("CREATE SEQUENCE wide AS bigint")
        connection.execute("CREATE TABLE ids (id int DEFAULT nextval('wide'))")
        connection.execute("ALTER SEQUENCE wide OWNED BY ids.id")
        connection.execute("SELECT setval('wide', 1073741824)")
        # So does one a smallint column merely takes its default from.
        connection.execute("CREATE SEQUENCE loose AS bigint")
        connection.execute("CREATE TABLE loose_ids (id smallint DEFAULT nextval('loose'))")
        connection.execute("SELECT setval('loose', 30000)")
        connection.execute("CREATE SEQUENCE round_and_round MAXVALUE 10 CYCLE")
        connection.execute("SELECT setval('round_and_round', 10)")
        connection.execute("CREATE SEQUENCE unused")

    outcome = await run_probe(
        SequencesProbe, PostgresTarget, {"dsn": scratch}, {"over_percent": 90}
    )

    assert outcome.metrics == {
        "near_exhaustion": 2,  # small and loose (91.6% of smallint)
        "used_percent_max": round(94 / 99 * 100, 3),
        "sequences": 3,
    }
    assert "2 of 3 sequences past 90% of their range" in outcome.message
    assert "worst public.small: 95 in 1..100 (94.9% used)" in outcome.message

    wide_only = await run_probe(
        SequencesProbe, PostgresTarget, {"dsn": scratch}, {"over_percent": 40}
    )
    assert wide_only.metrics["near_exhaustion"] == 3  # wide is half way through int4


async def test_an_inactive_slot_and_the_wal_it_keeps(postgres_dsn: str) -> None:
    if scalar(postgres_dsn, "SHOW wal_level") == "minimal":
        pytest.skip("replication slots need wal_level replica or logical")
    slot = f"upkeep_slot_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
        try:
            # Some WAL written after the slot reserved its start is WAL it keeps.
            connection.execute(
                "SELECT pg_logical_emit_message(false, 'upkeep', repeat('x', 50000))"
            )
            kept = int(
                connection.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
                    "FROM pg_replication_slots WHERE slot_name = %s",
                    (slot,),
                ).fetchone()[0]  # type: ignore[index]
            )
            outcome = await run_probe(ReplicationSlotsProbe, PostgresTarget, {"dsn": postgres_dsn})
        finally:
            connection.execute("SELECT pg_drop_replication_slot(%s)", (slot,))

    assert kept > 0
    assert int(outcome.metrics["inactive"]) >= 1
    assert int(outcome.metrics["slots"]) >= int(outcome.metrics["inactive"])
    assert int(outcome.metrics["inactive_retained_wal_bytes"]) >= kept
    assert int(outcome.metrics["retained_wal_bytes_max"]) >= kept
    assert f"physical slot {slot}" in outcome.message

    after = await run_probe(ReplicationSlotsProbe, PostgresTarget, {"dsn": postgres_dsn})
    assert slot not in after.message


async def test_idle_transaction_and_a_query_blocked_behind_it(postgres_dsn: str) -> None:
    table = f"upkeep_locked_{uuid.uuid4().hex[:12]}"
    holder = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    waiter = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    waiting: asyncio.Task[Any] | None = None
    try:
        await holder.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(table)))
        holder_pid = holder.info.backend_pid
        waiter_pid = waiter.info.backend_pid
        await holder.execute("BEGIN")
        await holder.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table))
        )
        await waiter.execute("SET statement_timeout = '20s'")
        waiting = asyncio.create_task(
            waiter.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        )

        def probe() -> Any:
            return run_probe(
                TransactionsProbe,
                PostgresTarget,
                {"dsn": postgres_dsn},
                {"idle_over": "0s", "blocked_over": "0s"},
            )

        outcome = await eventually(
            probe,
            lambda outcome: (
                int(outcome.metrics["blocked"]) >= 1
                and int(outcome.metrics["idle_in_transaction"]) >= 1
            ),
        )
        strict = await run_probe(
            TransactionsProbe,
            PostgresTarget,
            {"dsn": postgres_dsn},
            {"idle_over": "1h", "blocked_over": "1h"},
        )
    finally:
        await holder.close()  # ends the transaction and frees the waiter
        if waiting is not None:
            await asyncio.wait_for(waiting, 10)
        await waiter.close()
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))

    assert float(outcome.metrics["idle_in_transaction_longest_s"]) > 0
    assert float(outcome.metrics["blocked_longest_s"]) > 0
    assert f"pid {waiter_pid}" in outcome.message
    assert f"behind pid {holder_pid}" in outcome.message
    assert strict.metrics["idle_in_transaction"] == 0
    assert strict.metrics["blocked"] == 0
    # The limits decide what counts, not what is measured: the wait is still reported.
    assert float(strict.metrics["blocked_longest_s"]) > 0


async def test_health_sessions_are_read_only_and_bounded(postgres_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as connection:
        await limit_statements(connection, 2.5)
        settings = await (
            await connection.execute(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
            )
        ).fetchone()
        assert settings == ("2500ms", "2500ms")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await connection.execute("CREATE TEMPORARY TABLE upkeep_never (id int)")
