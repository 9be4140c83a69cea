"""MySQL/MariaDB index and fragmentation probes against the real local server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import run_probe
from tests.integration.probes.test_mysql import connect
from upkeep.probes.mysql import FragmentationProbe, IndexesProbe, MysqlTarget

pytestmark = pytest.mark.mysql


def execute(dsn: str, *statements: str) -> None:
    """Given a DSN and statements, run them in order on one fresh connection."""
    connection = connect(dsn)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        connection.commit()
    finally:
        connection.close()


@pytest.fixture
def database(mysql_dsn: str) -> Iterator[str]:
    """A DSN of a unique, empty database of its own (dropped afterwards), so the probes
    judge this test's tables only, whatever other tests leave in ``test`` meanwhile."""
    name = f"upk_{uuid.uuid4().hex[:12]}"
    execute(mysql_dsn, f"CREATE DATABASE `{name}`")
    yield urlsplit(mysql_dsn)._replace(path=f"/{name}").geturl()
    execute(mysql_dsn, f"DROP DATABASE IF EXISTS `{name}`")


async def test_indexes_names_duplicates_and_redundant_ones(database: str) -> None:
    execute(
        database,
        "CREATE TABLE t (id INT PRIMARY KEY, a INT, b INT, c VARCHAR(40),"
        " KEY k_a (a), KEY k_a_again (a), KEY k_ab (a, b), UNIQUE KEY u_b (b),"
        " KEY k_b (b), KEY k_c5 (c(5)), KEY k_c (c))",
    )
    outcome = await run_probe(IndexesProbe, MysqlTarget, {"dsn": database})
    metrics = dict(outcome.metrics)
    message = outcome.message or ""
    schema = urlsplit(database).path.lstrip("/")
    # k_a_again repeats k_a (the later name goes); k_b repeats the unique u_b (the
    # non-unique one goes); k_a is a left prefix of k_ab. A prefix index of c(5) is not
    # the same as one of the whole column, nor is the unique u_b redundant.
    assert (
        f"2 duplicate: {schema}.t.k_a_again (covered by k_a), {schema}.t.k_b (covered by u_b)"
        in message
    )
    assert f"1 redundant: {schema}.t.k_a (covered by k_ab)" in message
    assert (metrics["indexes"], metrics["duplicate"], metrics["redundant"]) == (8, 2, 1)
    if "performance_schema is off" in message:
        assert "unused" not in metrics
    else:
        assert "unused" in metrics


async def test_fragmentation_finds_a_table_after_most_rows_are_deleted(database: str) -> None:
    execute(
        database,
        "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, pad VARCHAR(2000)) ENGINE=InnoDB",
        "INSERT INTO t (pad) SELECT REPEAT('x', 2000) FROM seq_1_to_4000",
        "DELETE FROM t WHERE id % 10 <> 0",
    )
    params: dict[str, Any] = {"min_free_bytes": 1024 * 1024, "min_free_percent": 50}
    outcome = await run_probe(FragmentationProbe, MysqlTarget, {"dsn": database}, params)
    metrics = dict(outcome.metrics)
    schema = urlsplit(database).path.lstrip("/")
    assert metrics["fragmented"] == 1
    assert float(metrics["free_bytes_max"]) >= 1024 * 1024
    assert (outcome.message or "").startswith(f"1 of 1 tables fragmented: {schema}.t (")
    assert "xxx" not in (outcome.message or "")

    strict = {"min_free_bytes": 2**50, "min_free_percent": 50}
    quiet = await run_probe(FragmentationProbe, MysqlTarget, {"dsn": database}, strict)
    assert dict(quiet.metrics)["fragmented"] == 0
    assert "none of" in (quiet.message or "")
