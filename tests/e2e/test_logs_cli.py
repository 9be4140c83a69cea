"""``upkeep logs analyze|rotate|retain`` as an operator runs them."""

from __future__ import annotations

import json
import os
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


def test_logs_rotate_and_retain_from_the_cli_with_the_runbook_params(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    logs, store = tmp_path / "logs", tmp_path / "second-store"
    logs.mkdir()
    content = b"".join(b"2026-12-01T10:00:00Z INFO request %d served\n" % n for n in range(3000))
    (logs / "app.log").write_bytes(content)
    old = logs / "app.log-20250101-000000.zst"
    old.write_bytes(b"\x28\xb5\x2f\xfd archived long ago")
    os.utime(old, (1735689600, 1735689600))
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
targets:
  app-logs: {{kind: logs, path: {logs}}}
runbooks:
  nightly:
    steps:
      - task: logs.rotate
        target: app-logs
        with: {{compress: gzip, min_size: 1KB}}
      - task: logs.retain
        target: app-logs
        with:
          classes: [{{match: "*", keep: 30d}}]
          archive_to: {store}
"""
    )
    planned = upkeep("logs", "rotate", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "logs.rotate app-logs: would" in planned.stdout and "app.log" in planned.stdout
    assert (logs / "app.log").read_bytes() == content  # the dry run changed nothing

    rotated = upkeep("logs", "rotate", "app-logs", "--json")
    assert rotated.returncode == 0, rotated.stderr
    report = json.loads(rotated.stdout)
    assert report["task"] == "logs.rotate" and report["targets"][0]["status"] == "ok"
    archives = sorted(logs.glob("app.log-2026*.gz"))
    assert len(archives) == 1  # gzip, as the runbook step says

    retain_plan = upkeep("logs", "retain", "--dry-run")
    assert retain_plan.returncode == 0, retain_plan.stderr
    assert f"delete {old}" in retain_plan.stdout and f"copy {archives[0]}" in retain_plan.stdout
    assert old.exists() and not store.exists()

    retained = upkeep("logs", "retain")
    assert retained.returncode == 0, retained.stderr
    assert not old.exists() and archives[0].exists()
    # Copied, proven, deleted here, and its copy past the class's 30 days deleted there too.
    assert sorted(path.name for path in store.iterdir()) == [archives[0].name]

    unknown = upkeep("logs", "rotate", "nope")
    assert unknown.returncode == 2 and "no target named nope; logs targets: " in unknown.stderr
