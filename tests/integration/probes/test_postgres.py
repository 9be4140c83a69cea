"""PostgreSQL probes against the real local server.

Statistics views are fed asynchronously (a backend flushes its counters about once a
second), so tests that depend on them poll the probe until the numbers arrive. Tables and
databases get unique names and are dropped afterwards; tests that need exact numbers use a
scratch database of their own so that other activity on the server cannot move them.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import timedelta
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import ValidationError

from tests.conftest import run_probe
from tests.integration.probes import pg_pair
from tests.integration.probes.pg_pair import StreamingPair
from upkeep.core.redaction import SecretMarker
from upkeep.core.text import format_bytes
from upkeep.probes.base import ProbeOutcome, TargetUnreachable
from upkeep.probes.postgres import (
    CacheHitProbe,
    ConnectionsProbe,
    LongQueriesParams,
    LongQueriesProbe,
    PingProbe,
    PostgresTarget,
    ReplicationProbe,
    SizeProbe,
    VacuumProbe,
)

pytestmark = pytest.mark.postgres


def scalar(dsn: str, query: LiteralString) -> Any:
    """Given a DSN and a one-value query, run it on a fresh connection and return the value."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(query).fetchone()
    assert row is not None
    return row[0]


async def eventually(
    probe: Callable[[], Any], predicate: Callable[[ProbeOutcome], bool], within_s: float = 10.0
) -> ProbeOutcome:
    """Given a probe call and a predicate, rerun the probe until the predicate holds.

    Return the first outcome that satisfies it; fail with the last one after ``within_s``.
    """
    deadline = time.monotonic() + within_s
    while True:
        outcome: ProbeOutcome = await probe()
        if predicate(outcome):
            return outcome
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {within_s}s; last: {outcome}")
        await asyncio.sleep(0.25)


@pytest.fixture
def scratch_dsn(postgres_dsn: str) -> Iterator[str]:
    """A DSN of a fresh, empty database, dropped after the test."""
    name = f"upkeep_probe_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(postgres_dsn, dbname=name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A local TCP port that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


def test_dsn_is_declared_secret_by_its_password() -> None:
    markers = PostgresTarget.model_fields["dsn"].metadata
    assert SecretMarker(part="password") in markers


async def test_ping_reports_the_server_version_and_a_latency(postgres_dsn: str) -> None:
    outcome = await run_probe(PingProbe, PostgresTarget, {"dsn": postgres_dsn})

    expected = str(scalar(postgres_dsn, "SHOW server_version")).split()[0]
    assert outcome.metrics["version"] == expected
    latency = outcome.metrics["latency_ms"]
    assert isinstance(latency, float)
    assert 0 < latency < 10_000
    assert expected in outcome.message


async def test_connections_rise_with_extra_idle_connections(postgres_dsn: str) -> None:
    target = {"dsn": postgres_dsn}
    before = await run_probe(ConnectionsProbe, PostgresTarget, target)
    extra = [await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) for _ in range(3)]
    try:
        after = await run_probe(ConnectionsProbe, PostgresTarget, target)
    finally:
        for connection in extra:
            await connection.close()

    metrics = after.metrics
    maximum = int(scalar(postgres_dsn, "SHOW max_connections"))
    assert metrics["max"] == maximum
    # Other test workers share the server: their connections come and go meanwhile, so the
    # total is compared with what this test holds, not with the figure before.
    assert int(before.metrics["total"]) >= 1
    assert int(metrics["total"]) >= 3 + 1  # the three extra connections and the probe's
    assert int(metrics["idle"]) >= 3  # the three extra connections
    assert int(metrics["active"]) >= 1  # the probe's own query
    assert int(metrics["active"]) + int(metrics["idle"]) <= int(metrics["total"])
    assert metrics["usage_percent"] == round(int(metrics["total"]) / maximum * 100, 3)


async def test_long_queries_sees_a_sleeping_query_over_its_threshold(postgres_dsn: str) -> None:
    target = {"dsn": postgres_dsn}
    sleeper = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
    try:
        sleeping = asyncio.create_task(sleeper.execute("SELECT pg_sleep(3)"))
        await asyncio.sleep(1.5)
        seen = await run_probe(LongQueriesProbe, PostgresTarget, target, {"over": "1s"})
        not_yet = await run_probe(LongQueriesProbe, PostgresTarget, target, {"over": "1h"})
        await sleeping
    finally:
        await sleeper.close()

    assert int(seen.metrics["count"]) >= 1
    assert 1.0 <= float(seen.metrics["longest_s"]) < 60
    assert not_yet.metrics == {"count": 0, "longest_s": 0.0}
    assert "no query running longer than 3600s" in not_yet.message


