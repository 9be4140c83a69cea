"""postgres.vacuum and postgres.analyze against the real local PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.postgres.vacuum import (
    PostgresAnalyze,
    PostgresVacuum,
    TablesParams,
    VacuumParams,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def table(postgres_dsn: str) -> Iterator[str]:
    """A table of 2000 rows, 1800 of them deleted (dead until vacuumed)."""
    name = f"vac_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE {name} (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false)"
        )
        connection.execute(
            f"INSERT INTO {name} SELECT i, repeat('x', 100) FROM generate_series(1, 2000) i"
        )
        connection.execute(f"DELETE FROM {name} WHERE id % 10 <> 0")
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {name}")


async def dead_rows_counted(dsn: str, table: str) -> None:
    """Wait until the statistics show the deletes (they are flushed asynchronously)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        for _ in range(100):
            row = await (
                await connection.execute(
                    "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", (table,)
                )
            ).fetchone()
            if row is not None and row[0] >= 1800:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the statistics never showed the dead rows")


async def test_vacuum_shows_its_sql_then_removes_the_dead_rows(
    postgres_dsn: str, table: str, task_context: TaskContext
) -> None:
    await dead_rows_counted(postgres_dsn, table)
    target = PostgresTarget(dsn=postgres_dsn)
    params = VacuumParams.model_validate({"tables": [table], "statement_timeout": "1m"})

    plan = await PostgresVacuum().plan(target, params, task_context)
    (change,) = plan.changes
    assert change.detail.startswith(f'VACUUM (ANALYZE) "public"."{table}"; now 1800 dead rows')
    assert "SET statement_timeout = '10000ms'" in plan.note  # capped by the step's 10 s

    outcome = await PostgresVacuum().run(target, params, task_context)
    figures = outcome.figures
    assert figures[f"dead_rows_before:public.{table}"] == 1800
    # The module's own database: no other suite's transaction keeps the rows visible.
    after = figures[f"dead_rows_after:public.{table}"]
    assert after == 0
    assert figures["tables_done"] == 1
    assert figures["gave_up"] == 0
    size = figures[f"bytes_before:public.{table}"]
    assert isinstance(size, int) and size > 0
    assert outcome.changes[0].detail.startswith(f"dead rows 1800 -> {after}, ")
    with psycopg.connect(postgres_dsn) as connection:
        row = connection.execute(
            "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname = %s",
            (table,),
        ).fetchone()
    assert row == (True, True)


async def test_analyze_refreshes_statistics(
    postgres_dsn: str, table: str, task_context: TaskContext
) -> None:
    target = PostgresTarget(dsn=postgres_dsn)
    params = TablesParams.model_validate({"tables": [f"public.{table}"]})
    plan = await PostgresAnalyze().plan(target, params, task_context)
    assert plan.changes[0].detail.startswith(f'ANALYZE "public"."{table}"')
    outcome = await PostgresAnalyze().run(target, params, task_context)
    assert outcome.figures["tables_done"] == 1
    with psycopg.connect(postgres_dsn) as connection:
        row = connection.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = %s",
            (table,),
        ).fetchone()
    assert row == (True,)


async def test_vacuum_that_cannot_get_its_lock_gives_up_within_lock_timeout(
    postgres_dsn: str, table: str, task_context: TaskContext
) -> None:
    target = PostgresTarget(dsn=postgres_dsn)
    params = VacuumParams.model_validate({"tables": [table], "lock_timeout": "200ms"})
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as holder:
        await holder.execute(f"LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE")
        with pytest.raises(TaskFailed, match=rf"gave up on 1: public\.{table}: lock_timeout"):
            await asyncio.wait_for(PostgresVacuum().run(target, params, task_context), 3)
        await holder.rollback()


async def test_a_missing_table_is_named(postgres_dsn: str, task_context: TaskContext) -> None:
    params = TablesParams.model_validate({"tables": ["no_such_table_here"]})
    plan = await PostgresAnalyze().plan(PostgresTarget(dsn=postgres_dsn), params, task_context)
    assert plan.note == "the run would fail: PostgreSQL has no table no_such_table_here"
    with pytest.raises(TaskFailed, match="no table no_such_table_here"):
        await PostgresAnalyze().run(PostgresTarget(dsn=postgres_dsn), params, task_context)
