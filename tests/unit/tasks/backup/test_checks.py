"""``check_source``: which checks belong to a source, and the one error policy (a check
that cannot run or be recorded is a problem told, never an exception, and the rest run)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import load_text
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.tasks.backup.checks import SourceChecks, check_source, source_checks

CONFIG = """\
targets:
  app-backups: {kind: backup, source: app}
  etc-backups: {kind: backup, source: etc}
  box: {kind: host}
checks:
  app-fresh: {target: app-backups}
  disk: {target: box, probe: disk}
  etc-fresh: {target: etc-backups}
  app-drill: {target: app-backups, probe: drill}
backups:
  sources:
    app: {sqlite: app.db}
    etc: {paths: [etc]}
"""


def test_a_source_has_the_checks_on_its_backup_targets_in_config_order(tmp_path: Path) -> None:
    config = load_text(tmp_path, CONFIG).config
    assert source_checks(config, "app") == ["app-fresh", "app-drill"]
    assert source_checks(config, "etc") == ["etc-fresh"]
    assert source_checks(config, "box") == []


async def test_a_check_that_cannot_be_recorded_is_told_and_the_others_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_text(tmp_path, CONFIG).config
    ran: list[str] = []

    async def run_check(name: str) -> CheckResult:
        ran.append(name)
        if name == "app-fresh":
            raise OSError("database or disk is full\nmore detail")
        return CheckResult(
            name, "app-backups", "drill", Status.CRITICAL, {}, "", 1.0, datetime.now(UTC)
        )

    found = await check_source(config, "app", run_check)
    assert ran == ["app-fresh", "app-drill"]
    assert found.statuses == {"app-drill": "critical"}
    assert found.problems == ["check app-fresh of app not recorded: database or disk is full"]
    assert found.summary() == (
        "checked app-drill (critical); check app-fresh of app not recorded: database or disk is full"
    )
    assert found.problems[0] in caplog.text


def test_a_source_without_checks_adds_nothing_to_the_output() -> None:
    assert SourceChecks({}, []).summary() == ""