def test_long_queries_over_defaults_to_30s_and_needs_a_unit() -> None:
    assert LongQueriesParams().over == timedelta(seconds=30)
    assert LongQueriesParams.model_validate({"over": "2m"}).over == timedelta(minutes=2)
    with pytest.raises(ValidationError):
        LongQueriesParams.model_validate({"over": 30})
    with pytest.raises(ValidationError):
        LongQueriesParams.model_validate({"over": "30s", "under": "1s"})


async def test_replication_on_a_primary_without_replicas_is_zero(postgres_dsn: str) -> None:
    assert scalar(postgres_dsn, "SELECT pg_is_in_recovery()") is False
    replicas = scalar(postgres_dsn, "SELECT count(*) FROM pg_stat_replication")

    outcome = await run_probe(ReplicationProbe, PostgresTarget, {"dsn": postgres_dsn})

    assert outcome.metrics["replicas"] == replicas
    if replicas == 0:
        assert outcome.metrics == {"lag_bytes": 0, "lag_s": 0.0, "replicas": 0}
        assert outcome.message == "primary with no replicas"


@pytest.fixture(scope="module")
def streaming_pair() -> Iterator[StreamingPair]:
    """A primary and a standby streaming from it.

    UPKEEP_TEST_POSTGRES_PRIMARY and UPKEEP_TEST_POSTGRES_STANDBY, if both set, name an
    existing pair to use instead. Otherwise a throwaway pair is built from the local
    PostgreSQL binaries (see pg_pair); without them the test skips, or fails under CI=true.
    """
    primary = os.environ.get("UPKEEP_TEST_POSTGRES_PRIMARY")
    standby = os.environ.get("UPKEEP_TEST_POSTGRES_STANDBY")
    if primary and standby:
        yield StreamingPair(primary_dsn=primary, standby_dsn=standby, owned=False)
        return
    if primary or standby:
        pytest.fail(
            "set both UPKEEP_TEST_POSTGRES_PRIMARY and UPKEEP_TEST_POSTGRES_STANDBY, or neither"
        )
    reason = pg_pair.missing_prerequisite()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: an untested streaming pair is a failure)")
        pytest.skip(reason)
    with pg_pair.streaming_pair() as pair:
        yield pair


