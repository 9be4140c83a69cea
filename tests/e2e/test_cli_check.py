"""The CLI as a user drives it: init, validate, check (table and JSON), history, exit codes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.conftest import Upkeep

HOST_ONLY = """\
targets:
  box: {kind: host, labels: {env: prod}}
  other: {kind: host, labels: {env: staging}}
checks:
  disk-ok:
    target: box
    probe: disk
    params: {path: /}
    warn: used_percent > 101
  mem-warning:
    target: box
    probe: memory
    warn: used_percent >= 0
    crit: used_percent > 101
  staging-uptime:
    target: other
    probe: uptime
    crit: seconds < 1
"""


def test_init_detects_local_services_and_check_runs_them(
    upkeep: Upkeep, tmp_path: Path, postgres_dsn: str, redis_url: str, mysql_dsn: str
) -> None:
    created = upkeep("init")
    assert created.returncode == 0, created.stderr
    text = (tmp_path / "upkeep.yaml").read_text()
    for expected in ("kind: host", "kind: postgres", "kind: redis", "kind: mysql"):
        assert expected in text
    assert upkeep("init").returncode == 1  # never overwrites without --force
    assert upkeep("validate").returncode == 0
    planned = upkeep("run", "daily-health-check", "--dry-run")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "postgres-ping" in planned.stdout and "nothing changed" in planned.stdout
    checked = upkeep("check", "--json")
    document = json.loads(checked.stdout)
    assert set(document) == {"results", "worst"}
    names = {item["check"] for item in document["results"]}
    assert {"root-disk", "memory", "postgres-ping", "redis-ping", "mysql-ping"} <= names
    for item in document["results"]:
        assert set(item) == {"check", "target", "status", "metrics", "message", "duration_ms", "at"}
        assert item["status"] in ("ok", "warning", "critical", "unknown")
    ping = next(item for item in document["results"] if item["check"] == "postgres-ping")
    assert ping["status"] == "ok" and ping["metrics"]["latency_ms"] > 0
    rank = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
    assert checked.returncode == rank[document["worst"]]
    assert (tmp_path / ".upkeep" / "upkeep.db").exists()


def test_table_exit_codes_and_selection(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(HOST_ONLY)
    table = upkeep("check")
    assert table.returncode == 1, table.stdout + table.stderr
    assert "WARNING" in table.stdout and "mem-warning" in table.stdout
    assert "warn: used_percent >= 0 (used_percent=" in table.stdout
    assert "3 checks: 2 ok, 1 warning - health 67% - worst: warning" in table.stdout

    only_ok = upkeep("check", "disk-ok", "--json")
    assert only_ok.returncode == 0
    assert [item["check"] for item in json.loads(only_ok.stdout)["results"]] == ["disk-ok"]

    staging = upkeep("check", "--label", "env=staging", "--json")
    assert [item["check"] for item in json.loads(staging.stdout)["results"]] == ["staging-uptime"]

    assert upkeep("check", "nope").returncode == 3
    assert "no check named nope" in upkeep("check", "nope").stderr
    assert upkeep("check", "--label", "env").returncode == 3


def test_critical_and_unknown_exit_codes(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        """\
targets:
  box: {kind: host}
  plugin: {kind: command, command: [/bin/sh, -c, "echo 'OK - fine | load=0.5;1;2'"]}
checks:
  crit: {target: box, probe: uptime, crit: seconds > 0}
  missing-metric: {target: plugin, crit: temperature > 50}
"""
    )
    assert upkeep("check", "crit").returncode == 2
    unknown = upkeep("check", "missing-metric", "--json")
    assert unknown.returncode == 3
    (item,) = json.loads(unknown.stdout)["results"]
    assert item["status"] == "unknown" and "temperature" in item["message"]
    both = upkeep("check", "--json")
    assert both.returncode == 2 and json.loads(both.stdout)["worst"] == "critical"


def test_validate_lists_every_error_and_exits_2(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        """\
targets:
  box: {kind: host}
