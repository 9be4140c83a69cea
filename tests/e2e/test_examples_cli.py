"""The configs in ``examples/`` through the real CLI, as the examples' README tells a
user to run them: with ``examples/.env.example`` in the environment, each validates, and
each daily runbook dry-runs. Loading them is tested in ``tests/unit/test_examples.py``,
a dry run of every runbook in ``tests/integration/engine/test_examples_dry_run.py``.
Paths under ``/tmp/upkeep-example-*`` are moved into the test's temporary directory for
the dry run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Upkeep
from tests.support.examples import (
    CONFIGS,
    cadence,
    move_example_paths,
    set_example_environment,
)
from upkeep.config.loader import load_config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.parent.name)
def test_example_validates_through_the_cli(
    path: Path, monkeypatch: pytest.MonkeyPatch, upkeep: Upkeep
) -> None:
    set_example_environment(monkeypatch)
    config = load_config(path).config
    result = upkeep("validate", "-c", str(path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = f"{len(config.targets)} targets, {len(config.checks)} checks, "
    assert f"upkeep.yaml: valid - {counts}{len(config.runbooks)} runbooks" in result.stdout


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.parent.name)
def test_example_daily_runbooks_dry_run(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upkeep: Upkeep
) -> None:
    set_example_environment(monkeypatch)
    copy = tmp_path / "upkeep.yaml"
    copy.write_text(move_example_paths(path.read_text(encoding="utf-8"), tmp_path))
    loaded = load_config(copy)
    daily = {
        name: runbook
        for name, runbook in loaded.config.runbooks.items()
        if runbook.schedule is not None and cadence(runbook.schedule) == "daily"
    }
    assert daily
    for name, runbook in daily.items():
        result = upkeep("run", name, "--dry-run", "-c", str(copy), timeout=120)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        planned = f"dry run: {len(runbook.steps)} step(s) planned, nothing changed"
        assert planned in result.stdout, f"{name}: {result.stdout}"
    assert (tmp_path / ".upkeep").is_dir()  # the store lives beside the copied config
