"""postgres.autovacuum against the real local PostgreSQL, run as runbook steps so that a
rollback reads what the earlier run recorded in a real store."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import load_text
from upkeep.config.errors import ConfigError
from upkeep.engine.runbooks import RunbookExecutor
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.probes.postgres import PostgresTarget
from upkeep.store.runs import RunRecord, new_instance_id
from upkeep.store.store import Store
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.postgres.autovacuum import AutovacuumParams, PostgresAutovacuum

pytestmark = pytest.mark.postgres


@pytest.fixture
def table(postgres_dsn: str) -> Iterator[str]:
    """A table that sets one autovacuum option (scale factor 0.3) and leaves the rest."""
    name = f"av_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE {name} (id int PRIMARY KEY, v text) "
            "WITH (autovacuum_vacuum_scale_factor = 0.3)"
        )
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    yield opened
    opened.close()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.close()


def options_of(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn) as connection:
        row = connection.execute(
            "SELECT coalesce(c.reloptions, '{}'), coalesce(t.reloptions, '{}') FROM pg_class c "
            "LEFT JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.oid = %s::regclass",
            (table,),
        ).fetchone()
    assert row is not None
    return sorted([*row[0], *(f"toast.{entry}" for entry in row[1])])


def config(dsn: str, table: str, *, rollback: bool) -> str:
    settings = json.dumps(
        {
            f"public.{table}": {
                "autovacuum_vacuum_scale_factor": 0.01,
                "autovacuum_vacuum_threshold": 1000,
                "toast.autovacuum_enabled": False,
            }
        }
    )
    return f"""\
targets:
  db: {{kind: postgres, dsn: {json.dumps(dsn)}}}
runbooks:
  tune:
    steps:
      - task: postgres.autovacuum
        target: db
        with: {{tables: {settings}, rollback: {str(rollback).lower()}, lock_timeout: 1s}}
"""


async def run(
    tmp_path: Path, store: Store, http: HttpClient, text: str, *, dry_run: bool = False
) -> RunRecord:
    loaded = load_text(tmp_path, text)
    executor = RunbookExecutor(
        loaded,
        store,
        http=http,
        checks=CheckRunner(redactor=loaded.redactor, http=http),
        owner=new_instance_id(),
    )
    record = await executor.execute("tune", trigger="cli", dry_run=dry_run)
    assert record is not None
    return record


async def test_apply_records_previous_values_and_rollback_restores_them(
    postgres_dsn: str, table: str, tmp_path: Path, store: Store, http: HttpClient
) -> None:
    before = options_of(postgres_dsn, table)
    assert before == ["autovacuum_vacuum_scale_factor=0.3"]

    planned = await run(
        tmp_path, store, http, config(postgres_dsn, table, rollback=False), dry_run=True
    )
    (step,) = planned.steps
    assert step.status == "planned"
    (change,) = step.detail["changes"]
    assert change["detail"] == (
        f'ALTER TABLE "public"."{table}" SET (autovacuum_vacuum_threshold = 1000, '
        "autovacuum_vacuum_scale_factor = 0.01, toast.autovacuum_enabled = false); "
        "autovacuum_vacuum_threshold now unset, autovacuum_vacuum_scale_factor now 0.3, "
        "toast.autovacuum_enabled now unset"
    )
    assert options_of(postgres_dsn, table) == before  # the dry run changed nothing

    applied = await run(tmp_path, store, http, config(postgres_dsn, table, rollback=False))
    (step,) = applied.steps
    assert step.status == "ok", step.output
    figures = step.detail["figures"]
    assert figures[f"previous:public.{table}:autovacuum_vacuum_scale_factor"] == "0.3"
    assert figures[f"previous:public.{table}:autovacuum_vacuum_threshold"] == "unset"
    assert figures[f"previous:public.{table}:toast.autovacuum_enabled"] == "unset"
    assert figures["rollback"] is False
    assert options_of(postgres_dsn, table) == [
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_vacuum_threshold=1000",
        "toast.autovacuum_enabled=false",
    ]

    rolled_back = await run(tmp_path, store, http, config(postgres_dsn, table, rollback=True))
    (step,) = rolled_back.steps
    assert step.status == "ok", step.output
    assert f"restoring the values recorded by run {applied.id}" in step.output
    assert options_of(postgres_dsn, table) == before  # SET 0.3, RESET of the two unset ones
    # A second rollback restores the same applied run's values again (rollbacks are skipped).
    again = await run(tmp_path, store, http, config(postgres_dsn, table, rollback=True))
    assert again.steps[0].status == "ok"
    assert options_of(postgres_dsn, table) == before


async def test_rollback_with_nothing_recorded_fails_clearly(
    postgres_dsn: str, table: str, tmp_path: Path, store: Store, http: HttpClient
) -> None:
    record = await run(tmp_path, store, http, config(postgres_dsn, table, rollback=True))
    (step,) = record.steps
    assert step.status == "failed"
    assert "nothing to roll back: no run of runbook 'tune'" in step.output


async def test_a_missing_table_and_a_rollback_outside_a_runbook(
    postgres_dsn: str, task_context: TaskContext
) -> None:
    target = PostgresTarget(dsn=postgres_dsn)
    params = AutovacuumParams.model_validate(
        {"tables": {"no_such_av_table": {"autovacuum_enabled": True}}}
    )
    plan = await PostgresAutovacuum().plan(target, params, task_context)
    assert plan.note == "the run would fail: PostgreSQL has no table no_such_av_table"
    with pytest.raises(TaskFailed, match="no table no_such_av_table"):
        await PostgresAutovacuum().run(target, params, task_context)
    rollback = AutovacuumParams.model_validate({"rollback": True})
    with pytest.raises(TaskFailed, match="runs only as a runbook step"):
        await PostgresAutovacuum().run(target, rollback, task_context)


def test_bad_options_are_refused_at_load_with_file_line_and_key(tmp_path: Path) -> None:
    text = """\
targets:
  db: {kind: postgres, dsn: "postgresql://127.0.0.1/test"}
runbooks:
  tune:
    steps:
      - task: postgres.autovacuum
        target: db
        with:
          tables:
            public.orders:
              autovacuum_vacuum_scale_factor: 500
              fillfactor: 70
"""
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    found = [str(issue) for issue in caught.value.issues]
    assert any(
        "upkeep.yaml:11:" in line
        and "with.tables.public.orders.autovacuum_vacuum_scale_factor: must be at most 100" in line
        for line in found
    ), found
    assert any(
        "upkeep.yaml:12:" in line and "orders.fillfactor: unknown key" in line for line in found
    ), found
