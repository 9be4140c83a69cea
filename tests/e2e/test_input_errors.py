"""Bad input on the command line or in the config ends in a clear message and exit 2,
never ``internal error`` (issue #13): the real CLI, as a user runs it."""

from __future__ import annotations

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
