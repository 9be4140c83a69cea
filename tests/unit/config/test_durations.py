from __future__ import annotations

from datetime import timedelta

import pytest

from upkeep.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("1y", 365 * 86400),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        (" 10s ", 10),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "5 minutes", "m5", "-5s", "5x", "1h-30m"])
def test_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["500ms", "30s", "5m", "2h", "7d", "1h30m", "1d2h3m4s"])
def test_format_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
