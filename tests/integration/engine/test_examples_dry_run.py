"""Every runbook of every example dry-runs through the real engine.

The examples' ``/tmp/upkeep-example-*`` paths are moved into the test's directory (and
created there, as the team's systems would have them); the environment is the documented
``examples/.env.example``. A dry run plans every step and changes nothing: each run
succeeds with every step ``planned``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.examples import CONFIGS, example_environment, move_example_paths
from upkeep.config.loader import load_config
from upkeep.engine.runbooks import RunbookExecutor
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.reports.service import ReportService
from upkeep.store.runs import RunStatus, StepStatus, new_instance_id


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.parent.name)
async def test_every_runbook_of_the_example_dry_runs(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "upkeep.yaml"
    copy.write_text(move_example_paths(path.read_text(encoding="utf-8"), tmp_path))
    loaded = load_config(copy, environ=example_environment())
    store = loaded.config.store.open(tmp_path)
    http = HttpClient()
    try:
        executor = RunbookExecutor(
            loaded,
            store,
            http=http,
            checks=CheckRunner(redactor=loaded.redactor, http=http),
            owner=new_instance_id(),
            reports=ReportService(loaded, store),
        )
        for name, runbook in loaded.config.runbooks.items():
            record = await executor.execute(name, trigger="cli", dry_run=True)
            assert record is not None, name
            steps = [(step.name, step.status, step.output) for step in record.steps]
            assert record.status == RunStatus.SUCCEEDED, f"{name}: {record.message} {steps}"
            # Rollback and finally steps are planned too.
            assert len(record.steps) == len(runbook.flow()), name
            assert all(step.status == StepStatus.PLANNED for step in record.steps), steps
    finally:
        await http.close()
        store.close()
    assert not list(tmp_path.glob("tmp/upkeep-example-*/**/*.zst")), "a dry run wrote"
