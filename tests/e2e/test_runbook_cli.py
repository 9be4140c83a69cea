"""Runbooks from the CLI as a user drives them: run, dry run, windows, runs, approve, schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Upkeep

PY = sys.executable
DAY_S = 86400.0


def py(code: str) -> str:
    """Given Python code, return a YAML flow list running it with this interpreter."""
    escaped = code.replace("\\", "\\\\").replace('"', '\\"')
    return f'["{PY}", "-c", "{escaped}"]'


def config(tmp_path: Path) -> str:
    logs = tmp_path / "logs"
    return f"""\
timezone: Europe/Berlin
targets:
  box: {{kind: host, labels: {{env: prod}}}}
  app-logs: {{kind: logs, path: {logs}, pattern: "*.log"}}
checks:
  uptime: {{target: box, probe: uptime, crit: seconds < 0}}
runbooks:
  daily:
    description: Morning health check
    schedule: "0 9 * * *"
    steps:
      - checks: {{labels: {{env: prod}}}}
      - name: greet
        command: {py("print('hello from the runbook')")}
      - task: files.cleanup
        target: app-logs
        with: {{older_than: 1d}}
      - manual: Review overnight alerts
  guarded:
    window: freeze-exception
    steps:
      - command: {py("print('inside the window')")}
  gated:
    steps:
      - approval: Go ahead with the restart?
        timeout: 60s
      - command: {py("print('approved and done')")}
