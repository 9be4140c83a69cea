"""``upkeep check``: a group check judges the results of the same run, not the previous."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from upkeep.cli.check import run_check

CONFIG = """targets:
  box: {kind: host, labels: {tier: core}}
  platform: {kind: group, match_labels: {tier: core}}
checks:
  up-a: {target: box, probe: uptime}
  up-b: {target: box, probe: uptime}
  platform-health: {target: platform, crit: healthy_percent < 90}
store: sqlite:///store.db
"""


def test_a_first_check_run_scores_the_group_on_this_runs_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "upkeep.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    code = run_check(path, [], [], json_output=True, store=True)
    printed = json.loads(capsys.readouterr().out)
    group = next(r for r in printed["results"] if r["check"] == "platform-health")
    assert group["metrics"]["healthy_percent"] == 100.0
    assert group["metrics"]["total"] == 2
    assert code == 0
