"""Output a person can read, at any width and in a pipe (issue #13).

Every table keeps its key columns (ids, names, dates, statuses) whole at 80 and 120
columns and in a pipe; a pipe is never wrapped at 80; sizes, durations and times have one
form each; help texts have one metavar vocabulary and whole summaries; and the commands
say what they did (a silence's reach, an outbox row's alert, skipped steps, quoting).
"""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.conftest import Upkeep

WIDTHS = {"80": {"COLUMNS": "80"}, "120": {"COLUMNS": "120"}, "pipe": {"COLUMNS": ""}}
"""A narrow terminal, a wide one, and a pipe (no $COLUMNS, stdout not a terminal)."""
LONG_CHECK = "plugin-down-with-a-rather-long-descriptive-name"
LONG_RUNBOOK = "nightly-maintenance-of-the-primary-database-cluster"
MESSAGE = "CRITICAL - the volume under /var/lib/postgresql is almost full and keeps growing fast"

CONFIG = f"""\
timezone: Asia/Kolkata
targets:
  host: {{kind: host}}
  plugin: {{kind: command, command: [sh, -c, "echo '{MESSAGE}'; exit 2"]}}
checks:
  {LONG_CHECK}: {{target: plugin, probe: run}}
  root-disk: {{target: host, probe: disk, params: {{path: /}}, warn: used_percent > 100}}
runbooks:
  {LONG_RUNBOOK}:
    steps:
      - name: greet with quotes
        command: [sh, -c, "echo 'hello world' && echo \\"two words\\" > /dev/null"]
      - name: fail here and explain at length why nothing after this point may run
        command: [sh, -c, "exit 3"]
      - name: never reached
        command: [echo, never]
"""


@pytest.fixture
def configured(upkeep: Upkeep, tmp_path: Path) -> Upkeep:
    (tmp_path / "upkeep.yaml").write_text(CONFIG, encoding="utf-8")
    assert upkeep("validate").returncode == 0
    return upkeep


