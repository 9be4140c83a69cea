"""Bad input on the command line or in the config ends in a clear message and exit 2,
never ``internal error`` (issue #13): the real CLI, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Upkeep

CONFIG = """\
store: sqlite:///upkeep.db
targets:
  api: {kind: http, url: "http://127.0.0.1:1/"}
  app: {kind: logs, path: logs}
checks:
  a: {target: api}
"""


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "app.log").write_text("2025-01-01 INFO up\n", encoding="utf-8")
    (tmp_path / "upkeep.yaml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "option", "fragment"),
    [
        (["logs", "analyze", "-p", "([", "logs/app.log"], "'--pattern' / '-p'", "not a regular"),
        (["window", "add", "w", "--start", "tomorrow", "--duration", "1h"], "'--start'", "'now'"),
        (["window", "add", "w", "--start", "now", "--duration", "1x"], "'--duration'", "1x"),
        (["silence", "add", "-m", "check=a", "--for", "2x"], "'--for'", "not a duration"),
        (["silence", "add", "-m", "nothing", "--for", "2h"], "'--match' / '-m'", "key=value"),
        (["history", "--since", "yesterday"], "'--since'", "nor an ISO time"),
        (["runs", "show", "99999999999999999999"], "'ID'", "ids are whole numbers"),
        (["ack", "0"], "'ALERT'", "ids are whole numbers"),
        (["runs", "list", "--limit", "-5"], "'--limit'", "from 1 to"),
        (["alerts", "--all", "--since", "5q"], "'--since'", "not a duration"),
        (["drill", "db", "--rto", "soon"], "'--rto'", "not a duration"),
        (["serve", "--listen", "nope"], "'--listen'", "host:port"),
    ],
)
def test_a_bad_option_names_itself_and_exits_2(
    upkeep: Upkeep, configured: Path, args: list[str], option: str, fragment: str
) -> None:
    finished = upkeep(*args)
    assert finished.returncode == 2, (finished.stdout, finished.stderr)
    assert f"Invalid value for {option}" in finished.stderr and fragment in finished.stderr
    assert "internal error" not in finished.stderr and "isoformat" not in finished.stderr
    assert not (configured / "upkeep.db").exists()  # refused before anything was opened


def test_logs_rotate_on_another_kind_of_target_says_what_it_is(
    upkeep: Upkeep, configured: Path
) -> None:
    finished = upkeep("logs", "rotate", "api", "--dry-run")
    assert finished.returncode == 2
    assert "api is a target of kind http, not logs; logs targets: app" in finished.stderr


def test_validate_lists_the_issues_repros_in_one_run(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        'targets:\n  api: {kind: http, url: "http://127.0.0.1:1/"}\n'
        "checks:\n  a:\n    target: apii\n    warn: response_time_ms >> 500\n"
        "    crit: status_code != 200 or\n"
        "  b: {target: api, crit: \"status_code != '200'\", every: 0s}\n"
        "runbooks:\n  r:\n    steps:\n"
        '      - command: "echo a string"\n'
        "      - {task: service.restart, with: {start: [/bin/true], stop: [/bin/true], "
        "verify: nocheck}}\n",
        encoding="utf-8",
    )
    finished = upkeep("validate")
    assert finished.returncode == 2
    for fragment in (
        "upkeep.yaml:5:13: checks.a.target: no target named 'apii'",
        "upkeep.yaml:6:29: checks.a.warn: unexpected '>'",
        "upkeep.yaml:7:30: checks.a.crit: unexpected end of condition",
        "checks.b.crit: in \"status_code != '200'\": status_code is a number",
        "checks.b.every: every must be longer than 0s",
        "runbooks.r.steps[0].command: expected a list, got a text; write command: "
        "[echo, a, string]",
        "runbooks.r.steps[1].with.verify: no check named 'nocheck'",
        "7 error(s); nothing was applied.",
    ):
        assert fragment in finished.stderr, finished.stderr
    assert "Input should" not in finished.stderr


# Every command reading a time from --since or --start, and the years it takes.
TIME_OPTIONS = [
    ["history", "--since"],
    ["runs", "list", "--since"],
    ["incidents", "--since"],
    ["stats", "--since"],
    ["window", "add", "w", "--duration", "1h", "--start"],
    ["silence", "add", "-m", "check=a", "--for", "1h", "--start"],
]


@pytest.mark.parametrize("command", TIME_OPTIONS, ids=lambda command: " ".join(command[:2]))
@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00+05:00", "0001-01-01", "9999-12-31T23:59-05:00", "1969-12-31T23:59"],
)
def test_a_time_outside_the_calendar_upkeep_keeps_is_refused_by_every_command(
    upkeep: Upkeep, configured: Path, command: list[str], moment: str
) -> None:
    finished = upkeep(*command, moment)
    assert finished.returncode == 2, (finished.stdout, finished.stderr)
    assert f"Invalid value for '{command[-1]}'" in finished.stderr
    assert "between the years 1970 and 9000" in finished.stderr
    assert "internal error" not in finished.stderr
    assert not (configured / "upkeep.db").exists()  # refused before anything was opened


@pytest.mark.parametrize("command", TIME_OPTIONS, ids=lambda command: " ".join(command[:2]))
@pytest.mark.parametrize("moment", ["1970-01-01T00:00+14:00", "9000-12-31T23:59-12:00"])
def test_the_first_and_last_times_upkeep_keeps_are_taken_by_every_command(
    upkeep: Upkeep, configured: Path, command: list[str], moment: str
) -> None:
    finished = upkeep(*command, moment)
    assert "internal error" not in finished.stderr, finished.stderr
    if command[0] == "stats" and moment.startswith("9000"):
        assert finished.returncode == 2 and "--since must be in the past" in finished.stderr
    else:
        assert finished.returncode == 0, (finished.stdout, finished.stderr)


def test_a_time_naming_no_zone_is_read_in_the_config_timezone_by_every_command(
    upkeep: Upkeep, configured: Path
) -> None:
    """One reading of a time without a zone: the config's timezone, for --since as for
    --start (history read it as UTC). At +14:00 the wall time 10 hours ahead of UTC is
    four hours ago."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    config = configured / "upkeep.yaml"
    config.write_text("timezone: Pacific/Kiritimati\n" + CONFIG, encoding="utf-8")
    zone = ZoneInfo("Pacific/Kiritimati")
    now = datetime.now(UTC)
    wall = (now.astimezone(zone) - timedelta(hours=4)).replace(tzinfo=None, second=0, microsecond=0)
    written = wall.isoformat(timespec="minutes")
    finished = upkeep("stats", "--since", written, "--json")
    # Read as UTC it would lie 10 hours ahead: "--since must be in the past".
    assert finished.returncode == 0, finished.stderr
    finished = upkeep("window", "add", "w", "--start", written, "--duration", "5h")
    assert finished.returncode == 0, finished.stderr
    finished = upkeep("window", "list", "--json")
    (window,) = json.loads(finished.stdout)
    until = wall.replace(tzinfo=zone) + timedelta(hours=5)
    assert window["open_now"] is True
    assert datetime.fromisoformat(window["until"]) == until, window