windows:
  freeze-exception:
    start: 2099-01-01T00:00:00
    duration: 1h
  sunday:
    schedule: "0 2 * * SUN"
    duration: 2h
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    old = time.time() - 10 * DAY_S
    for name in ("old-1.log", "old-2.log"):
        (logs / name).write_text("x\n")
        os.utime(logs / name, (old, old))
    (logs / "fresh.log").write_text("y\n")
    (tmp_path / "upkeep.yaml").write_text(config(tmp_path))
    return tmp_path


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def runs_json(upkeep: Upkeep, *args: str) -> list[dict[str, object]]:
    result = upkeep("runs", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    runs: list[dict[str, object]] = json.loads(result.stdout)
    return runs


# --- upkeep run -----------------------------------------------------------------------------


def test_run_with_yes_lists_steps_and_records_the_run(upkeep: Upkeep, project: Path) -> None:
    result = upkeep("run", "daily", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "run 1 of runbook daily" in out
    for expected in ("1. ok", "2. ok", "greet", "hello from the runbook", "3. ok", "4. todo"):
        assert expected in out, out
    assert "Review overnight alerts" in out
    assert "run 1 succeeded" in out
    assert listing(project / "logs") == ["fresh.log"]

    (run,) = runs_json(upkeep)
    assert run["runbook"] == "daily" and run["status"] == "succeeded"
    assert run["trigger"] == "cli" and run["dry_run"] is False

    shown = upkeep("runs", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert "run 1 of runbook daily: succeeded" in shown.stdout
    assert "trigger:   cli by" in shown.stdout
    assert "hello from the runbook" in shown.stdout
    assert "todo" in shown.stdout

    document = json.loads(upkeep("runs", "show", "1", "--json").stdout)
    assert set(document) == {
        "id",
        "runbook",
        "trigger",
        "triggered_by",
        "alert_id",
        "status",
        "dry_run",
        "scheduled_for",
        "started_at",
        "finished_at",
        "duration_s",
        "message",
        "steps",
    }
    assert document["id"] == 1 and document["scheduled_for"] is None
    assert document["alert_id"] is None  # a run no alert started
    assert [step["status"] for step in document["steps"]] == ["ok", "ok", "ok", "todo"]
    assert [step["kind"] for step in document["steps"]] == ["checks", "command", "task", "manual"]
    for step in document["steps"]:
        assert set(step) == {
            "position",
            "number",
            "name",
            "kind",
            "phase",
            "status",
            "started_at",
            "finished_at",
            "attempts",
            "output",
            "detail",
            "decision",
            "decided_by",
            "decided_at",
        }
    assert upkeep("runs", "show", "999").returncode == 2

    history = upkeep("history", "--runs")
    assert history.returncode == 0, history.stderr
    assert "daily" in history.stdout and "succeeded" in history.stdout
    assert "1 run(s) since" in history.stdout
    table = upkeep("runs", "list")
    assert table.returncode == 0 and "daily" in table.stdout


def test_run_without_yes_off_a_terminal_exits_2(upkeep: Upkeep, project: Path) -> None:
    result = upkeep("run", "daily")
    assert result.returncode == 2
    assert "not a terminal" in result.stderr and "--yes" in result.stderr
    assert listing(project / "logs") == ["fresh.log", "old-1.log", "old-2.log"]
    assert runs_json(upkeep) == []


def test_unknown_runbook_exits_2(upkeep: Upkeep, project: Path) -> None:
    result = upkeep("run", "nope", "--yes")
    assert result.returncode == 2
    assert "no runbook named 'nope'" in result.stderr


def test_dry_run_changes_nothing(upkeep: Upkeep, project: Path) -> None:
    before = listing(project / "logs")
    result = upkeep("run", "daily", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert listing(project / "logs") == before
    assert "dry run 1 of runbook daily" in result.stdout
    assert "planned" in result.stdout
    assert "old-1.log" in result.stdout and "fresh.log" not in result.stdout
    assert "cannot be predicted" in result.stdout
    # The command is described, never run: its output line is absent.
    assert "       hello from the runbook\n" not in result.stdout
    (run,) = runs_json(upkeep)
    assert run["dry_run"] is True and run["status"] == "succeeded"


def test_run_json_output(upkeep: Upkeep, project: Path) -> None:
    result = upkeep("run", "daily", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "succeeded" and document["dry_run"] is True
    assert len(document["steps"]) == 4


def test_failing_run_exits_1(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
runbooks:
  broken:
    steps:
      - command: {py("import sys; print('bad'); sys.exit(4)")}
      - manual: never reached
"""
    )
    result = upkeep("run", "broken", "--yes")
    assert result.returncode == 1
    assert "1. failed" in result.stdout and "run 1 failed" in result.stdout
    document = json.loads(upkeep("runs", "show", "1", "--json").stdout)
    assert [step["status"] for step in document["steps"]] == ["failed", "not_run"]
    assert document["steps"][0]["detail"]["exit_code"] == 4


# --- windows -------------------------------------------------------------------------------


def test_windowed_runbook_outside_its_window(upkeep: Upkeep, project: Path) -> None:
    refused = upkeep("run", "guarded", "--yes")
    assert refused.returncode == 1
    assert "window freeze-exception" in refused.stderr
    assert "2099-01-01 00:00 CET" in refused.stderr
    assert "--force" in refused.stderr
    assert runs_json(upkeep) == []

    forced = upkeep("run", "guarded", "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "inside the window" in forced.stdout

    # A dry run is allowed outside the window: it changes nothing.
    assert upkeep("run", "guarded", "--dry-run").returncode == 0


def test_one_off_window_from_the_cli(upkeep: Upkeep, project: Path) -> None:
    added = upkeep("window", "add", "freeze-exception", "--start", "now", "--duration", "1h")
    assert added.returncode == 0, added.stderr
    assert "window 1 freeze-exception (an extra opening of the config window)" in added.stdout

    ran = upkeep("run", "guarded", "--yes")
    assert ran.returncode == 0, ran.stderr
    assert "inside the window" in ran.stdout

    standalone = upkeep(
        "window", "add", "hotfix", "--start", "2099-06-01T10:00", "--duration", "2h"
    )
    assert standalone.returncode == 0, standalone.stderr
    assert "window 2 hotfix: 2099-06-01 10:00 CEST to 2099-06-01 12:00 CEST" in standalone.stdout

    listed = upkeep("window", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    by_source = {(row["name"], row["source"].split(" ")[0]): row for row in rows}
    assert by_source[("freeze-exception", "config")]["open_now"] is True
    assert by_source[("sunday", "config")]["schedule"] == "0 2 * * SUN"
    assert by_source[("hotfix", "one-off")]["open_now"] is False
    assert by_source[("hotfix", "one-off")]["next_opening"].startswith("2099-06-01T")
    ids = sorted(row["id"] for row in rows if row["id"] is not None)
    assert ids == [1, 2]
    # Each window once: the config windows by name, each one-off by its id (a one-off was
    # listed twice, once more under its name without an id).
    identities = [row["id"] or row["name"] for row in rows]
    assert len(identities) == len(set(identities))
    assert len(rows) == 2 + len([row for row in rows if row["source"] == "config"])
    assert not [row for row in rows if row["id"] is None and row["source"] != "config"]
    table = upkeep("window", "list")
    assert table.returncode == 0 and "hotfix" in table.stdout and "open until" in table.stdout
    assert table.stdout.count("hotfix") == 1

    assert upkeep("window", "remove", "1").returncode == 0
    again = upkeep("window", "remove", "1")
    assert again.returncode == 2 and "no one-off window 1" in again.stderr
    assert upkeep("run", "guarded", "--yes").returncode == 1

    bad = upkeep("window", "add", "x", "--start", "yesterday-ish", "--duration", "1h")
    assert bad.returncode == 2
    bad_duration = upkeep("window", "add", "x", "--start", "now", "--duration", "soon")
    assert bad_duration.returncode == 2


# --- approve -------------------------------------------------------------------------------


def test_approve_from_a_second_process(upkeep: Upkeep, project: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
    environment.update({"COLUMNS": "200", "NO_COLOR": "1"})
    running = subprocess.Popen(
        [PY, "-m", "upkeep.cli.main", "run", "gated", "--yes"],
        cwd=project,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        waiting: list[dict[str, object]] = []
        while not waiting:
            assert running.poll() is None, running.communicate()
            assert time.monotonic() < deadline, "the run never waited for approval"
            waiting = [run for run in runs_json(upkeep) if run["status"] == "waiting"]
            time.sleep(0.2)
        run_id = str(waiting[0]["id"])
        approved = upkeep("approve", run_id, "--comment", "go")
        assert approved.returncode == 0, approved.stderr
        assert f"run {run_id} step 1 (Go ahead with the restart?): approved by" in approved.stdout
        out, err = running.communicate(timeout=30)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert running.returncode == 0, out + err
    assert "approved and done" in out
    document = json.loads(upkeep("runs", "show", run_id, "--json").stdout)
    assert document["status"] == "succeeded"
    assert document["steps"][0]["status"] == "approved"
    assert document["steps"][0]["decision"] == "approved"
    assert document["steps"][0]["detail"]["comment"] == "go"
    nothing = upkeep("approve", run_id)
    assert nothing.returncode == 2 and "no step waiting for approval" in nothing.stderr


# --- schedule / runbooks -----------------------------------------------------------------


def test_schedule_and_runbooks_print_next_firings(upkeep: Upkeep, project: Path) -> None:
    listed = upkeep("runbooks", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["runbook"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"daily", "guarded", "gated"}
    assert rows["daily"]["schedule"] == "0 9 * * *"
    assert rows["daily"]["next_local"].endswith(("09:00 CET", "09:00 CEST"))
    assert rows["daily"]["steps"] == ["checks", "command", "task", "manual"]
    assert rows["guarded"]["next"] is None and rows["guarded"]["window"] == "freeze-exception"
    table = upkeep("runbooks")
    assert table.returncode == 0 and "Morning health check" in table.stdout

    shown = upkeep("schedule", "--count", "2", "--json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    firings = document["firings"]
    daily = [f for f in firings if f["name"] == "daily"]
    assert len(daily) == 2 and all(f["local"].endswith(("09:00 CET", "09:00 CEST")) for f in daily)
    sunday = [f for f in firings if f["name"] == "sunday" and f["note"].startswith("until")]
    assert len(sunday) == 2
    freeze = [f for f in firings if f["name"] == "freeze-exception"]
    assert [f["at"] for f in freeze] == ["2099-01-01T00:00:00+01:00"]
    assert [f["at"] for f in firings] == sorted(f["at"] for f in firings)
    assert sum(document["checks"].values()) == 1
    text = upkeep("schedule")
    assert text.returncode == 0 and "daily" in text.stdout and "checks: 1 every" in text.stdout


# --- validate ------------------------------------------------------------------------------


def test_validate_rejects_bad_task_steps(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        """\
targets:
  box: {kind: host}
  app-logs: {kind: logs, path: /tmp, pattern: "*.log"}
runbooks:
  a:
    steps:
      - task: nope.nothing
  b:
    steps:
      - task: files.cleanup
        target: box
        with: {older_than: 1d}
  c:
    steps:
      - task: files.cleanup
        target: app-logs
        with: {older_than: soon, colour: red}
"""
    )
    result = upkeep("validate")
    assert result.returncode == 2
    err = result.stderr
    assert "upkeep.yaml:7:15: runbooks.a.steps[0].task: unknown task 'nope.nothing'" in err, err
    assert (
        "upkeep.yaml:11:17: runbooks.b.steps[0].target: task files.cleanup takes logs, "
        "not a host target" in err
    ), err
    assert "upkeep.yaml:17:28: runbooks.c.steps[0].with.older_than:" in err, err
    assert "upkeep.yaml:17:34: runbooks.c.steps[0].with.colour: unknown key" in err, err
    assert "4 error(s); nothing was applied" in err
    assert upkeep("run", "a", "--yes").returncode == 2