checks:
  a: {target: box, probe: disk, every: 5 minutes}
  b: {target: nowhere}
  c: {target: box, probe: memory, warn: used > 5}
  d: {target: box, probe: memory, colour: red}
"""
    )
    result = upkeep("validate")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 4, result.stderr
    assert "upkeep.yaml:4:40: checks.a.every: '5 minutes' is not a duration" in result.stderr
    assert "upkeep.yaml:5:15: checks.b.target: no target named 'nowhere'" in result.stderr
    assert (
        "upkeep.yaml:6:41: checks.c.warn: unknown metric 'used' for probe host.memory"
        in result.stderr
    )
    assert "upkeep.yaml:7:35: checks.d.colour: unknown key" in result.stderr
    assert "4 error(s); nothing was applied" in result.stderr
    # check refuses to run anything from an invalid config
    assert upkeep("check").returncode == 3
    assert not (tmp_path / ".upkeep").exists()


def test_history_shows_stored_results(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(HOST_ONLY)
    for _ in range(3):
        upkeep("check", "disk-ok")
    listed = upkeep("history", "disk-ok", "--since", "1h", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["results"]
    assert len(rows) == 3 and {row["status"] for row in rows} == {"ok"}
    assert rows[0]["at"] >= rows[1]["at"] >= rows[2]["at"]
    table = upkeep("history", "--since", "1h")
    assert "disk-ok" in table.stdout and "3 result(s) since" in table.stdout
    assert upkeep("history", "ghost").returncode == 2
    assert upkeep("history", "--since", "yesterday").returncode == 2


@pytest.mark.parametrize("via", ["flag", "env"])
def test_config_is_found_by_flag_or_environment(upkeep: Upkeep, tmp_path: Path, via: str) -> None:
    elsewhere = tmp_path / "conf" / "mine.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(HOST_ONLY)
    if via == "flag":
        result = upkeep("check", "disk-ok", "-c", str(elsewhere))
    else:
        result = upkeep("check", "disk-ok", env={"UPKEEP_CONFIG": str(elsewhere)})
    assert result.returncode == 0, result.stderr
    # The SQLite store lives next to the config, not in the working directory.
    assert (elsewhere.parent / ".upkeep" / "upkeep.db").exists()


def test_help_and_version(upkeep: Upkeep) -> None:
    assert "check" in upkeep("--help").stdout
    assert upkeep("--version").stdout.startswith("upkeep ")


def test_store_keeps_every_result(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(HOST_ONLY)
    upkeep("check")
    upkeep("check")
    with sqlite3.connect(tmp_path / ".upkeep" / "upkeep.db") as connection:
        assert connection.execute("select count(*) from check_results").fetchone() == (6,)


BRACKETS = """\
targets:
  plug: {kind: command, command: [/bin/sh, -c, "echo 'CRITICAL - [/dev/sda1] 97% used'; exit 2"]}
  plug2: {kind: command, command: [/bin/sh, -c, "echo 'WARNING - [error] in [bold]x'; exit 1"]}
checks:
  p: {target: plug}
  p2: {target: plug2}
"""


def test_brackets_in_messages_are_shown_as_written_not_read_as_markup(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "upkeep.yaml").write_text(BRACKETS)
    checked = upkeep("check")
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "CRITICAL - [/dev/sda1] 97% used" in checked.stdout
    assert "WARNING - [error] in [bold]x" in checked.stdout
    history = upkeep("history")
    assert history.returncode == 0, history.stderr
    assert "CRITICAL - [/dev/sda1] 97% used" in history.stdout
    assert "WARNING - [error] in [bold]x" in history.stdout

    (tmp_path / "upkeep.yaml").write_text(
        "targets: {box: {kind: host}}\n"
        'checks: {a: {target: box, probe: memory, warn: "used_percent > 5 [/x]"}}\n'
    )
    validated = upkeep("validate")
    assert validated.returncode == 2
    (line,) = [line for line in validated.stderr.splitlines() if line.startswith("error ")]
    assert "checks.a.warn: unexpected character '[' in condition 'used_percent > 5 [/x]'" in line
    assert "1 error(s); nothing was applied." in validated.stderr


def test_unknown_outranks_warning_and_exits_3(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        """\
targets:
  box: {kind: host}
  plugin: {kind: command, command: [/bin/sh, -c, "echo 'UNKNOWN - cannot read sensor | t=5;1;10'; exit 3"]}
