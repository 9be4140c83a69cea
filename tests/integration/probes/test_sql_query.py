"""The ``query`` probe of PostgreSQL and MariaDB against the real local servers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pymysql
import pytest

from tests.conftest import run_probe
from upkeep.probes import mysql, postgres
from upkeep.probes.mysql import parse_dsn
from upkeep.probes.sql import QueryFailed


def mysql_execute(dsn: str, *statements: str) -> None:
    address = parse_dsn(dsn)
    connection = pymysql.connect(
        host=address.host, port=address.port, user=address.user, database=address.database
    )
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        connection.commit()
    finally:
        connection.close()


@pytest.fixture
def pg_table(postgres_dsn: str) -> Iterator[str]:
    name = f"q_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, size bigint)")
        connection.execute(f"INSERT INTO {name} VALUES (1, 10), (2, 250), (3, NULL)")
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"DROP TABLE {name}")


@pytest.fixture
def my_table(mysql_dsn: str) -> Iterator[str]:
    name = f"q_{uuid.uuid4().hex[:12]}"
    mysql_execute(
        mysql_dsn,
        f"CREATE TABLE {name} (id int PRIMARY KEY, size bigint)",
        f"INSERT INTO {name} VALUES (1, 10), (2, 250), (3, NULL)",
    )
    yield name
    mysql_execute(mysql_dsn, f"DROP TABLE {name}")


async def pg_query(dsn: str, **params: Any) -> Any:
    return await run_probe(postgres.QueryProbe, postgres.PostgresTarget, {"dsn": dsn}, params)


async def my_query(dsn: str, **params: Any) -> Any:
    return await run_probe(mysql.QueryProbe, mysql.MysqlTarget, {"dsn": dsn}, params)


@pytest.mark.postgres
async def test_postgres_counts_decimals_keys_and_nulls(postgres_dsn: str, pg_table: str) -> None:
    outcome = await pg_query(
        postgres_dsn,
        query=f"select count(*) as n, sum(size) as total, avg(size) as mean from {pg_table}",
        metrics=["n", "total", "mean"],
    )
    assert {key: outcome.metrics[key] for key in ("n", "total", "mean", "rows")} == {
        "n": 3,
        "total": 260,
        "mean": 130,
        "rows": 1,
    }
    assert outcome.metrics["elapsed_ms"] >= 0
    keyed = await pg_query(
        postgres_dsn,
        query=f"select 'k' || id as name, size from {pg_table} where size is not null",
        metrics=["size"],
        key_column="name",
    )
    assert (keyed.metrics["size"], keyed.metrics["size.k1"], keyed.metrics["size.k2"]) == (
        250,
        10,
        250,
    )
    with pytest.raises(QueryFailed, match="column 'size' is NULL"):
        await pg_query(
            postgres_dsn, query=f"select size from {pg_table} where id = 3", metrics=["size"]
        )


@pytest.mark.postgres
async def test_postgres_refuses_writes_and_second_statements(
    postgres_dsn: str, pg_table: str
) -> None:
    with pytest.raises(QueryFailed, match="must be one statement that reads"):
        await pg_query(
            postgres_dsn, query=f"delete from {pg_table} returning id as n", metrics=["n"]
        )
    # A statement that starts by reading but writes: the read-only transaction stops it.
    with pytest.raises(QueryFailed, match="tried to write, and query checks run read-only"):
        await pg_query(
            postgres_dsn,
            query=f"with gone as (delete from {pg_table} returning id) "
            "select count(*) as n from gone",
            metrics=["n"],
        )
    with pytest.raises(QueryFailed, match="cannot insert multiple commands"):
        await pg_query(
            postgres_dsn,
            query=f"select 1 as n; commit; delete from {pg_table}",
            metrics=["n"],
        )
    with psycopg.connect(postgres_dsn) as connection:
        assert connection.execute(f"select count(*) from {pg_table}").fetchone() == (3,)


@pytest.mark.postgres
async def test_postgres_statement_and_lock_timeouts(postgres_dsn: str, pg_table: str) -> None:
    with pytest.raises(QueryFailed, match=r"longer than statement_timeout \(0.2s\)"):
        await pg_query(
            postgres_dsn,
            query="select 1 as n from pg_sleep(2)",
            metrics=["n"],
            statement_timeout="200ms",
        )
    with psycopg.connect(postgres_dsn) as holder:
        holder.execute(f"LOCK TABLE {pg_table} IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(QueryFailed, match=r"longer than lock_timeout \(0.2s\) for a lock"):
            await pg_query(
                postgres_dsn,
                query=f"select count(*) as n from {pg_table}",
                metrics=["n"],
                lock_timeout="200ms",
            )


@pytest.mark.mysql
async def test_mariadb_counts_decimals_keys_and_nulls(mysql_dsn: str, my_table: str) -> None:
    outcome = await my_query(
        mysql_dsn,
        query=f"select count(*) as n, sum(size) as total, avg(size) as mean from {my_table}",
        metrics=["n", "total", "mean"],
    )
    assert {key: outcome.metrics[key] for key in ("n", "total", "mean", "rows")} == {
        "n": 3,
        "total": 260,
        "mean": 130,
        "rows": 1,
    }
    keyed = await my_query(
        mysql_dsn,
        query=f"select concat('k', id) as name, size from {my_table} where size is not null",
        metrics=["size"],
        key_column="name",
        aggregate="min",
    )
    assert (keyed.metrics["size"], keyed.metrics["size.k2"]) == (10, 250)
    empty = await my_query(
        mysql_dsn,
        query=f"select size from {my_table} where id > 99",
        metrics=["size"],
        null_as=0,
    )
    assert (empty.metrics["size"], empty.metrics["rows"]) == (0, 0)
    with pytest.raises(QueryFailed, match="holds str values, not numbers"):
        await my_query(mysql_dsn, query="select 'a%' as n", metrics=["n"])


@pytest.mark.mysql
async def test_mariadb_refuses_writes_and_second_statements(mysql_dsn: str, my_table: str) -> None:
    with pytest.raises(QueryFailed, match="must be one statement that reads"):
        await my_query(mysql_dsn, query=f"delete from {my_table}", metrics=["n"])
    # A SELECT whose function writes (a side effect): the read-only transaction stops it.
    writer = f"{my_table}_w"
    mysql_execute(
        mysql_dsn,
        f"CREATE FUNCTION {writer}() RETURNS int MODIFIES SQL DATA "
        f"BEGIN DELETE FROM {my_table}; RETURN 1; END",
    )
    try:
        with pytest.raises(QueryFailed, match="tried to write, and query checks run read-only"):
            await my_query(mysql_dsn, query=f"select {writer}() as n", metrics=["n"])
    finally:
        mysql_execute(mysql_dsn, f"DROP FUNCTION {writer}")
    with pytest.raises(QueryFailed, match="the query failed: You have an error in your SQL"):
        await my_query(mysql_dsn, query=f"select 1 as n; delete from {my_table}", metrics=["n"])
    with pytest.raises(QueryFailed, match=r"longer than statement_timeout \(0.2s\)"):
        await my_query(
            mysql_dsn, query="select sleep(2) + 1 as n", metrics=["n"], statement_timeout="200ms"
        )
    address = parse_dsn(mysql_dsn)
    connection = pymysql.connect(host=address.host, port=address.port, user=address.user)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"select count(*) from {address.database}.{my_table}")
            assert cursor.fetchone() == (3,)
    finally:
        connection.close()
