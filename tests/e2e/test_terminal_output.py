"""What a command, plugin or API client prints never reaches the terminal raw.

Each test feeds real output full of terminal attacks through the real CLI: an OSC title
change (``ESC]0;...BEL``), a screen clear (``ESC[2J``), a carriage return that would
overwrite the line with a fake "run succeeded", a C1 CSI (U+009B), a bidi override
(U+202E) and rich markup (``[bold]``). Every one must come out escaped and literal.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Upkeep

ATTACK = (
    r"printf 'CRIT \033]0;pwned\007\033[2J\rrun 1 succeeded \302\233 \342\200\256 [bold]x[/bold]\n'"
)
"""Shell text printing one line of terminal attacks."""
RAW = ("\x1b", "\x07", "\r", "\x9b", "\u202e")
SHOWN = ("\\x1b]0;pwned\\x07\\x1b[2J\\rrun 1 succeeded \\x9b \\u202e [bold]x[/bold]",)


def assert_safe(text: str, *, shown: tuple[str, ...] = SHOWN) -> None:
    """Assert no raw control character is in ``text`` and each ``shown`` form is."""
    leaked = [hex(ord(character)) for character in RAW if character in text]
    assert not leaked, f"raw {leaked} in:\n{text}"
    for form in shown:
        assert form in text, f"{form!r} not in:\n{text}"


def test_upkeep_run_and_runs_show_print_command_output_escaped(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
store: sqlite:///{tmp_path / "upkeep.db"}
runbooks:
  noisy:
    steps:
      - name: "print \\e[2J attacks \\u202e"
        command: [sh, -c, {json.dumps(ATTACK + "; exit 1")}]
""",
        encoding="utf-8",
    )
    ran = upkeep("run", "noisy", "--yes")
    assert ran.returncode == 1, ran.stderr
    assert_safe(ran.stdout)
    # The step's name (config text) and the run's message are escaped too.
    assert "print \\x1b[2J attacks \\u202e" in ran.stdout
    assert "run 1 failed" in ran.stdout

    shown = upkeep("runs", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert_safe(shown.stdout)
    assert "message:   print \\x1b[2J attacks \\u202e: failed" in shown.stdout

    listed = upkeep("runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert_safe(listed.stdout, shown=("print \\x1b[2J attacks \\u202e: failed",))

    as_json = upkeep("runs", "show", "1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert_safe(as_json.stdout, shown=())
    # JSON escapes, it does not change: the stored output is what the command printed.
    output = json.loads(as_json.stdout)["steps"][0]["output"]
    assert output == "CRIT \x1b]0;pwned\x07\x1b[2J\rrun 1 succeeded \x9b \u202e [bold]x[/bold]"


def test_check_history_alerts_and_incidents_print_plugin_messages_escaped(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
store: sqlite:///{tmp_path / "upkeep.db"}
targets:
  plugin: {{kind: command, command: [sh, -c, {json.dumps(ATTACK + "; exit 2")}]}}
checks:
  noisy: {{target: plugin, probe: run}}
""",
        encoding="utf-8",
    )
    # A plugin's message is its first line, and "\r" ends a line for the plugin parser.
    message = ("CRIT \\x1b]0;pwned\\x07\\x1b[2J",)
    checked = upkeep("check")
    assert checked.returncode == 2, checked.stderr
    assert_safe(checked.stdout, shown=message)
    history = upkeep("history")
    assert history.returncode == 0, history.stderr
    assert_safe(history.stdout, shown=message)
    alerts = upkeep("alerts")
    assert alerts.returncode == 0, alerts.stderr
    assert_safe(alerts.stdout, shown=message)
    incident = upkeep("incidents", "show", "1")
    assert incident.returncode == 0, incident.stderr
    assert_safe(incident.stdout, shown=message)
    assert "message:   CRIT \\x1b]0;pwned" in incident.stdout


def test_a_note_from_a_person_cannot_forge_a_line_or_markup(upkeep: Upkeep, tmp_path: Path) -> None:
    """Notes, comments and authors come from people and API clients: shown on their line."""
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
store: sqlite:///{tmp_path / "upkeep.db"}
targets:
  plugin: {{kind: command, command: [sh, -c, "echo 'CRITICAL - down'; exit 2"]}}
checks:
  down: {{target: plugin, probe: run}}
""",
        encoding="utf-8",
    )
    assert upkeep("check").returncode == 2
    note = "fixed\n  2099-01-01 00:00:00  resolved      [red]all clear\x1b[2J"
    assert upkeep("incidents", "note", "1", note, "--author", "eve\r").returncode == 0
    shown = upkeep("incidents", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert_safe(shown.stdout, shown=("eve\\r: fixed\\n  2099-01-01", "[red]all clear\\x1b[2J"))
    assert not any(line.lstrip().startswith("2099-01-01") for line in shown.stdout.splitlines())