def _lines_with(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_check_history_and_runs_keep_names_and_ids_whole(configured: Upkeep, width: str) -> None:
    env = WIDTHS[width]
    checked = configured("check", env=env)
    assert checked.returncode == 2, checked.stderr
    assert "…" not in checked.stdout
    assert _lines_with(checked.stdout, LONG_CHECK), checked.stdout
    ran = configured("run", LONG_RUNBOOK, "--yes", env=env)
    assert ran.returncode == 1, ran.stderr
    listed = configured("runs", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout
    # The id `upkeep approve RUN` needs and the runbook's name are whole on one line.
    row = _lines_with(listed.stdout, LONG_RUNBOOK)
    assert row and row[0].split()[0] == "1", listed.stdout
    history = configured("history", env=env)
    assert history.returncode == 0, history.stderr
    stored = json.loads(configured("history", "root-disk", "--json").stdout)["results"][0]
    percent = stored["metrics"]["used_percent"]
    token = f"used_percent={percent:.3g}" if percent < 100 else f"used_percent={percent:.1f}"
    # A figure is never split across lines (it was "used_percent=2" / "2.7").
    assert any(token in line.split() for line in history.stdout.splitlines()), history.stdout
    assert _lines_with(history.stdout, LONG_CHECK), history.stdout
    # Times are in the config's zone, with its name.
    assert "IST" in history.stdout
    if width == "pipe":
        # Nothing wrapped at 80: the whole message stays on its check's line.
        assert any(LONG_CHECK in line and MESSAGE in line for line in checked.stdout.splitlines())
        assert max(len(line) for line in checked.stdout.splitlines()) > 80


def test_a_table_wider_than_the_screen_grows_instead_of_cutting_ids(
    configured: Upkeep,
) -> None:
    """At 40 columns the key columns cannot fit: they stay whole, the line runs long."""
    configured("run", LONG_RUNBOOK, "--yes")
    listed = configured("runs", "list", env={"COLUMNS": "40"})
    row = _lines_with(listed.stdout, LONG_RUNBOOK)
    assert row and row[0].split()[:2] == ["1", LONG_RUNBOOK], listed.stdout


def test_run_shows_skipped_steps_numbers_agree_with_json_and_durations_read_alike(
    configured: Upkeep,
) -> None:
    ran = configured("run", LONG_RUNBOOK, "--yes")
    assert ran.returncode == 1, ran.stderr
    # The step after the failure is shown, numbered as in `runs show` and the JSON.
    assert re.search(r"^\s+3\. not_run\s+never reached$", ran.stdout, re.M), ran.stdout
    assert re.search(r" in (\d+ms|\d+s|\d+m( \d+s)?): ", ran.stdout), ran.stdout
    assert not re.search(r"\d+\.\d+s", ran.stdout), ran.stdout
    shown = configured("runs", "show", "1")
    assert re.search(r"^3\. not_run", shown.stdout, re.M), shown.stdout
    steps = json.loads(configured("runs", "show", "1", "--json").stdout)["steps"]
    assert [(step["number"], step["status"]) for step in steps] == [
        (1, "ok"),
        (2, "failed"),
        (3, "not_run"),
    ]
    assert [step["position"] for step in steps] == [0, 1, 2]  # unchanged for old readers


def test_a_dry_run_shows_commands_with_their_shell_quoting(configured: Upkeep) -> None:
    dry = configured("run", LONG_RUNBOOK, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    output = json.loads(dry.stdout)["steps"][0]["output"]
    quoted = shlex.join(["sh", "-c", "echo 'hello world' && echo \"two words\" > /dev/null"])
    assert output == f"would run {quoted}; its effect cannot be predicted"
    # Read back by a shell, the shown command is the configured argv.
    assert shlex.split(quoted)[2] == "echo 'hello world' && echo \"two words\" > /dev/null"


def test_silence_add_says_what_it_matches_now(configured: Upkeep) -> None:
    assert configured("check").returncode == 2
    added = configured("silence", "add", "-m", "check=plugin-*", "--for", "1h")
    assert added.returncode == 0, added.stderr
    assert f"mutes 1 open alert(s) now: #1 {LONG_CHECK} on plugin (firing)" in added.stdout
    assert f"matches 1 check(s): {LONG_CHECK}" in added.stdout
    nothing = configured("silence", "add", "-m", "target=plugn", "--for", "1h")
    assert nothing.returncode == 0, nothing.stderr
    assert "mutes no open alert now" in nothing.stdout
    assert "matches no configured check" in nothing.stdout


def test_notify_outbox_names_each_rows_alert_and_check(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        CONFIG + 'channels:\n  ops: "json://127.0.0.1:9/hook"\nroutes:\n  - notify: [ops]\n',
        encoding="utf-8",
    )
    upkeep("check")
    listed = upkeep("notify", "outbox", env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0].split()
    assert header[:4] == ["id", "channel", "alert", "check"], listed.stdout
    assert re.search(rf"^\s*\d+\s+ops\s+#1 P3\s+{LONG_CHECK}\s", listed.stdout, re.M), listed.stdout
    rows = json.loads(upkeep("notify", "outbox", "--json").stdout)["rows"]
    assert {row["check"] for row in rows} == {LONG_CHECK}


def test_logs_analyze_shows_requests_5xx_and_p95_per_endpoint(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    endpoint = "/api/v1/users/profile/settings/notifications/preferences"
    lines = [
        f'10.0.0.1 - - [01/Mar/2026:08:0{index // 10}:{index % 10:02d} +0000] "GET {endpoint} '
        f'HTTP/1.1" {500 if index < 5 else 200} 12 "-" "curl" {(index + 1) / 100:.3f}'
        for index in range(50)
    ]
    (tmp_path / "access.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    analyzed = upkeep("logs", "analyze", "access.log", env={"COLUMNS": "80"})
    assert analyzed.returncode == 0, analyzed.stderr
    assert re.search(r"endpoint\s+requests\s+5xx\s+5xx %\s+p50 ms\s+p95 ms", analyzed.stdout)
    # The endpoint is whole at 80 columns; 50 requests, 5 of them 5xx (10%), p95 480 ms.
    assert re.search(
        rf"^{re.escape(endpoint)}\s+50\s+5\s+10\.00\s+260\s+480\s", analyzed.stdout, re.M
    ), analyzed.stdout


def test_backup_list_shows_whole_dates_in_the_config_zone(upkeep: Upkeep, tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    connection.commit()
    connection.close()
    (tmp_path / "upkeep.yaml").write_text(
        "timezone: America/New_York\n"
        "backups:\n  repository: repo\n  sources:\n    app-database-with-a-long-name: {sqlite: app.db}\n",
        encoding="utf-8",
    )
    assert upkeep("backup", "create").returncode == 0
    backup_id = json.loads(upkeep("backup", "list", "--json").stdout)["backups"][0]["id"]
    for env in WIDTHS.values():
        listed = upkeep("backup", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        row = _lines_with(listed.stdout, backup_id)
        assert row, listed.stdout
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d E[SD]T", row[0]), listed.stdout
        assert "app-database-with-a-long-name" in row[0]
        assert "UTC" not in listed.stdout


def test_the_ack_timeline_shows_times_in_the_config_zone(configured: Upkeep) -> None:
    assert configured("check").returncode == 2
    assert configured("ack", "1", "--for", "2h").returncode == 0
    shown = configured("incidents", "show", "1")
    assert shown.returncode == 0, shown.stderr
    acknowledged = _lines_with(shown.stdout, "acknowledged until")
    assert acknowledged, shown.stdout
    assert re.search(r"acknowledged until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d IST", acknowledged[0])
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", shown.stdout), shown.stdout


def _commands(upkeep: Upkeep) -> list[list[str]]:
    top = upkeep("--help").stdout
    names = re.findall(r"^  (\w[\w-]*)\s", top.split("Commands:")[1], re.M)
    found: list[list[str]] = []
    for name in names:
        text = upkeep(name, "--help").stdout
        if "Commands:" in text:
            found += [
                [name, sub]
                for sub in re.findall(r"^  (\w[\w-]*)\s", text.split("Commands:")[1], re.M)
            ]
        else:
            found.append([name])
    return found


def test_help_uses_one_metavar_vocabulary_and_whole_summaries(upkeep: Upkeep) -> None:
    narrow = {"COLUMNS": "80"}
    for group in (
        [],
        *(
            [name]
            for name in ("runs", "window", "silence", "logs", "backup", "incidents", "notify")
        ),
    ):
        text = upkeep(*group, "--help", env=narrow).stdout
        assert "..." not in text.split("Commands:")[1], text
    commands = _commands(upkeep)
    assert len(commands) > 30
    for command in commands:
        text = upkeep(*command, "--help", env=narrow).stdout
        options = text.split("Options:")[1]
        # typer's own metavars read <str>, <list[str]>, <path>, <int>.
        assert "<" not in options, (command, text)
        for metavar in re.findall(r"^\s+(?:-\w, )?--[\w-]+ ([^\s/]+)", options, re.M):
            assert re.fullmatch(r"[A-Z][A-Z=:|]*", metavar), (command, metavar)
