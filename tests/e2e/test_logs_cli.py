"""``upkeep logs analyze`` as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Upkeep
from tests.unit.analysis.test_logs import _access


def test_logs_analyze_prints_a_table_a_chart_and_json(upkeep: Upkeep, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    _access(logs / "access.log")
    (tmp_path / "upkeep.yaml").write_text(
        "targets:\n  web-logs: {kind: logs, path: logs, pattern: '*.log'}\n"
    )
    shown = upkeep("logs", "analyze", "--target", "web-logs")
    assert shown.returncode == 0, shown.stderr
    assert "/api/users/:id" in shown.stdout and "10.00" in shown.stdout
    assert "requests per 5 min" in shown.stdout
    answer = upkeep("logs", "analyze", "logs/access.log", "--json", "-p", "curl")
    assert answer.returncode == 0, answer.stderr
    report = json.loads(answer.stdout)
    assert report["requests"] == 150 and report["patterns"] == {"curl": 100}
    assert upkeep("logs", "analyze", "nope.log").returncode == 2
    assert upkeep("logs", "analyze", "--target", "missing").returncode == 2