checks:
  warn: {target: box, probe: uptime, warn: seconds > 0}
  plug: {target: plugin}
"""
    )
    result = upkeep("check", "--json")
    document = json.loads(result.stdout)
    statuses = {item["check"]: item["status"] for item in document["results"]}
    # The plugin's UNKNOWN stands although its perfdata breach the warn range (5 > 1).
    assert statuses == {"warn": "warning", "plug": "unknown"}
    assert document["worst"] == "unknown"
    assert result.returncode == 3
    assert upkeep("check", "warn").returncode == 1


def test_relative_paths_are_relative_to_the_config_not_the_working_directory(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    config_dir = tmp_path / "etc" / "upkeep"
    (config_dir / "logs").mkdir(parents=True)
    (config_dir / "logs" / "app.log").write_text("2026-11-23T09:00:00Z ERROR boom\n")
    (config_dir / "ca.pem").write_text("a CA bundle; only its existence matters to validate\n")
    plugin = config_dir / "check.sh"
    plugin.write_text("#!/bin/sh\necho 'OK - plugin found | x=1'\n")
    plugin.chmod(0o755)
    (config_dir / "upkeep.yaml").write_text(
        """\
targets:
  app-logs: {kind: logs, path: logs}
  plugin: {kind: command, command: [./check.sh]}
  api: {kind: http, url: "https://127.0.0.1:1/", ca_file: ca.pem}
checks:
  log-size: {target: app-logs, probe: size, crit: files != 1}
  plugin: {target: plugin}
"""
    )
    # The working directory (tmp_path) holds none of logs/, check.sh or ca.pem.
    assert upkeep("validate", "-c", "etc/upkeep/upkeep.yaml").returncode == 0
    result = upkeep("check", "--json", "-c", "etc/upkeep/upkeep.yaml")
    document = json.loads(result.stdout)
    by_name = {item["check"]: item for item in document["results"]}
    assert by_name["log-size"]["status"] == "ok", by_name["log-size"]
    assert by_name["log-size"]["metrics"]["files"] == 1
    assert by_name["plugin"]["status"] == "ok", by_name["plugin"]
    assert by_name["plugin"]["message"] == "OK - plugin found"
    assert result.returncode == 0

    (config_dir / "ca.pem").unlink()
    missing = upkeep("validate", "-c", "etc/upkeep/upkeep.yaml")
    assert missing.returncode == 2
    assert f"targets.api.ca_file: file not found: {config_dir.resolve() / 'ca.pem'}" in (
        missing.stderr.replace("\n", "")
    )


def test_results_are_shown_when_storing_them_fails(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(HOST_ONLY)
    assert upkeep("check", "disk-ok").returncode == 0  # creates the store
    with sqlite3.connect(tmp_path / ".upkeep" / "upkeep.db") as connection:
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON check_results "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"
        )

    only_ok = upkeep("check", "disk-ok")
    assert "disk-ok" in only_ok.stdout and "1 checks: 1 ok" in only_ok.stdout
    assert "results were not stored: disk I/O error (simulated)" in only_ok.stderr
    assert "internal error" not in only_ok.stderr
    assert only_ok.returncode == 3  # lost results are never "ok"

    as_json = upkeep("check", "--json")
    assert json.loads(as_json.stdout)["worst"] == "warning"
    assert as_json.returncode == 3  # nor "warning"

    (tmp_path / "upkeep.yaml").write_text(
        HOST_ONLY + "  always-critical: {target: box, probe: uptime, crit: seconds > 0}\n"
    )
    critical = upkeep("check")
    assert "always-critical" in critical.stdout
    assert critical.returncode == 2  # a critical result keeps its own code
    with sqlite3.connect(tmp_path / ".upkeep" / "upkeep.db") as connection:
        assert connection.execute("select count(*) from check_results").fetchone() == (1,)
