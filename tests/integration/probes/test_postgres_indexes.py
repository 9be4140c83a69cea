"""The ``indexes`` probe of PostgreSQL targets against the real local server.

One schema per module holds every finding the probe looks for; each test reads it with
``schemas`` set to that schema alone, so other tests' tables never move the numbers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import POSTGRES_DSN, require_service, run_probe
from upkeep.probes.postgres import IndexesProbe, PostgresTarget
from upkeep.probes.registry import TARGET_KINDS
from upkeep.probes.sql import QueryFailed

pytestmark = pytest.mark.postgres

# {s} is the schema. child_a is covered by child_a_b, child_b_2 duplicates child_b_1,
# child.parent_id has no index while other.parent_id has one, child_part is partial (so
# neither redundant nor supporting), and child_lower is an expression index.
_SETUP = """
CREATE TABLE {s}.parent (id int PRIMARY KEY);
CREATE TABLE {s}.child (id int PRIMARY KEY, parent_id int REFERENCES {s}.parent,
                        a int, b int, code int, note text);
CREATE TABLE {s}.other (id int PRIMARY KEY, parent_id int REFERENCES {s}.parent);
CREATE INDEX other_parent ON {s}.other (parent_id);
CREATE INDEX child_a ON {s}.child (a);
CREATE INDEX child_a_b ON {s}.child (a, b);
CREATE INDEX child_b_1 ON {s}.child (b);
CREATE INDEX child_b_2 ON {s}.child (b);
CREATE INDEX child_part ON {s}.child (parent_id, a) WHERE b > 0;
CREATE INDEX child_lower ON {s}.child (lower(note));
INSERT INTO {s}.child (id, code) VALUES (1, 7), (2, 7);
"""


@pytest.fixture(scope="module")
def schema() -> Iterator[str]:
    """A schema with one of each finding, an index scanned once, dropped afterwards."""
    require_service("PostgreSQL", 5432)
    name = f"upkeep_idx_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(name)
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        try:
            for statement in _SETUP.strip().split(";\n"):
                connection.execute(sql.SQL(statement).format(s=ident))
            # A unique index built concurrently over duplicate values fails and stays
            # invalid; rebuilding it concurrently fails too and leaves a _ccnew beside it.
            for failing in (
                "CREATE UNIQUE INDEX CONCURRENTLY child_code ON {s}.child (code)",
                "REINDEX INDEX CONCURRENTLY {s}.child_code",
            ):
                with pytest.raises(psycopg.errors.UniqueViolation):
                    connection.execute(sql.SQL(failing).format(s=ident))
            connection.execute("SET enable_seqscan = off")
            connection.execute(
                sql.SQL("SELECT count(*) FROM {}.child WHERE a = 1 AND b = 2").format(ident)
            )
            # Counters reach the shared statistics when the backend next goes idle.
            connection.execute("SELECT pg_stat_force_next_flush()")
            connection.execute("SELECT 1")
            yield name
        finally:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))


async def probe(dsn: str, schema: str, **params: Any) -> tuple[dict[str, Any], str]:
    """Given a DSN, a schema and params, run the probe on that schema alone."""
    outcome = await run_probe(
        IndexesProbe, PostgresTarget, {"dsn": dsn}, {"schemas": [schema], **params}
    )
    return dict(outcome.metrics), outcome.message


def test_indexes_is_a_postgres_probe() -> None:
    assert TARGET_KINDS["postgres"].probe("indexes") is IndexesProbe


async def test_each_finding_is_counted_and_named(postgres_dsn: str, schema: str) -> None:
    metrics, message = await probe(postgres_dsn, schema, min_stats_age="0s")

    assert metrics["duplicate"] == 1
    assert f"child_b_2 = child_b_1 on {schema}.child" in message
    assert metrics["redundant"] == 1
    assert f"child_a leads child_a_b on {schema}.child" in message
    assert metrics["invalid"] == 2
    assert "2 invalid (1 left by REINDEX CONCURRENTLY): " in message
    assert f"{schema}.child_code (" in message and f"{schema}.child_code_ccnew (" in message
    assert metrics["fk_without_index"] == 1
    assert f"1 foreign key without an index: {schema}.child(parent_id)" in message


async def test_unused_counts_valid_non_unique_indexes_never_scanned(
    postgres_dsn: str, schema: str
) -> None:
    metrics, message = await probe(postgres_dsn, schema, min_stats_age="0s")

    with psycopg.connect(postgres_dsn) as connection:
        row = connection.execute(
            "SELECT count(*), sum(pg_relation_size(indexrelid)),"
            " count(*) FILTER (WHERE idx_scan > 0)"
            " FROM pg_stat_user_indexes WHERE schemaname = %s",
            (schema,),
        ).fetchone()
        unused = connection.execute(
            "SELECT sum(pg_relation_size(indexrelid)) FROM pg_stat_user_indexes"
            " WHERE schemaname = %s AND indexrelname = ANY(%s)",
            (
                schema,
                ["other_parent", "child_a", "child_b_1", "child_b_2", "child_part", "child_lower"],
            ),
        ).fetchone()
    assert row is not None and unused is not None
    count, total, scanned = row
    # child_a_b was scanned once; the primary keys and the invalid unique ones never were.
    assert scanned == 1
    assert metrics["unused"] == 6
    assert metrics["unused_bytes"] == unused[0]
    assert metrics["indexes"] == count == 12
    assert metrics["index_bytes"] == total
    assert "6 unused (" in message and "child_a_b" not in message.split("6 unused")[1].split(";")[0]


async def test_young_statistics_leave_unused_out_and_say_why(
    postgres_dsn: str, schema: str
) -> None:
    metrics, message = await probe(postgres_dsn, schema, min_stats_age="36500d")

    assert "unused" not in metrics and "unused_bytes" not in metrics
    assert metrics["stats_age_s"] > 0
    assert "unused not judged: statistics are " in message
    assert "younger than min_stats_age 36500d" in message
    # The other findings do not depend on the statistics.
    assert metrics["duplicate"] == 1


async def test_message_names_the_largest_indexes(postgres_dsn: str, schema: str) -> None:
    metrics, message = await probe(postgres_dsn, schema, largest=2)

    assert message.startswith(f"{metrics['indexes']} indexes, ")
    largest = message.split("largest: ")[1].split(";")[0]
    assert largest.endswith("and 10 more")
    assert largest.count("(") == 2


async def test_a_schema_without_indexes_reports_zeroes(postgres_dsn: str) -> None:
    metrics, message = await probe(postgres_dsn, "upkeep_no_such_schema", min_stats_age="0s")

    assert metrics["indexes"] == metrics["index_bytes"] == metrics["unused"] == 0
    assert metrics["fk_without_index"] == metrics["invalid"] == 0
    assert message.startswith("0 indexes, 0 B; none unused in ")


async def test_an_index_locked_exclusively_fails_after_lock_timeout(
    postgres_dsn: str, schema: str
) -> None:
    # REINDEX in a transaction holds ACCESS EXCLUSIVE on the index until it ends, the
    # lock a long REINDEX or VACUUM FULL holds; reading the index's size waits for it.
    with psycopg.connect(postgres_dsn) as holder:
        holder.execute(sql.SQL("REINDEX INDEX {}.child_a").format(sql.Identifier(schema)))
        started = time.monotonic()
        with pytest.raises(QueryFailed, match=r"longer than lock_timeout \(0\.2s\)"):
            await probe(postgres_dsn, schema, lock_timeout="200ms")
        holder.rollback()
    assert time.monotonic() - started < 5


async def test_max_scans_counts_rarely_scanned_indexes_as_unused(
    postgres_dsn: str, schema: str
) -> None:
    metrics, message = await probe(postgres_dsn, schema, min_stats_age="0s", max_scans=1)

    # child_a_b, scanned once, joins the six never scanned.
    assert metrics["unused"] == 7
    assert "7 unused (" in message and ", at most 1 scans) in " in message


async def test_partitions_count_once_on_their_partitioned_table(postgres_dsn: str) -> None:
    name = f"upkeep_idx_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(name)
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        try:
            for statement in (
                "CREATE TABLE {s}.parent (id int PRIMARY KEY)",
                "CREATE TABLE {s}.events (day int, parent_id int REFERENCES {s}.parent,"
                " kind int) PARTITION BY RANGE (day)",
                "CREATE TABLE {s}.events_1 PARTITION OF {s}.events FOR VALUES FROM (0) TO (10)",
                "CREATE TABLE {s}.events_2 PARTITION OF {s}.events FOR VALUES FROM (10) TO (20)",
                "CREATE INDEX events_kind_1 ON {s}.events (kind)",
                "CREATE INDEX events_kind_2 ON {s}.events (kind)",
            ):
                connection.execute(sql.SQL(statement).format(s=ident))
            metrics, message = await probe(postgres_dsn, name)
        finally:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))

    # One duplicate and one unindexed key on the partitioned table, none per partition.
    assert metrics["duplicate"] == 1
    assert f"events_kind_2 = events_kind_1 on {name}.events" in message
    assert metrics["fk_without_index"] == 1
    assert f"{name}.events(parent_id)" in message
    # The parent's primary key, two partitioned indexes and their four partition indexes.
    assert metrics["indexes"] == 7