def execute(dsn: str, query: LiteralString | sql.Composed, params: tuple[Any, ...] = ()) -> Any:
    """Given a DSN and a query, run it on a fresh connection; return its first value, if any."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        cursor = connection.execute(query, params or None)
        row = cursor.fetchone() if cursor.description else None
    return row[0] if row else None


def wal_lsn(primary_dsn: str) -> str:
    """Given a primary, return its current WAL position."""
    return str(execute(primary_dsn, "SELECT pg_current_wal_lsn()"))


async def test_replication_from_both_sides_of_a_streaming_pair(
    streaming_pair: StreamingPair,
) -> None:
    primary, standby = streaming_pair.primary_dsn, streaming_pair.standby_dsn

    def probe_primary() -> Coroutine[Any, Any, ProbeOutcome]:
        return run_probe(ReplicationProbe, PostgresTarget, {"dsn": primary})

    def probe_standby() -> Coroutine[Any, Any, ProbeOutcome]:
        return run_probe(ReplicationProbe, PostgresTarget, {"dsn": standby})

    def replayed(lsn: str) -> bool:
        return bool(execute(standby, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)))

    def caught_up(outcome: ProbeOutcome) -> bool:
        return outcome.metrics["lag_bytes"] == 0 and outcome.metrics["lag_s"] == 0.0

    table = sql.Identifier(f"upkeep_repl_{uuid.uuid4().hex[:12]}")
    execute(
        primary,
        sql.SQL("CREATE TABLE {} AS SELECT g FROM generate_series(1, 1000) g").format(table),
    )
    paused = False
    try:
        # Caught up: the standby has replayed our table and nothing is left to replay.
        created = wal_lsn(primary)
        idle_standby = await eventually(
            probe_standby, lambda outcome: replayed(created) and caught_up(outcome)
        )
        idle_primary = await eventually(probe_primary, caught_up)

        # Replay paused: the standby still receives WAL but applies none of it.
        execute(standby, "SELECT pg_wal_replay_pause()")
        paused = True
        before = wal_lsn(primary)
        execute(
            primary,
            sql.SQL("INSERT INTO {} SELECT g FROM generate_series(1, 20000) g").format(table),
        )
        after = wal_lsn(primary)
        written = int(execute(primary, "SELECT pg_wal_lsn_diff(%s, %s)", (after, before)))
        assert written > 0
        # The primary measures from its WAL end to the replay position the standby last
        # reported, which is at most `before`: at least `written` bytes behind at once.
        behind_primary = await probe_primary()
        # The standby counts what it has received and not replayed: once it has all of
        # the insert, that is at least `written` bytes, and the age of the last replayed
        # transaction (from before the pause) keeps growing.
        behind_standby = await eventually(
            probe_standby, lambda outcome: int(outcome.metrics["lag_bytes"]) >= written
        )
        await asyncio.sleep(0.5)
        later_standby = await probe_standby()
        # The primary's seconds are replay_lag, which it recomputes only when the stuck
        # standby reports in (every wal_receiver_status_interval, 1s in our own pair):
        # about 0 at the first report after the insert, then about one interval more at
        # each later one.
        interval_s = float(
            execute(
                standby,
                "SELECT setting::float8 FROM pg_settings"
                " WHERE name = 'wal_receiver_status_interval'",
            )
        )
        stuck_primary = None
        if interval_s > 0:
            stuck_primary = await eventually(
                probe_primary,
                lambda outcome: float(outcome.metrics["lag_s"]) >= interval_s / 2,
                within_s=2 * interval_s + 2,
            )
        assert not replayed(after)

        execute(standby, "SELECT pg_wal_replay_resume()")
        paused = False
        resumed_standby = await eventually(
            probe_standby, lambda outcome: replayed(after) and caught_up(outcome)
        )
        resumed_primary = await eventually(probe_primary, caught_up)
    finally:
        if paused:
            execute(standby, "SELECT pg_wal_replay_resume()")
        execute(primary, sql.SQL("DROP TABLE {}").format(table))

    replicas = 1 if streaming_pair.owned else int(idle_primary.metrics["replicas"])
    assert replicas >= 1
    assert idle_primary.metrics == {"lag_bytes": 0, "lag_s": 0.0, "replicas": replicas}
    assert idle_primary.message == f"primary with {replicas} replicas, worst 0 B / 0s"
    assert idle_standby.metrics["lag_bytes"] == 0
    assert idle_standby.metrics["lag_s"] == 0.0
    assert idle_standby.message.startswith("standby: 0 B and 0s behind")

    assert behind_primary.metrics["replicas"] == replicas
    assert int(behind_primary.metrics["lag_bytes"]) >= written
    assert float(behind_primary.metrics["lag_s"]) >= 0.0
    if stuck_primary is not None:
        assert int(stuck_primary.metrics["lag_bytes"]) >= written
        assert stuck_primary.message.startswith(f"primary with {replicas} replicas, worst ")
    shown = format_bytes(int(behind_primary.metrics["lag_bytes"]))
    assert f"worst {shown} / " in behind_primary.message

    assert float(behind_standby.metrics["lag_s"]) > 0.0
    assert int(later_standby.metrics["lag_bytes"]) >= written
    assert float(later_standby.metrics["lag_s"]) >= float(behind_standby.metrics["lag_s"]) + 0.4
    later_bytes = format_bytes(int(later_standby.metrics["lag_bytes"]))
    assert later_standby.message.startswith(f"standby: {later_bytes} and ")

    assert resumed_standby.metrics["lag_bytes"] == 0
    assert resumed_primary.metrics == {"lag_bytes": 0, "lag_s": 0.0, "replicas": replicas}


async def test_size_reports_the_database_and_its_largest_table(scratch_dsn: str) -> None:
    target = {"dsn": scratch_dsn}
    empty = await run_probe(SizeProbe, PostgresTarget, target)
    assert empty.metrics["largest_table_bytes"] == 0
    assert empty.metrics["bytes"] == scalar(
        scratch_dsn, "SELECT pg_database_size(current_database())"
    )

    with psycopg.connect(scratch_dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE small AS SELECT g FROM generate_series(1, 10) g")
        connection.execute(
            "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g"
        )
        connection.execute("CREATE INDEX ON big (h)")
    big = scalar(scratch_dsn, "SELECT pg_total_relation_size('big')")
    filled = await run_probe(SizeProbe, PostgresTarget, target)

    assert filled.metrics["largest_table_bytes"] == big
    assert int(filled.metrics["bytes"]) > int(empty.metrics["bytes"]) + big // 2
    assert "public.big" in filled.message


async def test_vacuum_sees_dead_tuples_and_stale_analyze(scratch_dsn: str) -> None:
    target = {"dsn": scratch_dsn}

    def vacuum_probe() -> Any:
        return run_probe(VacuumProbe, PostgresTarget, target)

    with psycopg.connect(scratch_dsn, autocommit=True) as connection:
        # Autovacuum would race the test for the dead tuples it is about to count.
        connection.execute("CREATE TABLE churn (id int) WITH (autovacuum_enabled = false)")
        connection.execute("INSERT INTO churn SELECT g FROM generate_series(1, 1000) g")
        connection.execute("DELETE FROM churn WHERE id % 2 = 0")

    dirty = await eventually(
        vacuum_probe, lambda outcome: outcome.metrics["dead_tuple_percent_max"] == 50.0
    )
    # With the stock settings (50 + 0.2 * 500 live = 150) the 500 dead tuples are due.
    threshold = float(scalar(scratch_dsn, "SHOW autovacuum_vacuum_threshold"))
    scale = float(scalar(scratch_dsn, "SHOW autovacuum_vacuum_scale_factor"))
    due = threshold + scale * 500 < 500
    assert dirty.metrics["tables_needing_vacuum"] == int(due)
    # Never analysed: counted from when statistics began, here the server's start.
    since_start = float(
        scalar(scratch_dsn, "SELECT extract(epoch FROM now() - pg_postmaster_start_time())")
    )
    assert abs(float(dirty.metrics["oldest_analyze_s"]) - since_start) < 5

    with psycopg.connect(scratch_dsn, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE churn")
    clean = await eventually(
        vacuum_probe,
        lambda outcome: (
            outcome.metrics["dead_tuple_percent_max"] == 0.0
            and float(outcome.metrics["oldest_analyze_s"]) < 60
        ),
    )
    assert clean.metrics["tables_needing_vacuum"] == 0
    assert "1 tables" in clean.message


async def test_vacuum_with_no_user_tables_is_all_zero(scratch_dsn: str) -> None:
    outcome = await run_probe(VacuumProbe, PostgresTarget, {"dsn": scratch_dsn})

    assert outcome.metrics == {
        "dead_tuple_percent_max": 0.0,
        "tables_needing_vacuum": 0,
        "tables_needing_analyze": 0,
        "tables_needing_insert_vacuum": 0,
        "vacuum_threshold_ratio_max": 0.0,
        "autovacuum_disabled_tables": 0,
        "oldest_analyze_s": 0.0,
    }


async def test_cache_hit_rises_when_cached_pages_are_read_again(scratch_dsn: str) -> None:
    target = {"dsn": scratch_dsn}
    with psycopg.connect(scratch_dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE warm AS SELECT g FROM generate_series(1, 20000) g")
    before = await run_probe(CacheHitProbe, PostgresTarget, target)
    hit_before = float(before.metrics["hit_percent"])
    assert 0.0 <= hit_before <= 100.0

    with psycopg.connect(scratch_dsn, autocommit=True) as connection:
        for _ in range(20):
            connection.execute("SELECT sum(g) FROM warm").fetchone()
    if hit_before < 100.0:
        after = await eventually(
            lambda: run_probe(CacheHitProbe, PostgresTarget, target),
            lambda outcome: float(outcome.metrics["hit_percent"]) > hit_before,
        )
        assert float(after.metrics["hit_percent"]) <= 100.0
        assert "served from cache" in after.message


async def test_refused_port_is_unreachable() -> None:
    with pytest.raises(TargetUnreachable, match="Connection refused"):
        await run_probe(
            PingProbe, PostgresTarget, {"dsn": "postgresql://postgres@127.0.0.1:1/test"}
        )


async def test_rejected_login_is_unreachable_and_does_not_echo_the_password(
    postgres_dsn: str,
) -> None:
    password = "upkeep-not-a-real-password"
    role = f"upkeep_nobody_{uuid.uuid4().hex[:8]}"
    dsn = make_conninfo(postgres_dsn, user=role, password=password)

    with pytest.raises(TargetUnreachable, match=role) as raised:
        await run_probe(ConnectionsProbe, PostgresTarget, {"dsn": dsn})

    assert password not in str(raised.value)


async def test_missing_database_is_unreachable(postgres_dsn: str) -> None:
    dsn = make_conninfo(postgres_dsn, dbname=f"upkeep_missing_{uuid.uuid4().hex[:8]}")
    with pytest.raises(TargetUnreachable, match="does not exist"):
        await run_probe(SizeProbe, PostgresTarget, {"dsn": dsn})


async def test_silent_server_is_unreachable_within_the_timeout(silent_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match=r"did not answer within 1s"):
        await run_probe(
            PingProbe,
            PostgresTarget,
            {"dsn": f"postgresql://postgres@127.0.0.1:{silent_port}/test"},
            timeout_s=1.0,
        )
    assert time.monotonic() - started < 3
