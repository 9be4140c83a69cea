"""Report periods: the last complete day, ISO week, month or quarter in the config's
zone, the one before it, and explicit spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from upkeep.reports.model import Period, calendar_periods, span_periods
from upkeep.reports.render import period_title, report_periods

BERLIN = ZoneInfo("Europe/Berlin")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_daily_is_yesterday_in_the_configs_zone() -> None:
    # 23:30 UTC on the 6th is already the 7th in Berlin: yesterday is the 6th.
    now = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    period, previous = calendar_periods("daily", now, BERLIN)
    assert period == Period(local(2026, 12, 6), local(2026, 12, 7))
    assert previous == Period(local(2026, 12, 5), local(2026, 12, 6))


def test_weekly_is_the_previous_iso_week_even_on_a_monday() -> None:
    monday_morning = local(2026, 12, 7, 10, 0)
    period, previous = calendar_periods("weekly", monday_morning, BERLIN)
    assert period == Period(local(2026, 11, 30), local(2026, 12, 7))
    assert previous == Period(local(2026, 11, 23), local(2026, 11, 30))
    sunday = local(2026, 12, 6, 23, 59)
    assert calendar_periods("weekly", sunday, BERLIN)[0] == Period(
        local(2026, 11, 23), local(2026, 11, 30)
    )


def test_monthly_and_quarterly_cross_the_year() -> None:
    now = local(2027, 1, 15, 8, 0)
    assert calendar_periods("monthly", now, BERLIN) == (
        Period(local(2026, 12, 1), local(2027, 1, 1)),
        Period(local(2026, 11, 1), local(2026, 12, 1)),
    )
    assert calendar_periods("quarterly", now, BERLIN) == (
        Period(local(2026, 10, 1), local(2027, 1, 1)),
        Period(local(2026, 7, 1), local(2026, 10, 1)),
    )
    assert calendar_periods("quarterly", local(2026, 6, 30, 23), BERLIN)[0] == Period(
        local(2026, 1, 1), local(2026, 4, 1)
    )


def test_a_day_across_a_daylight_saving_change_is_23_hours() -> None:
    period, _ = calendar_periods("daily", local(2026, 3, 30, 9), BERLIN)
    assert period.length == timedelta(hours=23)


def test_explicit_span_and_the_span_before_it() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    period, previous = span_periods(start, start + timedelta(days=3))
    assert period.length == timedelta(days=3)
    assert previous == Period(start - timedelta(days=3), start)
    now = datetime(2026, 11, 10, tzinfo=UTC)
    assert report_periods("weekly", now, UTC, since=start)[0] == Period(start, now)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: report_periods("yearly", datetime.now(UTC), UTC), "unknown report kind"),
        (lambda: calendar_periods("daily", datetime(2026, 1, 1), UTC), "aware"),  # noqa: DTZ001
        (lambda: span_periods(datetime.now(UTC), datetime.now(UTC) - timedelta(1)), "end after"),
        (
            lambda: report_periods("daily", datetime.now(UTC), UTC, until=datetime.now(UTC)),
            "--until needs --since",
        ),
    ],
)
def test_bad_periods_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_titles_name_the_local_days_covered() -> None:
    week = Period(local(2026, 11, 30), local(2026, 12, 7))
    assert period_title("weekly", week, BERLIN) == "upkeep weekly report, 2026-11-30 to 2026-12-06"
    day = Period(local(2026, 12, 6), local(2026, 12, 7))
    assert period_title("daily", day, BERLIN) == "upkeep daily report, 2026-12-06"
