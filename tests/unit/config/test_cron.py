from __future__ import annotations

from dataclasses import replace

import pytest

from upkeep.config.cron import CronFields, parse_cron, validate_cron

EVERY_MINUTE = CronFields(
    minutes=tuple(range(60)),
    hours=tuple(range(24)),
    days=frozenset(range(1, 32)),
    last_day=False,
    last_weekday=False,
    months=frozenset(range(1, 13)),
    weekdays=frozenset(range(7)),
    nth_weekdays=frozenset(),
    last_weekdays=frozenset(),
    minute_star=True,
    hour_star=True,
    day_of_month_star=True,
    day_of_week_star=True,
)


def daily_at(hour: int, minute: int = 0) -> CronFields:
    """The parse of ``minute hour * * *``."""
    return replace(
        EVERY_MINUTE, minutes=(minute,), hours=(hour,), minute_star=False, hour_star=False
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("* * * * *", EVERY_MINUTE),
        ("0 9 * * *", daily_at(9)),
        (
            "0 2 * * SAT#1",
            replace(
                daily_at(2),
                weekdays=frozenset(),
                nth_weekdays=frozenset({(6, 1)}),
                day_of_week_star=False,
            ),
        ),
        ("@daily", daily_at(0)),
        (
            "@quarterly",
            replace(
                daily_at(0),
                days=frozenset({1}),
                months=frozenset({1, 4, 7, 10}),
                day_of_month_star=False,
            ),
        ),
        ("*/5 * * * *", replace(EVERY_MINUTE, minutes=tuple(range(0, 60, 5)))),
        (
            "0 2 L * *",
            replace(daily_at(2), days=frozenset(), last_day=True, day_of_month_star=False),
        ),
        (
            "0 3 * * FRIL",
            replace(
                daily_at(3),
                weekdays=frozenset(),
                last_weekdays=frozenset({5}),
                day_of_week_star=False,
            ),
        ),
        (
            "0 0 1-15/2 JAN-MAR MON-FRI",
            replace(
                daily_at(0),
                days=frozenset(range(1, 16, 2)),
                months=frozenset({1, 2, 3}),
                weekdays=frozenset({1, 2, 3, 4, 5}),
                day_of_month_star=False,
                day_of_week_star=False,
            ),
        ),
        (
            "30 2 * * 0,6",
            replace(daily_at(2, 30), weekdays=frozenset({0, 6}), day_of_week_star=False),
        ),
        (
            "0 0 29 2 *",
            replace(
                daily_at(0), days=frozenset({29}), months=frozenset({2}), day_of_month_star=False
            ),
        ),
        (
            "0 0 * * fril",
            replace(
                daily_at(0),
                weekdays=frozenset(),
                last_weekdays=frozenset({5}),
                day_of_week_star=False,
            ),
        ),
        # Both day fields restricted: either matches (Vixie cron), so it fires on February's
        # Fridays although February has no 31st.
        (
            "0 0 31 2 FRI",
            replace(
                daily_at(0),
                days=frozenset({31}),
                months=frozenset({2}),
                weekdays=frozenset({5}),
                day_of_month_star=False,
                day_of_week_star=False,
            ),
        ),
    ],
)
def test_valid(expression: str, expected: CronFields) -> None:
    validate_cron(expression)  # accepted by config validation ...
    assert parse_cron(expression) == expected  # ... as these fields


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("0 9 * *", "has 4 fields"),
        ("60 9 * * *", "outside 0-59"),
        ("0 24 * * *", "outside 0-23"),
        ("0 0 0 * *", "outside 1-31"),
        ("0 0 * 13 *", "outside 1-12"),
        ("0 0 * * FUNDAY", "not valid"),
        ("0 0 * * SAT#6", "not valid"),
        ("@fortnightly", "unknown schedule alias"),
        ("*/0 * * * *", "step 0"),
        ("0 5-2 * * *", "runs backwards"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_invalid(expression: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        validate_cron(expression)
