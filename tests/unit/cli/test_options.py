"""Every parsed command-line value goes through a typed parser that says what it expects."""

from __future__ import annotations

import pytest
import typer

from upkeep.cli import options
from upkeep.core import moments


@pytest.mark.parametrize(
    ("parse", "value", "fragment"),
    [
        (options.duration_text, "2x", "is not a duration"),
        (options.since_text, "yesterday", "neither a duration (24h, 7d) nor an ISO time"),
        (options.moment_text, "tomorrow", "expected 'now' or an ISO time"),
        (options.moment_text, "9999-12-31T23:00", "between the years 1970 and 9000"),
        (options.regex_text, "([", "not a regular expression: unterminated character set"),
        (options.pair_text, "foo", "expected key=value"),
        (options.pair_text, "=x", "expected key=value"),
        (options.record_id, "abc", "expected an id"),
        (options.record_id, "0", "ids are whole numbers from 1"),
        (options.record_id, str(2**63), "ids are whole numbers from 1"),
        (options.count, "-5", "from 1 to 1,000,000"),
        (options.host_port, "nope", "expected host:port"),
        (options.host_port, "127.0.0.1:70000", "port 1 to 65535"),
        (options.one_of("a", "b"), "c", "expected one of a, b, not 'c'"),
    ],
)
def test_bad_values_are_refused_saying_what_is_expected(
    parse: object, value: str, fragment: str
) -> None:
    assert callable(parse)
    with pytest.raises(typer.BadParameter) as caught:
        parse(value)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("parse", "value", "expected"),
    [
        (options.duration_text, "1h30m", "1h30m"),
        (options.since_text, "2025-06-01T02:00", "2025-06-01T02:00"),
        (options.moment_text, "now", "now"),
        (options.regex_text, r"timeout \d+", r"timeout \d+"),
        (options.pair_text, "check=db-*", "check=db-*"),
        (options.record_id, "42", 42),
        (options.count, "20", 20),
        (options.host_port, "[::1]:9464", "[::1]:9464"),
    ],
)
def test_good_values_pass(parse: object, value: str, expected: object) -> None:
    assert callable(parse)
    assert parse(value) == expected


def test_the_outbox_statuses_are_the_stores() -> None:
    from upkeep.store.outbox import OUTBOX_STATUSES

    assert tuple(options.OUTBOX_STATUSES) == tuple(OUTBOX_STATUSES)


def test_since_and_start_read_a_time_without_a_zone_in_the_config_timezone() -> None:
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Kathmandu")
    now = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    local = datetime(2030, 1, 1, 0, 0, tzinfo=zone)
    assert moments.since_start("2030-01-01T00:00", zone, now) == local
    assert moments.start_time("2030-01-01T00:00", zone, now) == local
    assert moments.since_start("2030-01-01T00:00Z", zone, now) == datetime(2030, 1, 1, tzinfo=UTC)
    assert moments.since_start("2h", zone, now) == now - timedelta(hours=2)
    assert moments.start_time("now", zone, now) == now


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00", "1969-12-31"]
)
def test_since_and_start_take_the_years_from_1970_to_9000(moment: str) -> None:
    for parser in (options.since_text, options.moment_text):
        with pytest.raises(typer.BadParameter, match="between the years 1970 and 9000"):
            parser(moment)
