"""Log line timestamps and the time-window cut-off of the errors probe."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from upkeep.analysis.timestamps import parse_epoch, parse_iso, parse_timestamp
from upkeep.probes.logs import ErrorsParams, LogsTarget, count_recent_matches

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def stamp(line: str, *, now: datetime = NOW, local_tz: tzinfo | None = UTC) -> datetime | None:
    return parse_timestamp(line, now=now, local_tz=local_tz)


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    """Given a date and optional hour, minute, second, microsecond, return it in UTC."""
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


@pytest.fixture
def berlin_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make this process's local time Europe/Berlin, to test naive times without a zone."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- ISO-8601 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2026-11-23T09:00:00Z ERROR boom", utc(2026, 11, 23, 9, 0, 0)),
        ("2026-11-23T09:00:00.250Z x", utc(2026, 11, 23, 9, 0, 0, 250000)),
        ("2026-11-23T09:00:00.123456789Z x", utc(2026, 11, 23, 9, 0, 0, 123456)),
        ("2026-11-23 09:00:00,123 - app - ERROR - x", utc(2026, 11, 23, 9, 0, 0, 123000)),
        ("2026-11-23T10:00:00+01:00 x", utc(2026, 11, 23, 9, 0, 0)),
        ("2026-11-23T10:00:00+0100 x", utc(2026, 11, 23, 9, 0, 0)),
        ("2026-11-23T04:00:00-05 x", utc(2026, 11, 23, 9, 0, 0)),
        ("2026-11-23 09:00:00.5 UTC [42] LOG: x", utc(2026, 11, 23, 9, 0, 0, 500000)),
        ("2026-11-23 10:00:00 +0100 x", utc(2026, 11, 23, 9, 0, 0)),
        ("[2026-11-23 09:00:00] local.ERROR: x", utc(2026, 11, 23, 9, 0, 0)),
        ('level=error time="2026-11-23T09:00:00Z" msg=x', utc(2026, 11, 23, 9, 0, 0)),
        ("<34>1 2026-11-23T09:00:00.003Z host app - - x", utc(2026, 11, 23, 9, 0, 0, 3000)),
    ],
)
def test_iso_8601_variants(line: str, expected: datetime) -> None:
    assert stamp(line) == expected


def test_naive_iso_uses_the_given_zone_with_its_daylight_saving_rules() -> None:
    winter = stamp("2026-01-15 12:00:00 x", local_tz=BERLIN)
    summer = stamp("2026-07-15 12:00:00 x", local_tz=BERLIN)
    assert winter == utc(2026, 1, 15, 11, 0, 0)
    assert summer == utc(2026, 7, 15, 10, 0, 0)


@pytest.mark.usefixtures("berlin_local_time")
def test_naive_iso_defaults_to_the_machines_local_time() -> None:
    assert parse_iso("2026-01-15 12:00:00") == utc(2026, 1, 15, 11, 0, 0)
    assert parse_iso("2026-07-15 12:00:00,5") == utc(2026, 7, 15, 10, 0, 0, 500000)


def test_an_explicit_offset_beats_the_local_zone() -> None:
    assert stamp("2026-07-15T12:00:00Z x", local_tz=BERLIN) == utc(2026, 7, 15, 12, 0, 0)


@pytest.mark.parametrize(
    "line",
    [
        "2026-13-01 09:00:00 month 13",
        "2026-02-30T09:00:00Z no such day",
        "2026-11-23T25:00:00Z no such hour",
        "2026-11-23T09:00:00+25:00 no such offset",
    ],
)
def test_impossible_dates_are_no_timestamp(line: str) -> None:
    assert stamp(line) is None


def test_a_date_deep_inside_the_message_is_not_the_lines_time() -> None:
    line = "    at handler " + "x" * 200 + " 2026-11-23T09:00:00Z"
    assert stamp(line) is None


# --- syslog -------------------------------------------------------------------------------


def test_syslog_takes_the_current_year() -> None:
    line = "Nov 23 09:00:00 web1 app[123]: ERROR boom"
    assert stamp(line) == utc(2026, 11, 23, 9, 0, 0)


def test_syslog_space_padded_day_and_priority() -> None:
    assert stamp("Nov  3 09:00:00 web1 kernel: x") == utc(2026, 11, 3, 9, 0, 0)
    assert stamp("<13>Nov 23 09:00:00 web1 x") == utc(2026, 11, 23, 9, 0, 0)


def test_syslog_date_in_the_future_is_last_year() -> None:
    new_year = utc(2027, 1, 1, 0, 30)
    assert stamp("Dec 31 23:59:00 web1 x", now=new_year) == utc(2026, 12, 31, 23, 59, 0)


def test_syslog_slightly_ahead_is_clock_skew_not_last_year() -> None:
    new_year = utc(2027, 1, 1, 0, 30)
    assert stamp("Jan  1 00:45:00 web1 x", now=new_year) == utc(2027, 1, 1, 0, 45, 0)


def test_syslog_29_february_finds_the_last_leap_year() -> None:
    assert stamp("Feb 29 12:00:00 web1 x", now=utc(2027, 3, 1)) == utc(2024, 2, 29, 12, 0, 0)


def test_syslog_in_local_time() -> None:
    line = "Jul 15 12:00:00 web1 x"
    assert stamp(line, local_tz=BERLIN) == utc(2026, 7, 15, 10, 0, 0)


# --- nginx / Apache -----------------------------------------------------------------------


def test_combined_log_format() -> None:
    line = '127.0.0.1 - alice [23/Nov/2026:10:00:00 +0100] "GET / HTTP/1.1" 500 12 "-" "curl"'
    assert stamp(line) == utc(2026, 11, 23, 9, 0, 0)


def test_combined_log_format_negative_offset() -> None:
    line = '10.0.0.1 - - [23/Nov/2026:04:00:00 -0500] "GET / HTTP/1.1" 200 1'
    assert stamp(line) == utc(2026, 11, 23, 9, 0, 0)


# --- JSON lines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"time": "2026-11-23T09:00:00Z", "level": "error"}', utc(2026, 11, 23, 9)),
        ('{"timestamp": "2026-11-23T10:00:00+01:00"}', utc(2026, 11, 23, 9)),
        ('{"@timestamp": "2026-11-23T09:00:00.000Z"}', utc(2026, 11, 23, 9)),
        ('{"ts": 1795424400}', utc(2026, 11, 23, 9)),
        ('{"ts": 1795424400.5}', utc(2026, 11, 23, 9, 0, 0, 500000)),
        ('{"ts": 1795424400000}', utc(2026, 11, 23, 9)),
        ('{"ts": "1795424400"}', utc(2026, 11, 23, 9)),
        ('  {"level": "error", "time": "2026-11-23 09:00:00"}', utc(2026, 11, 23, 9)),
    ],
)
def test_json_lines(line: str, expected: datetime) -> None:
    assert stamp(line) == expected


def test_json_without_a_time_field_has_no_timestamp() -> None:
    assert stamp('{"msg": "2026-11-23T09:00:00Z is only text here"}') is None


def test_json_time_field_order_prefers_time() -> None:
    line = '{"ts": 0, "time": "2026-11-23T09:00:00Z"}'
    assert stamp(line) == utc(2026, 11, 23, 9)


def test_text_that_only_looks_like_json_falls_back_to_other_formats() -> None:
    assert stamp("{not json} 2026-11-23T09:00:00Z") == utc(2026, 11, 23, 9)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1795424400, utc(2026, 11, 23, 9)),
        (1795424400123, utc(2026, 11, 23, 9, 0, 0, 123000)),
        (1795424400123456, utc(2026, 11, 23, 9, 0, 0, 123456)),
        (1795424400123456789, utc(2026, 11, 23, 9, 0, 0, 123457)),
    ],
)
def test_epoch_units_by_magnitude(value: int, expected: datetime) -> None:
    parsed = parse_epoch(value)
    assert parsed is not None
    assert abs(parsed - expected) < timedelta(microseconds=2)


# --- lines without a timestamp ------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Traceback (most recent call last):",
        '  File "app.py", line 3, in <module>',
        "\tat com.example.Foo.bar(Foo.java:42)",
        "Caused by: java.lang.IllegalStateException: ERROR",
        "",
    ],
)
def test_continuation_lines_have_no_timestamp(line: str) -> None:
    assert stamp(line) is None


# --- the window ---------------------------------------------------------------------------


def count(lines: list[str], *, since: datetime, initial: datetime | None = None) -> int:
    return count_recent_matches(
        lines,
        re.compile("ERROR|FATAL|CRITICAL"),
        since=since,
        now=NOW,
        initial=initial or NOW,
        local_tz=UTC,
    )


def test_lines_older_than_the_window_are_not_counted() -> None:
    lines = [
        "2026-11-23T08:00:00Z ERROR old",
        "2026-11-23T08:59:59Z ERROR just outside",
        "2026-11-23T09:00:00Z ERROR exactly at the start",
        "2026-11-23T09:30:00Z INFO fine",
        "2026-11-23T09:59:00Z FATAL recent",
    ]
    assert count(lines, since=utc(2026, 11, 23, 9)) == 2


def test_continuations_inherit_the_previous_lines_time() -> None:
    lines = [
        "2026-11-23T07:00:00Z ERROR old failure",
        "Traceback (most recent call last):",
        "RuntimeError: CRITICAL old detail",
        "2026-11-23T09:30:00Z ERROR new failure",
        "Traceback (most recent call last):",
        "RuntimeError: CRITICAL new detail",
    ]
    assert count(lines, since=utc(2026, 11, 23, 9)) == 2


def test_lines_before_the_first_timestamp_use_the_initial_time() -> None:
    lines = ["ERROR before any stamp", "2026-11-23T09:30:00Z ERROR stamped"]
    assert count(lines, since=utc(2026, 11, 23, 9), initial=utc(2026, 11, 23, 8)) == 1
    assert count(lines, since=utc(2026, 11, 23, 9), initial=utc(2026, 11, 23, 9, 45)) == 2


def test_lines_from_a_clock_ahead_of_ours_still_count() -> None:
    assert count(["2026-11-23T10:05:00Z ERROR skewed"], since=utc(2026, 11, 23, 9)) == 1


def test_out_of_order_lines_are_judged_one_by_one() -> None:
    lines = [
        "2026-11-23T09:30:00Z ERROR new",
        "2026-11-23T07:30:00Z ERROR old, written late",
        "2026-11-23T09:31:00Z ERROR new again",
    ]
    assert count(lines, since=utc(2026, 11, 23, 9)) == 2


# --- params -------------------------------------------------------------------------------


def test_errors_params_defaults() -> None:
    params = ErrorsParams.model_validate({})
    assert params.pattern == "ERROR|FATAL|CRITICAL"
    assert params.window == timedelta(hours=1)


def test_errors_params_parse_a_duration_window() -> None:
    assert ErrorsParams.model_validate({"window": "15m"}).window == timedelta(minutes=15)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"pattern": "ERROR("}, "not a valid regular expression"),
        ({"pattern": "[z-a]"}, "not a valid regular expression"),
        ({"window": "0s"}, "longer than zero"),
        ({"window": 60}, "no unit"),
        ({"other": 1}, "Extra inputs"),
    ],
)
def test_errors_params_reject_bad_values(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(fragment)):
        ErrorsParams.model_validate(params)


def test_logs_target_rejects_an_absolute_glob() -> None:
    with pytest.raises(ValidationError, match="relative to path"):
        LogsTarget.model_validate({"path": "/var/log", "pattern": "/var/log/*.log"})


def test_fixed_offset_zone_works_as_local_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert stamp("2026-11-23 11:00:00 x", local_tz=plus_two) == utc(2026, 11, 23, 9)


def test_empty_lines_never_match_even_a_pattern_that_matches_nothing() -> None:
    """A rotated log begins with empty lines (the filler standing for the end of the line
    the cut fell in): they are no lines, whatever the pattern."""
    lines = ["", "", "2026-11-23T09:30:00Z INFO fine", ""]
    matched = count_recent_matches(
        lines, re.compile(r"^\s*$|fine"), since=utc(2026, 11, 23, 9), now=NOW, initial=NOW
    )
    assert matched == 1
