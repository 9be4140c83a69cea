"""The backup tasks after their work: the source's checks run through the runbook, with one
error policy. A store that takes neither their results nor the backup's catalog row is
logged and told in the step's output; the backup's own outcome stands either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import load_text
from upkeep.config.loader import LoadedConfig
from upkeep.engine.pipeline import Pipeline
from upkeep.engine.runbooks import RunbookExecutor
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.store.repository import Repository
from upkeep.store.runs import RunRecord, new_instance_id
from upkeep.store.store import Store

CONFIG = """\
targets:
  app-backups: {kind: backup, source: app}
checks:
  app-fresh: {target: app-backups, every: 1h, crit: "age_s > 1d or not last_attempt_ok"}
backups:
  repository: repo
  sources:
    app: {sqlite: data/app.db}
runbooks:
  nightly:
    steps:
      - task: backup.create
        with: {source: app}
"""
FULL = "database or disk is full"


@pytest.fixture
def failing_store(tmp_path: Path) -> Iterator[Store]:
    """A store that opens and records runs, but refuses results and catalog rows as a full
    disk would."""
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    with store.engine.begin() as connection:
        for table in ("check_results", "backups"):
            connection.exec_driver_sql(
                f"CREATE TRIGGER full_{table} BEFORE INSERT ON {table} "
                f"BEGIN SELECT RAISE(FAIL, '{FULL}'); END"
            )
    yield store
    store.close()


async def _run(loaded: LoadedConfig, store: Store, http_client: HttpClient) -> RunRecord:
    """Run the ``nightly`` runbook as the daemon and ``upkeep run`` do: recording through
    the pipeline's alert manager."""
    pipeline = Pipeline(loaded, store)
    try:
        executor = RunbookExecutor(
            loaded,
            store,
            http=http_client,
            checks=CheckRunner(redactor=loaded.redactor, http=http_client),
            owner=new_instance_id(),
            alerts=pipeline.manager,
        )
        record = await executor.execute("nightly", trigger="cli")
    finally:
        pipeline.close()
    assert record is not None
    return record


async def test_a_good_backup_stays_good_on_a_store_that_takes_nothing(
    tmp_path: Path,
    failing_store: Store,
    sqlite_database: Path,
    http_client: HttpClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    loaded = load_text(tmp_path, CONFIG)
    with caplog.at_level(logging.WARNING):
        record = await _run(loaded, failing_store, http_client)
    assert record.status == "succeeded", record.message
    (step,) = record.steps
    assert step.status == "ok"
    (backup,) = Repository(tmp_path / "repo").backups("app")
    assert f"backup {backup.id} of app" in step.output
    assert f"the store did not record backup {backup.id}: {FULL}" in step.output
    assert f"check app-fresh of app not recorded: {FULL}" in step.output
    logged = [record.getMessage() for record in caplog.records]
    assert f"check app-fresh of app not recorded: {FULL}" in logged
    assert f"the store did not record backup {backup.id}: {FULL}" in logged


async def test_a_failed_backup_stays_failed_and_says_what_its_checks_could_not_record(
    tmp_path: Path, failing_store: Store, http_client: HttpClient
) -> None:
    loaded = load_text(tmp_path, CONFIG)  # data/app.db does not exist
    record = await _run(loaded, failing_store, http_client)
    assert record.status == "failed"
    (step,) = record.steps
    assert step.status == "failed"
    assert "backup of app failed: no SQLite database" in step.output
    assert f"check app-fresh of app not recorded: {FULL}" in step.output
    assert Repository(tmp_path / "repo").backups("app") == []


async def test_the_source_checks_run_and_report_their_status_on_a_store_that_works(
    tmp_path: Path, sqlite_database: Path, http_client: HttpClient
) -> None:
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    try:
        record = await _run(load_text(tmp_path, CONFIG), store, http_client)
        (stored,) = store.history("app-fresh")
    finally:
        store.close()
    assert record.status == "succeeded"
    assert "checked app-fresh (ok)" in record.steps[0].output
    assert "not recorded" not in record.steps[0].output
    assert stored.status.label == "ok"
