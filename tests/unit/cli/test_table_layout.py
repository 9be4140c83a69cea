"""The one table rule (``upkeep.cli.output``) and times shown in the config's zone."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.console import Console

from upkeep.cli.common import local_time, local_times_in
from upkeep.cli.output import (
    TEXT_MIN_WIDTH,
    UNWRAPPED_WIDTH,
    Column,
    cells,
    column_widths,
    console_width,
    make_table,
)

COLUMNS = (
    Column("id", "number"),
    Column("name"),
    Column("figures", "words"),
    Column("why", "text"),
)
ROWS = [
    ("12345", "a-check-with-a-long-name", "used_percent=22.4 free=1 GiB", "x " * 60),
    ("7", "db", "latency_ms=3", "short"),
]


def _render(width: int) -> list[str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None)
    console.print(make_table(COLUMNS, ROWS, width), crop=False)
    return buffer.getvalue().splitlines()


def test_key_columns_are_whole_and_text_takes_what_is_left() -> None:
    widths = column_widths(COLUMNS, [cells(*row) for row in ROWS], 80)
    assert widths[:2] == [5, len("a-check-with-a-long-name")]
    assert sum(widths) + 2 * 3 == 80
    lines = _render(80)
    assert lines[1].split()[:2] == ["12345", "a-check-with-a-long-name"]
    assert all(len(line.rstrip()) <= 80 for line in lines)
    # A figure is never split, only the gap between two figures is a place to wrap.
    assert "used_percent=22.4" in "\n".join(lines)


def test_too_narrow_a_screen_grows_the_table_instead_of_cutting_a_key() -> None:
    widths = column_widths(COLUMNS, [cells(*row) for row in ROWS], 30)
    assert widths[0] == 5 and widths[1] == len("a-check-with-a-long-name")
    assert widths[2] == len("used_percent=22.4")  # down to its longest word
    assert widths[3] == TEXT_MIN_WIDTH
    lines = _render(30)
    assert lines[1].split()[:2] == ["12345", "a-check-with-a-long-name"]
    assert not any("…" in line for line in lines)


def test_a_table_that_fits_is_at_its_natural_width() -> None:
    rows = [("1", "db", "ok=1", "fine")]
    assert column_widths(COLUMNS, [cells(*row) for row in rows], 200) == [2, 4, 7, 4]


def test_a_pipe_is_not_wrapped_unless_columns_says_so() -> None:
    pipe = io.StringIO()
    assert console_width(pipe, {}) == UNWRAPPED_WIDTH
    assert console_width(pipe, {"COLUMNS": ""}) == UNWRAPPED_WIDTH
    assert console_width(pipe, {"COLUMNS": "80"}) is None  # rich reads it


def test_stored_iso_moments_are_shown_in_the_config_zone() -> None:
    zone = ZoneInfo("Europe/Berlin")
    text = "acknowledged until 2026-03-01T08:00:00.123456+00:00: on it; at 2026-07-01T10:00Z"
    assert local_times_in(text, zone) == (
        "acknowledged until 2026-03-01 09:00:00 CET: on it; at 2026-07-01 12:00 CEST"
    )
    assert local_times_in("no time 2026-03-01 and 10:00", zone) == "no time 2026-03-01 and 10:00"
    moment = datetime(2026, 3, 1, 8, 0, 5, tzinfo=UTC)
    assert local_time(moment, zone, seconds=True) == "2026-03-01 09:00:05 CET"
    assert local_time(None, zone) == "-"
