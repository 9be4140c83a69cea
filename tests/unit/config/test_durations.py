from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from upkeep.core.durations import MAX_DURATION, Duration, format_duration, parse_duration


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


@pytest.mark.parametrize(
    "text", ["100y1ms", "99999999999999y", "9" * 400 + "s", "5300w", "1s" * 10 + "100y"]
)
def test_a_duration_past_100_years_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="longer than 100y, the longest duration upkeep accepts"):
        parse_duration(text)


def test_100_years_is_the_longest_duration() -> None:
    assert parse_duration("100y") == MAX_DURATION == timedelta(days=36500)
    # Every time computed from it stays inside the calendar.
    assert (datetime.now(UTC) + MAX_DURATION).year < 9999


def test_a_duration_field_holds_a_timedelta_to_the_same_bounds() -> None:
    class Model(BaseModel):
        length: Duration

    assert Model(length=MAX_DURATION).length == MAX_DURATION
    with pytest.raises(ValidationError, match="longer than 100y"):
        Model(length=MAX_DURATION + timedelta(seconds=1))
    with pytest.raises(ValidationError, match="cannot be negative"):
        Model(length=timedelta(seconds=-1))
