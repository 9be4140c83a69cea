"""The one way upkeep writes sizes, spans of time and errors for people."""

from __future__ import annotations

from datetime import timedelta

import pytest

from upkeep.core.text import format_bytes, human_duration, one_line

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (64 * KIB, "64 KiB"),
        (MIB - 1, "1 MiB"),  # 1023.999 KiB would round to "1024 KiB": the next unit instead
        (8 * MIB, "8 MiB"),
        (int(3.2 * GIB), "3.2 GiB"),
        (5 * GIB, "5 GiB"),
        (3 * TIB, "3 TiB"),
        (2048 * TIB, "2048 TiB"),  # past the largest unit the number grows
        (2**80, "1099511627776 TiB"),
        (-1536, "-1.5 KiB"),
        (-1, "-1 B"),
        (512.4, "512 B"),
        (1023.6, "1 KiB"),
        (-0.2, "0 B"),
    ],
)
def test_sizes_are_in_binary_units_with_at_most_one_decimal(count: float, text: str) -> None:
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0004, "0s"),
        (0.0005, "1ms"),
        (0.35, "350ms"),
        (0.9994, "999ms"),
        (0.9996, "1s"),
        (1.0, "1s"),
        (1.5, "2s"),
        (59.4, "59s"),
        (59.6, "1m"),
        (60.0, "1m"),
        (754.0, "12m 34s"),
        (3599.0, "59m 59s"),
        (3600.0, "1h"),
        (3 * 3600 + 125, "3h 2m"),
        (12000.0, "3h 20m"),
        (86399.0, "23h 59m"),
        (86400.0, "1d"),
        (86400 + 300, "1d"),  # beside a day, minutes do not matter
        (2 * 86400 + 4 * 3600 + 59.0, "2d 4h"),
        (2 * 86400 + 5 * 3600 + 1799, "2d 5h"),
        (30 * 86400 + 2, "30d"),
        (400 * 86400 + 3 * 3600, "400d 3h"),
        (-5.0, "0s"),
        (-0.0004, "0s"),
    ],
)
def test_spans_read_in_their_two_largest_units(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
    assert human_duration(timedelta(seconds=seconds)) == text


def test_a_span_of_a_hundred_years_is_days() -> None:
    assert human_duration(timedelta(days=36500, hours=23, minutes=59)) == "36500d 23h"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("plain", "plain"),
        ("  padded\t", "padded"),
        (
            'FATAL:  role "x" does not exist\n  HINT:  create it\n',
            'FATAL: role "x" does not exist HINT: create it',
        ),
        ("a\r\nb\x0bc\x0cd", "a b c d"),
    ],
)
def test_one_line_folds_every_run_of_white_space(text: str, expected: str) -> None:
    assert one_line(text) == expected


def test_an_exception_reads_as_its_text_or_else_its_class() -> None:
    assert one_line(ConnectionError("refused\n  by host")) == "refused by host"
    assert one_line(TimeoutError()) == "TimeoutError"
    assert one_line(OSError("  \n ")) == "OSError"


def test_a_limit_cuts_the_folded_text_and_marks_the_cut() -> None:
    assert one_line("abcdef", 6) == "abcdef"
    assert one_line("abcdefg", 6) == "abcde…"
    assert one_line("a\n\n\nb", 3) == "a b"  # measured after folding
    assert one_line("abc", 1) == "…"
    cut = one_line("x" * 5000, 1000)
    assert len(cut) == 1000 and cut.endswith("x…")


@pytest.mark.parametrize("limit", [0, -3])
def test_a_limit_must_leave_room(limit: int) -> None:
    with pytest.raises(ValueError, match="leaves no room"):
        one_line("text", limit)
