"""The terminal-safe output layer: escaping, untrusted text, the console's last defence."""

from __future__ import annotations

import io
import json
import logging

import pytest
from rich.table import Table
from rich.text import Text

from upkeep.cli import common
from upkeep.cli.output import cells, make_console, output_lines, safe_text, untrusted
from upkeep.core.redaction import Redactor


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("fake\rrun succeeded", "fake\\rrun succeeded"),
        ("\x00\x08\x0b\x0c\x1f", "\\x00\\x08\\x0b\\x0c\\x1f"),
        ("del\x7f", "del\\x7f"),
        ("c1 \x80 \x85 \x9b \x9f", "c1 \\x80 \\x85 \\x9b \\x9f"),
        ("bidi \u202a\u202b\u202c\u202d\u202e", "bidi \\u202a\\u202b\\u202c\\u202d\\u202e"),
        ("isolates \u2066\u2067\u2068\u2069", "isolates \\u2066\\u2067\\u2068\\u2069"),
        ("keeps\ttab\nand newline", "keeps\ttab\nand newline"),
        ("plain ümlaut 日本 \u00a0 [bold]", "plain ümlaut 日本 \u00a0 [bold]"),
    ],
)
def test_safe_text_escapes_every_control_character(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


def test_one_line_text_escapes_the_newline_too() -> None:
    assert safe_text("a\nb\tc", one_line=True) == "a\\nb\tc"


def test_output_lines_split_only_on_newline() -> None:
    assert output_lines("a\rb\x85c\u2028d\ne") == ["a\rb\x85c\u2028d", "e"]
    assert output_lines("") == []


def render(*renderables: object) -> str:
    buffer = io.StringIO()
    console = make_console()
    console.file = buffer
    for renderable in renderables:
        console.print(renderable)
    return buffer.getvalue()


def test_the_console_escapes_what_a_renderer_forgot_and_reads_no_markup() -> None:
    forgot = render(
        "plain str \x1b[2J [bold]x[/bold] :smile:",
        Text("a Text \x1b]0;t\x1b\\ \u202e"),
    )
    assert "\x1b" not in forgot and "\u202e" not in forgot
    assert "plain str \\x1b[2J [bold]x[/bold] :smile:" in forgot
    assert "a Text \\x1b]0;t\\x1b\\ \\u202e" in forgot


def test_untrusted_text_and_table_cells_are_escaped_and_keep_styles() -> None:
    table = Table()
    table.add_column("status")
    table.add_column("message")
    table.add_row(*cells(Text("CRIT", style="bold red"), "line one\nline two \x1b[2J [red]"))
    shown = render(table, untrusted("[/dev/sda1] \x9b"))
    assert "line one\\nline two \\x1b[2J [red]" in shown
    assert "[/dev/sda1] \\x9b" in shown
    assert cells(Text("CRIT", style="bold red"))[0].style == "bold red"


def test_json_output_escapes_c1_del_and_bidi(capsys: pytest.CaptureFixture[str]) -> None:
    common.print_json({"message": "\x1b[2J \x9b \x7f \u202e \u2066 ok"})
    out = capsys.readouterr().out
    for raw in ("\x1b", "\x9b", "\x7f", "\u202e", "\u2066"):
        assert raw not in out
    assert json.loads(out) == {"message": "\x1b[2J \x9b \x7f \u202e \u2066 ok"}


def test_log_lines_are_escaped_and_stay_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(common, "_active", Redactor())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        common.setup_logging()
        logging.getLogger("upkeep.test").warning("step said %s", "x\x1b[2J\nERROR forged")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "step said x\\x1b[2J\\nERROR forged" in err
    assert len(err.strip().splitlines()) == 1
