"""MySQL/MariaDB index and fragmentation probes against the real local server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

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
def table(mysql_dsn: str) -> Iterator[str]:
    """A unique table name in the test database, dropped afterwards."""
    name = f"upk_{uuid.uuid4().hex[:12]}"
    yield name
    execute(mysql_dsn, f"DROP TABLE IF EXISTS `{name}`")


async def test_indexes_names_duplicates_and_redundant_ones(mysql_dsn: str, table: str) -> None:
    execute(
        mysql_dsn,
        f"CREATE TABLE `{table}` (id INT PRIMARY KEY, a INT, b INT, c VARCHAR(40),"
        " KEY k_a (a), KEY k_a_again (a), KEY k_ab (a, b), UNIQUE KEY u_b (b),"
        " KEY k_b (b), KEY k_c5 (c(5)), KEY k_c (c))",
    )
    outcome = await run_probe(IndexesProbe, MysqlTarget, {"dsn": mysql_dsn})
    metrics = dict(outcome.metrics)
    message = outcome.message or ""
    # Only this test's table is judged here: other tests may own tables of their own.
    mine = [part for part in message.split(", ") if table in part]
    assert f"test.{table}.k_a_again (covered by k_a)" in message or (
        f"test.{table}.k_a (covered by k_a_again)" in message
    )
    assert f"test.{table}.k_b (covered by u_b)" in message
    # k_a is a left prefix of k_ab; u_b is unique, so k_b covered by it is a duplicate only.
    assert any("(covered by k_ab)" in part for part in mine)
    # A prefix index of c(5) is not the same as one of the whole column.
    assert "k_c5 (covered by k_c)" not in message
    assert float(metrics["duplicate"]) >= 2 and float(metrics["redundant"]) >= 1
    assert float(metrics["indexes"]) >= 7
    if "performance_schema is off" in message:
        assert "unused" not in metrics
    else:
        assert "unused" in metrics


async def test_fragmentation_finds_a_table_after_most_rows_are_deleted(
    mysql_dsn: str, table: str
) -> None:
    execute(
        mysql_dsn,
        f"CREATE TABLE `{table}` (id INT PRIMARY KEY AUTO_INCREMENT, pad VARCHAR(2000))"
        " ENGINE=InnoDB",
        f"INSERT INTO `{table}` (pad) SELECT REPEAT('x', 2000) FROM seq_1_to_4000",
        f"DELETE FROM `{table}` WHERE id % 10 <> 0",
    )
    params: dict[str, Any] = {"min_free_bytes": 1024 * 1024, "min_free_percent": 50}
    outcome = await run_probe(FragmentationProbe, MysqlTarget, {"dsn": mysql_dsn}, params)
    metrics = dict(outcome.metrics)
    assert float(metrics["fragmented"]) >= 1
    assert float(metrics["free_bytes_max"]) >= 1024 * 1024
    assert f"test.{table} (" in (outcome.message or "")
    assert "xxx" not in (outcome.message or "")

    strict = {"min_free_bytes": 2**50, "min_free_percent": 50}
    quiet = await run_probe(FragmentationProbe, MysqlTarget, {"dsn": mysql_dsn}, strict)
    assert dict(quiet.metrics)["fragmented"] == 0
    assert "none of" in (quiet.message or "")
