"""mysql.analyze and mysql.optimize against the real local MariaDB."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.probes.test_mysql import connect
from tests.integration.probes.test_mysql_upkeep import execute
from upkeep.config.errors import ConfigError
from upkeep.config.loader import load_config
from upkeep.probes.mysql import MysqlTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.mysql.tables import (
    MysqlAnalyze,
    MysqlOptimize,
    MysqlTablesParams,
    read_result_rows,
)

pytestmark = pytest.mark.mysql


@pytest.fixture
def fragmented(mysql_dsn: str) -> Iterator[str]:
    """A unique InnoDB table with most of its rows deleted (megabytes of DATA_FREE)."""
    name = f"upk_{uuid.uuid4().hex[:12]}"
    execute(
        mysql_dsn,
        f"CREATE TABLE `{name}` (id INT PRIMARY KEY AUTO_INCREMENT, pad VARCHAR(2000))"
        " ENGINE=InnoDB",
        f"INSERT INTO `{name}` (pad) SELECT REPEAT('x', 2000) FROM seq_1_to_4000",
        f"DELETE FROM `{name}` WHERE id % 10 <> 0",
    )
    yield name
    execute(mysql_dsn, f"DROP TABLE IF EXISTS `{name}`")


def target(dsn: str) -> MysqlTarget:
    """Given a DSN, return the target model the tasks take."""
    return MysqlTarget.model_validate({"kind": "mysql", "dsn": dsn})


def params(**values: Any) -> MysqlTablesParams:
    """Given params as written in a step, return the validated model."""
    return MysqlTablesParams.model_validate(values)


async def test_optimize_shows_its_statement_then_returns_the_free_space(
    mysql_dsn: str, fragmented: str, task_context: TaskContext
) -> None:
    task = MysqlOptimize()
    plan = await task.plan(target(mysql_dsn), params(tables=[fragmented]), task_context)
    assert [change.subject for change in plan.changes] == [f"test.{fragmented}"]
    assert plan.changes[0].detail.startswith(f"OPTIMIZE TABLE `test`.`{fragmented}` (now ")
    assert "free" in plan.changes[0].detail

    outcome = await task.run(target(mysql_dsn), params(tables=[f"test.{fragmented}"]), task_context)
    figures = outcome.figures
    assert int(figures[f"free_before:test.{fragmented}"]) >= 1024 * 1024
    assert int(figures["free_after"]) < int(figures["free_before"])
    assert figures["tables_done"] == 1 and figures["failed"] == 0
    assert "→" in outcome.message


async def test_analyze_runs_and_a_missing_table_fails_by_name(
    mysql_dsn: str, fragmented: str, task_context: TaskContext
) -> None:
    task = MysqlAnalyze()
    outcome = await task.run(target(mysql_dsn), params(tables=[fragmented]), task_context)
    assert outcome.figures["tables_done"] == 1

    missing = f"upk_missing_{uuid.uuid4().hex[:8]}"
    plan = await task.plan(target(mysql_dsn), params(tables=[missing]), task_context)
    assert plan.changes == [] and plan.note == f"the run would fail: MySQL has no table {missing}"
    with pytest.raises(TaskFailed, match=f"ANALYZE TABLE failed for {missing}: no such table"):
        await task.run(target(mysql_dsn), params(tables=[fragmented, missing]), task_context)


def test_error_rows_of_the_server_are_failures(mysql_dsn: str, fragmented: str) -> None:
    # The server answers OPTIMIZE TABLE of a view (not a base table) with an Error row and
    # no exception; the task's size lookup never sends it one, so ask the server directly.
    view = f"{fragmented}_v"
    execute(mysql_dsn, f"CREATE VIEW `{view}` AS SELECT id FROM `{fragmented}`")
    connection = connect(mysql_dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"OPTIMIZE TABLE `test`.`{view}`")
            rows = [tuple(row) for row in cursor.fetchall()]
            cursor.execute(f"OPTIMIZE TABLE `test`.`{fragmented}`")
            fine = [tuple(row) for row in cursor.fetchall()]
    finally:
        connection.close()
        execute(mysql_dsn, f"DROP VIEW IF EXISTS `{view}`")
    errors, _ = read_result_rows(rows)
    assert errors == [f"'test.{view}' is not of type 'BASE TABLE'"]
    assert read_result_rows(fine)[0] == []


def test_bad_names_are_refused_at_load_with_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "upkeep.yaml"
    path.write_text(
        """\
targets:
  db: {kind: mysql, dsn: "mysql://root@127.0.0.1:3306/test"}
runbooks:
  monthly:
    steps:
      - task: mysql.optimize
        target: db
        with:
          tables: ["orders`; DROP TABLE x", a.b.c]
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    found = [str(issue) for issue in caught.value.issues]
    assert any(
        line.startswith(f"{path}:9:")
        and "runbooks.monthly.steps[0].with.tables" in line
        and "plain name" in line
        for line in found
    ), found


async def test_a_table_locked_elsewhere_is_given_up_within_lock_timeout(
    mysql_dsn: str, fragmented: str, task_context: TaskContext
) -> None:
    holder = connect(mysql_dsn)
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"LOCK TABLES `{fragmented}` WRITE")
        started = time.monotonic()
        # MariaDB reports the lock wait as an error row of OPTIMIZE, not an exception.
        with pytest.raises(
            TaskFailed, match=f"OPTIMIZE TABLE failed for test.{fragmented}: Lock wait timeout"
        ):
            await MysqlOptimize().run(
                target(mysql_dsn), params(tables=[fragmented], lock_timeout="1s"), task_context
            )
        assert time.monotonic() - started < 5
    finally:
        holder.close()
