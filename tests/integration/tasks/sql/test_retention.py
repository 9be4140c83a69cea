"""sql.retention against the real local PostgreSQL and MariaDB (small tables, unique names)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import zstandard
from pydantic import ValidationError

from upkeep.probes.mysql import MysqlTarget, parse_dsn
from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.sql.retention import RetentionParams, SqlRetention

# 20 rows dated two years ago (ids 1-20, half of them kind 'a'), 10 dated today.
PG_ROWS = (
    "INSERT INTO {t} (id, kind, created, payload) "
    "SELECT i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, "
    "CASE WHEN i <= 20 THEN now() - interval '2 years' ELSE now() END, "
    "decode('00ff', 'hex') FROM generate_series(1, 30) i"
)


def params(table: str, **values: Any) -> RetentionParams:
    return RetentionParams.model_validate(
        {"table": table, "column": "created", "older_than": "365d", "pause": "0s", **values}
    )


def read_backups(directory: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(directory.iterdir()):
        assert path.name.endswith(".jsonl.zst"), path.name
        text = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
        rows += [json.loads(line) for line in text.decode().splitlines()]
    return rows


@pytest.fixture
def pg_table(postgres_dsn: str) -> Iterator[str]:
    name = f"ret_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE {name} (id int PRIMARY KEY, kind text, created timestamptz, "
            "payload bytea)"
        )
        connection.execute(PG_ROWS.format(t=name))
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"DROP TABLE {name}")


def pg_ids(dsn: str, table: str) -> list[int]:
    with psycopg.connect(dsn) as connection:
        return [row[0] for row in connection.execute(f"SELECT id FROM {table} ORDER BY id")]


@pytest.mark.postgres
async def test_postgres_plan_changes_nothing_and_run_backs_up_each_batch_first(
    postgres_dsn: str, pg_table: str, task_context: TaskContext, tmp_path: Path
) -> None:
    target = PostgresTarget(dsn=postgres_dsn)
    plan = await SqlRetention().plan(target, params(pg_table, batch_size=7), task_context)
    assert plan.changes[0].detail.startswith("20 rows with created before ")
    assert "in about 3 batches of 7" in plan.changes[0].detail
    assert len(pg_ids(postgres_dsn, pg_table)) == 30

    backups = tmp_path / "backups"
    outcome = await SqlRetention().run(
        target, params(pg_table, batch_size=7, backup_to=str(backups)), task_context
    )
    figures = outcome.figures
    assert (figures["rows_deleted"], figures["batches"], figures["backup_files"]) == (20, 3, 3)
    assert figures["complete"] is True
    assert 0 < float(figures["max_batch_ms"]) < 2000
    assert pg_ids(postgres_dsn, pg_table) == list(range(21, 31))
    saved = read_backups(backups)
    assert sorted(row["id"] for row in saved) == list(range(1, 21))
    assert saved[0]["payload"] == "AP8="  # bytes as base64
    assert datetime.fromisoformat(saved[0]["created"]) < datetime.now(UTC) - timedelta(days=700)

    again = await SqlRetention().run(target, params(pg_table), task_context)
    assert (again.figures["rows_deleted"], again.changes) == (0, [])


@pytest.mark.postgres
async def test_postgres_match_limits_the_rows_and_a_held_lock_fails_after_retries(
    postgres_dsn: str, pg_table: str, task_context: TaskContext
) -> None:
    target = PostgresTarget(dsn=postgres_dsn)
    injected = {"kind": "a' OR 'x' = 'x"}
    outcome = await SqlRetention().run(target, params(pg_table, match=injected), task_context)
    assert outcome.figures["rows_deleted"] == 0  # a bound value, not SQL
    outcome = await SqlRetention().run(target, params(pg_table, match={"kind": "a"}), task_context)
    assert outcome.figures["rows_deleted"] == 10
    assert pg_ids(postgres_dsn, pg_table)[:3] == [1, 3, 5]
    with psycopg.connect(postgres_dsn) as holder:
        holder.execute(f"LOCK TABLE {pg_table} IN ROW EXCLUSIVE MODE")
        holder.execute(f"SELECT * FROM {pg_table} WHERE id = 1 FOR UPDATE")
        with pytest.raises(TaskFailed, match=r"hit lock_wait or max_lock 2 time\(s\) in a row"):
            await SqlRetention().run(
                target, params(pg_table, lock_wait="100ms", retries=1), task_context
            )
    assert len(pg_ids(postgres_dsn, pg_table)) == 20


@pytest.mark.postgres
async def test_postgres_unwritable_backup_deletes_nothing(
    postgres_dsn: str, pg_table: str, task_context: TaskContext, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(TaskFailed, match="cannot write the backup, nothing deleted"):
        await SqlRetention().run(
            PostgresTarget(dsn=postgres_dsn),
            params(pg_table, backup_to=str(blocker)),
            task_context,
        )
    assert len(pg_ids(postgres_dsn, pg_table)) == 30
    plan = await SqlRetention().plan(
        PostgresTarget(dsn=postgres_dsn), params("public.missing_table"), task_context
    )
    assert plan.summary() == "the run would fail: PostgreSQL has no table public.missing_table"
    with pytest.raises(TaskFailed, match=r"has no table public\.missing_table"):
        await SqlRetention().run(
            PostgresTarget(dsn=postgres_dsn), params("public.missing_table"), task_context
        )


def mysql_connect(dsn: str) -> pymysql.connections.Connection[Any]:
    address = parse_dsn(dsn)
    return pymysql.connect(
        host=address.host, port=address.port, user=address.user, database=address.database
    )


def mysql_run(dsn: str, *statements: str) -> list[tuple[Any, ...]]:
    connection = mysql_connect(dsn)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            rows = list(cursor.fetchall())
        connection.commit()
    finally:
        connection.close()
    return rows


@pytest.fixture
def my_table(mysql_dsn: str) -> Iterator[str]:
    name = f"ret_{uuid.uuid4().hex[:12]}"
    mysql_run(
        mysql_dsn,
        f"CREATE TABLE {name} (id int PRIMARY KEY, kind varchar(4), created datetime, "
        "amount decimal(8,2))",
        f"INSERT INTO {name} SELECT seq, IF(seq % 2 = 0, 'a', 'b'), "
        "IF(seq <= 20, UTC_TIMESTAMP() - INTERVAL 2 YEAR, UTC_TIMESTAMP()), 1.5 "
        "FROM seq_1_to_30",
    )
    yield name
    mysql_run(mysql_dsn, f"DROP TABLE IF EXISTS {name}")


@pytest.mark.mysql
async def test_mariadb_plan_run_and_backup(
    mysql_dsn: str, my_table: str, task_context: TaskContext, tmp_path: Path
) -> None:
    target = MysqlTarget(dsn=mysql_dsn)
    plan = await SqlRetention().plan(target, params(my_table), task_context)
    assert plan.changes[0].detail.startswith("20 rows with created before ")
    outcome = await SqlRetention().run(
        target, params(my_table, batch_size=8, match={"kind": "a"}), task_context
    )
    assert (outcome.figures["rows_deleted"], outcome.figures["batches"]) == (10, 2)
    backups = tmp_path / "b"
    outcome = await SqlRetention().run(
        target, params(my_table, batch_size=4, backup_to=str(backups)), task_context
    )
    assert (outcome.figures["rows_deleted"], outcome.figures["backup_files"]) == (10, 3)
    saved = read_backups(backups)
    assert sorted(row["id"] for row in saved) == list(range(1, 21, 2))
    assert saved[0]["amount"] == "1.50"
    remaining = mysql_run(mysql_dsn, f"SELECT min(id), count(*) FROM {my_table}")
    assert remaining == [(21, 10)]


@pytest.mark.mysql
async def test_mariadb_batch_waiting_for_a_held_row_lock_gives_up(
    mysql_dsn: str, my_table: str, task_context: TaskContext
) -> None:
    holder = mysql_connect(mysql_dsn)
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {my_table} WHERE id = 1 FOR UPDATE")
        with pytest.raises(TaskFailed, match=r"max_lock 1 time\(s\) in a row \(Lock wait"):
            await SqlRetention().run(
                MysqlTarget(dsn=mysql_dsn),
                params(my_table, lock_wait="1s", retries=0),
                task_context,
            )
    finally:
        holder.rollback()
        holder.close()
    assert mysql_run(mysql_dsn, f"SELECT count(*) FROM {my_table}") == [(30,)]


@pytest.mark.mysql
async def test_mariadb_needs_a_primary_key(
    mysql_dsn: str, my_table: str, task_context: TaskContext
) -> None:
    mysql_run(mysql_dsn, f"ALTER TABLE {my_table} DROP PRIMARY KEY")
    with pytest.raises(TaskFailed, match="has no primary key"):
        await SqlRetention().run(MysqlTarget(dsn=mysql_dsn), params(my_table), task_context)


def test_names_must_be_plain_and_values_are_bound() -> None:
    with pytest.raises(ValidationError, match=r"plain name or schema\.name"):
        params("users; drop table x")
    with pytest.raises(ValidationError, match="not a plain SQL name"):
        params("users", match={"kind`": "a"})
    with pytest.raises(ValidationError, match="absolute directory"):
        params("users", backup_to="relative/dir")
    assert params("app.users", match={"note": "x'); drop table y; --"}).older_than == timedelta(
        days=365
    )
    assert SqlRetention().validate(None, params("t", match={"created": None})) == [
        "match: column 'created' is already the date column"
    ]


@pytest.mark.mysql
async def test_mariadb_primary_key_names_read_from_the_server_are_quoted(
    mysql_dsn: str, task_context: TaskContext, tmp_path: Path
) -> None:
    # The key's name comes from the server, not the config: a backtick in it must stay
    # inside the quoted name (doubled), in the plain delete and the backed-up one alike.
    name = f"ret_{uuid.uuid4().hex[:12]}"
    mysql_run(
        mysql_dsn,
        f"CREATE TABLE {name} (`i``d` int PRIMARY KEY, created datetime)",
        f"INSERT INTO {name} SELECT seq, IF(seq <= 4, UTC_TIMESTAMP() - INTERVAL 2 YEAR, "
        "UTC_TIMESTAMP()) FROM seq_1_to_6",
    )
    try:
        target = MysqlTarget(dsn=mysql_dsn)
        outcome = await SqlRetention().run(target, params(name, batch_size=3), task_context)
        assert outcome.figures["rows_deleted"] == 4
        mysql_run(mysql_dsn, f"UPDATE {name} SET created = UTC_TIMESTAMP() - INTERVAL 2 YEAR")
        backed_up = await SqlRetention().run(
            target, params(name, backup_to=str(tmp_path / "b")), task_context
        )
        assert backed_up.figures["rows_deleted"] == 2
        assert sorted(row["i`d"] for row in read_backups(tmp_path / "b")) == [5, 6]
    finally:
        mysql_run(mysql_dsn, f"DROP TABLE IF EXISTS {name}")


def test_names_with_a_trailing_newline_are_not_plain() -> None:
    with pytest.raises(ValidationError, match=r"plain name or schema\.name"):
        params("users\n")
    with pytest.raises(ValidationError, match="not a plain SQL name"):
        RetentionParams.model_validate(
            {"table": "users", "column": "created\n", "older_than": "1d"}
        )


@pytest.mark.postgres
async def test_postgres_views_and_partitioned_tables_are_named_for_what_they_are(
    postgres_dsn: str, pg_table: str, task_context: TaskContext
) -> None:
    view, parent = f"{pg_table}_v", f"{pg_table}_p"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE VIEW {view} AS SELECT * FROM {pg_table}")
        connection.execute(
            f"CREATE TABLE {parent} (id int, created timestamptz) PARTITION BY RANGE (created)"
        )
    try:
        view_plan = await SqlRetention().plan(
            PostgresTarget(dsn=postgres_dsn), params(view), task_context
        )
        assert view_plan.summary() == (
            f"the run would fail: {view} is a view, not a table; "
            "sql.retention deletes from plain tables only"
        )
        parent_plan = await SqlRetention().plan(
            PostgresTarget(dsn=postgres_dsn), params(parent), task_context
        )
        assert "is partitioned or has inheritance children" in parent_plan.summary()
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as connection:
            connection.execute(f"DROP VIEW {view}")
            connection.execute(f"DROP TABLE {parent}")
    assert len(pg_ids(postgres_dsn, pg_table)) == 30
