"""postgres.reindex against the real local PostgreSQL (unique table names per test)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.postgres.reindex import PostgresReindex, ReindexParams

pytestmark = pytest.mark.postgres


@pytest.fixture
def names(postgres_dsn: str) -> Iterator[str]:
    """A unique prefix; everything named after it is dropped afterwards."""
    prefix = f"rx_{uuid.uuid4().hex[:10]}"
    yield prefix
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {prefix}_t, {prefix}_ctl")
        connection.execute(f"DROP FUNCTION IF EXISTS {prefix}_slow(int)")


def indexes(dsn: str, table: str) -> dict[str, bool]:
    """Return the indexes of ``table`` by name, with whether each is valid."""
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c "
            "ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
            (table,),
        ).fetchall()
    return {str(name): bool(valid) for name, valid in rows}


async def test_bloated_index_shrinks_and_both_sizes_are_recorded(
    postgres_dsn: str, names: str, task_context: TaskContext
) -> None:
    table = f"{names}_t"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
        connection.execute(f"CREATE INDEX {names}_v ON {table} (v)")
        connection.execute(f"INSERT INTO {table} SELECT i, i FROM generate_series(1, 100000) i")
        # Nine rows of ten go from every leaf page: the pages stay, sparsely filled.
        connection.execute(f"DELETE FROM {table} WHERE id % 10 <> 0")
        connection.execute(f"VACUUM {table}")
    target = PostgresTarget(dsn=postgres_dsn)
    params = ReindexParams.model_validate({"tables": [table], "lock_timeout": "2s"})

    plan = await PostgresReindex().plan(target, params, task_context)
    assert [change.detail.split(";")[0] for change in plan.changes] == [
        f'REINDEX INDEX CONCURRENTLY "public"."{table}_pkey"',
        f'REINDEX INDEX CONCURRENTLY "public"."{names}_v"',
    ]
    assert "SET lock_timeout = '2000ms'" in plan.note

    outcome = await PostgresReindex().run(target, params, task_context)
    figures = outcome.figures
    assert figures["indexes_reindexed"] == 2
    assert figures["leftovers_dropped"] == 0
    for index in (f"{table}_pkey", f"{names}_v"):
        before = figures[f"bytes_before:public.{index}"]
        after = figures[f"bytes_after:public.{index}"]
        assert isinstance(before, int) and isinstance(after, int)
        assert after <= before * 0.7, (index, before, after)
    assert [change.action for change in outcome.changes] == ["reindex", "reindex"]
    assert f"after {figures[f'bytes_after:public.{names}_v']} B" in outcome.changes[1].detail
    assert indexes(postgres_dsn, table) == {f"{table}_pkey": True, f"{names}_v": True}


async def test_a_killed_rebuild_leaves_a_leftover_that_the_next_run_removes_first(
    postgres_dsn: str, names: str, task_context: TaskContext
) -> None:
    table, control, index = f"{names}_t", f"{names}_ctl", f"{names}_slow_idx"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {control} (on_ bool)")
        # An index expression that sleeps while the control table has a row: the rebuild
        # is slow exactly while the test needs it to be.
        connection.execute(
            f"CREATE FUNCTION {names}_slow(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
            f"$$ BEGIN IF EXISTS (SELECT 1 FROM public.{control}) THEN "
            "PERFORM pg_sleep(0.02); END IF; RETURN x; END $$"
        )
        connection.execute(f"CREATE TABLE {table} (id int)")
        connection.execute(f"INSERT INTO {table} SELECT generate_series(1, 300)")
        connection.execute(f"CREATE INDEX {index} ON {table} ({names}_slow(id))")
        connection.execute(f"INSERT INTO {control} VALUES (true)")
    target = PostgresTarget(dsn=postgres_dsn)
    params = ReindexParams.model_validate({"indexes": [index]})

    rebuild = asyncio.create_task(PostgresReindex().run(target, params, task_context))
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as watcher:
        for _ in range(200):
            row = await (
                await watcher.execute(
                    "SELECT a.pid FROM pg_stat_activity a WHERE a.query = %s "
                    "AND to_regclass(%s) IS NOT NULL",
                    (f'REINDEX INDEX CONCURRENTLY "public"."{index}"', f"{index}_ccnew"),
                )
            ).fetchone()
            if row is not None:
                break
            await asyncio.sleep(0.05)
        assert row is not None, "the rebuild never started building"
        await watcher.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        with pytest.raises(TaskFailed, match="terminat"):
            await rebuild
        assert indexes(postgres_dsn, table) == {index: True, f"{index}_ccnew": False}
        await watcher.execute(f"DELETE FROM {control}")

    plan = await PostgresReindex().plan(target, params, task_context)
    assert [(change.action, change.subject) for change in plan.changes] == [
        ("drop", f"public.{index}_ccnew"),
        ("reindex", f"public.{index}"),
    ]
    outcome = await PostgresReindex().run(target, params, task_context)
    assert [(change.action, change.subject) for change in outcome.changes] == [
        ("drop", f"public.{index}_ccnew"),
        ("reindex", f"public.{index}"),
    ]
    assert outcome.figures["leftovers_dropped"] == 1
    assert indexes(postgres_dsn, table) == {index: True}


async def test_a_reindex_that_cannot_get_its_lock_gives_up_and_readers_go_on(
    postgres_dsn: str, names: str, task_context: TaskContext
) -> None:
    table = f"{names}_t"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        connection.execute(f"INSERT INTO {table} SELECT generate_series(1, 1000)")
    target = PostgresTarget(dsn=postgres_dsn)
    params = ReindexParams.model_validate({"tables": [table], "lock_timeout": "300ms"})
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as holder:
        # SHARE conflicts with the rebuild's SHARE UPDATE EXCLUSIVE, not with readers.
        await holder.execute(f"LOCK TABLE {table} IN SHARE MODE")
        started = time.monotonic()
        rebuild = asyncio.create_task(PostgresReindex().run(target, params, task_context))
        await asyncio.sleep(0.1)
        async with await psycopg.AsyncConnection.connect(postgres_dsn) as reader:
            read_started = time.monotonic()
            await reader.execute(f"SELECT count(*) FROM {table} WHERE id = 5")
            read_s = time.monotonic() - read_started
        with pytest.raises(TaskFailed, match=r"gave up on 1: public\..*lock_timeout hit"):
            await rebuild
        waited_s = time.monotonic() - started
        await holder.rollback()
    assert read_s < 0.3 + 1.0, read_s  # loose: a shared machine; figures in benchmarks/
    assert waited_s < 0.3 + 2.0, waited_s
    assert indexes(postgres_dsn, table) == {f"{table}_pkey": True}


async def test_a_missing_index_is_the_plans_finding_and_fails_the_run(
    postgres_dsn: str, names: str, task_context: TaskContext
) -> None:
    target = PostgresTarget(dsn=postgres_dsn)
    params = ReindexParams.model_validate({"indexes": [f"{names}_none"]})
    plan = await PostgresReindex().plan(target, params, task_context)
    assert plan.note.startswith(f"the run would fail: PostgreSQL has no index {names}_none")
    assert plan.changes == []
    with pytest.raises(TaskFailed, match=f"no index {names}_none"):
        await PostgresReindex().run(target, params, task_context)


async def test_a_valid_index_named_like_a_leftover_is_rebuilt_never_dropped(
    postgres_dsn: str, names: str, task_context: TaskContext
) -> None:
    table = f"{names}_t"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {table} (id int, v int)")
        connection.execute(f"CREATE INDEX {names}_i ON {table} (id)")
        connection.execute(f"CREATE INDEX {names}_i_ccnew ON {table} (v)")
    target = PostgresTarget(dsn=postgres_dsn)
    params = ReindexParams.model_validate({"tables": [table]})
    outcome = await PostgresReindex().run(target, params, task_context)
    assert sorted((change.action, change.subject) for change in outcome.changes) == [
        ("reindex", f"public.{names}_i"),
        ("reindex", f"public.{names}_i_ccnew"),
    ]
    assert indexes(postgres_dsn, table) == {f"{names}_i": True, f"{names}_i_ccnew": True}
