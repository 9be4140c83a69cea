from __future__ import annotations

import calendar
import os
import random
import subprocess
import sys
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest

from upkeep.config.schedule import (
    EPOCH,
    CronSchedule,
    jitter_offset,
    next_interval_firing,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ZONE_UTC = ZoneInfo("UTC")
MINUTE = timedelta(minutes=1)


def seeded(seed: int | str) -> random.Random:
    """A reproducible generator: the same cases on every run, so a failure can be replayed."""
    return random.Random(seed)  # noqa: S311 - test data, not secrets


def at(
    zone: tzinfo,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    fold: int = 0,
) -> datetime:
    """Given a zone and a wall-clock time (``fold=1``: its second pass), return the instant."""
    return datetime(year, month, day, hour, minute, second, tzinfo=zone, fold=fold)


def local_day(zone: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    """The instants at which `day` starts and the next day starts, in `zone`."""
    start = datetime.combine(day, time(), tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)


def firings_on(schedule: CronSchedule, day: date) -> list[datetime]:
    return list(schedule.firings(*local_day(schedule.zone, day)))


def walls(schedule: CronSchedule, start: datetime, end: datetime) -> list[str]:
    return [
        f"{t.astimezone(schedule.zone):%Y-%m-%d %H:%M %Z}" for t in schedule.firings(start, end)
    ]


# --- fields, names, aliases ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 9 * * *", (2026, 5, 4, 8, 59), (2026, 5, 4, 9, 0)),
        ("0 9 * * *", (2026, 5, 4, 9, 0), (2026, 5, 5, 9, 0)),
        ("*/15 * * * *", (2026, 5, 4, 10, 7), (2026, 5, 4, 10, 15)),
        ("*/15 * * * *", (2026, 5, 4, 23, 50), (2026, 5, 5, 0, 0)),
        ("5/20 * * * *", (2026, 5, 4, 10, 26), (2026, 5, 4, 10, 45)),
        ("0 8-18/5 * * *", (2026, 5, 4, 13, 1), (2026, 5, 4, 18, 0)),
        ("0 8-18/5 * * *", (2026, 5, 4, 18, 0), (2026, 5, 5, 8, 0)),
        ("15,45 1,13 * * *", (2026, 5, 4, 1, 15), (2026, 5, 4, 1, 45)),
        ("0 0 * * 7", (2026, 5, 4, 0, 0), (2026, 5, 10, 0, 0)),
        ("0 0 * * SUN", (2026, 5, 4, 0, 0), (2026, 5, 10, 0, 0)),
        ("0 0 * * 5-7", (2026, 5, 4, 0, 0), (2026, 5, 8, 0, 0)),
        ("0 12 * JAN,jul mon-FRI", (2026, 5, 4, 0, 0), (2026, 7, 1, 12, 0)),
        ("0 0 1 */5 *", (2026, 2, 1, 0, 0), (2026, 6, 1, 0, 0)),
        ("@yearly", (2026, 5, 4, 0, 0), (2027, 1, 1, 0, 0)),
        ("@annually", (2026, 1, 1, 0, 0), (2027, 1, 1, 0, 0)),
        ("@quarterly", (2026, 5, 4, 0, 0), (2026, 7, 1, 0, 0)),
        ("@monthly", (2026, 5, 4, 0, 0), (2026, 6, 1, 0, 0)),
        ("@weekly", (2026, 5, 4, 0, 0), (2026, 5, 10, 0, 0)),
        ("@daily", (2026, 5, 4, 0, 0), (2026, 5, 5, 0, 0)),
        ("@midnight", (2026, 12, 31, 23, 59), (2027, 1, 1, 0, 0)),
        ("@hourly", (2026, 5, 4, 10, 0), (2026, 5, 4, 11, 0)),
    ],
)
def test_next_after_in_utc(
    expression: str, after: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    schedule = CronSchedule(expression, ZONE_UTC)
    assert schedule.next_after(at(ZONE_UTC, *after)) == at(ZONE_UTC, *expected)


def test_result_is_utc_and_strictly_after_whatever_zone_the_moment_is_in() -> None:
    schedule = CronSchedule("0 9 * * *", BERLIN)
    firing = at(BERLIN, 2026, 5, 4, 9, 0)
    result = schedule.next_after(firing.astimezone(NEW_YORK))
    assert result == at(BERLIN, 2026, 5, 5, 9, 0)
    assert result.tzinfo is UTC
    # A moment inside the firing minute but after it is past that firing.
    assert schedule.next_after(firing - timedelta(microseconds=1)) == firing
    assert schedule.next_after(firing + timedelta(seconds=30)) == at(BERLIN, 2026, 5, 5, 9, 0)


def test_firings_are_half_open_start_included_end_excluded() -> None:
    schedule = CronSchedule("0 * * * *", ZONE_UTC)
    got = list(schedule.firings(at(ZONE_UTC, 2026, 5, 4, 1, 0), at(ZONE_UTC, 2026, 5, 4, 4, 0)))
    assert got == [at(ZONE_UTC, 2026, 5, 4, hour, 0) for hour in (1, 2, 3)]


def test_naive_datetimes_are_refused() -> None:
    schedule = CronSchedule("@daily", BERLIN)
    naive = datetime(2026, 5, 4)  # noqa: DTZ001 - the point is that it is naive
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.firings(naive, at(BERLIN, 2026, 6, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_interval_firing("k", timedelta(seconds=60), naive)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("0 0 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        # `*/30` is {1, 31}; with a `*`-led day-of-month both fields must match, and the
        # second Monday is always the 8th-14th.
        ("0 0 */30 * MON#2", "never fires"),
        ("0 9 * *", "has 4 fields"),
        ("0 0 * * SAT#6", "not valid"),
        ("@fortnightly", "unknown schedule alias"),
    ],
)
def test_impossible_or_malformed_expressions_fail_at_parse_time(
    expression: str, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        CronSchedule(expression, BERLIN)


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("*/15 * * * *", True),
        ("0 * * * *", True),
        ("@hourly", True),
        ("*/10 2 * * *", True),
        ("0 */2 * * *", True),
        ("30 2 * * *", False),
        ("0 1-3 * * *", False),
        ("@daily", False),
    ],
)
def test_interval_jobs_are_those_with_a_star_led_minute_or_hour(
    expression: str, interval: bool
) -> None:
    assert CronSchedule(expression, BERLIN).interval is interval


# --- nth weekday, L, xL, LW, Vixie day semantics --------------------------------------------


def days_fired(expression: str, year: int) -> list[date]:
    schedule = CronSchedule(expression, ZONE_UTC)
    span = (at(ZONE_UTC, year, 1, 1), at(ZONE_UTC, year + 1, 1, 1))
    return [t.date() for t in schedule.firings(*span)]


def weekdays_of(year: int, month: int, weekday: int) -> list[int]:
    return [week[weekday] for week in calendar.monthcalendar(year, month) if week[weekday]]


def test_first_saturday_of_every_month_of_2026() -> None:
    expected = [date(2026, m, weekdays_of(2026, m, calendar.SATURDAY)[0]) for m in range(1, 13)]
    assert days_fired("0 2 * * SAT#1", 2026) == expected
    assert days_fired("0 2 * * 6#1", 2026) == expected


def test_fifth_friday_only_in_months_that_have_one() -> None:
    expected = [
        date(2026, m, fridays[4])
        for m in range(1, 13)
        if len(fridays := weekdays_of(2026, m, calendar.FRIDAY)) == 5
    ]
    assert 3 <= len(expected) < 12
    assert days_fired("0 0 * * FRI#5", 2026) == expected


@pytest.mark.parametrize("year", [2026, 2028, 2100])
def test_l_is_the_last_day_of_each_month(year: int) -> None:
    expected = [date(year, m, calendar.monthrange(year, m)[1]) for m in range(1, 13)]
    assert days_fired("0 2 L * *", year) == expected


@pytest.mark.parametrize("expression", ["0 3 * * 5L", "0 3 * * FRIL", "0 3 * * fril"])
def test_x_l_is_the_last_such_weekday_of_each_month(expression: str) -> None:
    expected = [date(2026, m, weekdays_of(2026, m, calendar.FRIDAY)[-1]) for m in range(1, 13)]
    assert days_fired(expression, 2026) == expected


def test_lw_is_the_last_monday_to_friday_of_each_month() -> None:
    expected = []
    for month in range(1, 13):
        last = date(2026, month, calendar.monthrange(2026, month)[1])
        while last.weekday() >= calendar.SATURDAY:
            last -= timedelta(days=1)
        expected.append(last)
    # 2026 has months ending on a Saturday (Jan, Oct) and a Sunday (May, Aug).
    assert {date(2026, 1, 30), date(2026, 5, 29), date(2026, 8, 31)} & set(expected)
    assert days_fired("0 18 LW * *", 2026) == expected


def test_restricted_day_of_month_and_day_of_week_match_either() -> None:
    fired = days_fired("0 0 13 * FRI", 2026)
    year = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    expected = [d for d in year if d.day == 13 or d.weekday() == calendar.FRIDAY]
    assert fired == expected
    assert date(2026, 2, 13) in fired  # a Friday the 13th fires once, not twice
    assert len(fired) == len(set(fired))


def test_last_day_or_friday_is_either_too() -> None:
    fired = set(days_fired("0 0 L * 5", 2026))
    assert date(2026, 1, 31) in fired  # a Saturday, picked by L
    assert date(2026, 1, 2) in fired  # a Friday, picked by 5


def test_a_star_led_field_makes_both_fields_required() -> None:
    fired = days_fired("0 0 */2 * MON", 2026)
    assert fired
    year = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    assert fired == [d for d in year if d.weekday() == calendar.MONDAY and d.day % 2 == 1]


def test_leap_day_schedule() -> None:
    schedule = CronSchedule("0 0 29 2 *", BERLIN)
    assert schedule.next_after(at(BERLIN, 2026, 1, 1)) == at(BERLIN, 2028, 2, 29)
    assert schedule.next_after(at(BERLIN, 2028, 2, 29)) == at(BERLIN, 2032, 2, 29)
    # 2100 is not a leap year.
    assert schedule.next_after(at(BERLIN, 2096, 3, 1)) == at(BERLIN, 2104, 2, 29)


def test_a_firing_decades_away_is_found() -> None:
    # {1, 29} and the fifth Monday of February: a leap day on a Monday.
    schedule = CronSchedule("0 0 */28 2 MON#5", ZONE_UTC)
    expected = next(
        date(y, 2, 29)
        for y in range(2017, 2100)
        if calendar.isleap(y) and calendar.weekday(y, 2, 29) == calendar.MONDAY
    )
    assert expected == date(2044, 2, 29)
    assert schedule.next_after(at(ZONE_UTC, 2017, 1, 1)) == at(ZONE_UTC, 2044, 2, 29)


# --- daylight saving --------------------------------------------------------------------------


def test_fixed_daily_job_fires_once_a_day_through_spring_forward_in_berlin() -> None:
    schedule = CronSchedule("30 2 * * *", BERLIN)
    got = walls(schedule, at(BERLIN, 2026, 3, 26), at(BERLIN, 2026, 4, 2))
    assert got == [
        "2026-03-26 02:30 CET",
        "2026-03-27 02:30 CET",
        "2026-03-28 02:30 CET",
        "2026-03-29 03:00 CEST",  # 02:30 does not exist: the instant the clock jumps
        "2026-03-30 02:30 CEST",
        "2026-03-31 02:30 CEST",
        "2026-04-01 02:30 CEST",
    ]
    assert schedule.next_after(at(BERLIN, 2026, 3, 29, 1, 59)) == at(UTC, 2026, 3, 29, 1, 0)


def test_fixed_daily_job_fires_once_a_day_through_fall_back_in_berlin() -> None:
    schedule = CronSchedule("30 2 * * *", BERLIN)
    got = walls(schedule, at(BERLIN, 2026, 10, 22), at(BERLIN, 2026, 10, 29))
    assert got == [
        "2026-10-22 02:30 CEST",
        "2026-10-23 02:30 CEST",
        "2026-10-24 02:30 CEST",
        "2026-10-25 02:30 CEST",  # first occurrence only
        "2026-10-26 02:30 CET",
        "2026-10-27 02:30 CET",
        "2026-10-28 02:30 CET",
    ]
    # Asked during the repeated hour, after the first 02:30, the next run is tomorrow.
    second_pass = at(BERLIN, 2026, 10, 25, 2, 0, fold=1)
    assert schedule.next_after(second_pass) == at(BERLIN, 2026, 10, 26, 2, 30)


def test_wall_times_in_one_gap_fire_once_at_the_jump() -> None:
    schedule = CronSchedule("0,30 2,3 * * *", BERLIN)
    assert walls(schedule, *local_day(BERLIN, date(2026, 3, 29))) == [
        "2026-03-29 03:00 CEST",
        "2026-03-29 03:30 CEST",
    ]
    assert walls(schedule, *local_day(BERLIN, date(2026, 10, 25))) == [
        "2026-10-25 02:00 CEST",
        "2026-10-25 02:30 CEST",
        "2026-10-25 03:00 CET",
        "2026-10-25 03:30 CET",
    ]


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [
        (BERLIN, date(2026, 3, 29), date(2026, 10, 25)),
        (NEW_YORK, date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
@pytest.mark.parametrize(("expression", "per_hour"), [("*/30 * * * *", 2), ("0 * * * *", 1)])
def test_interval_jobs_follow_elapsed_time_across_transitions(
    zone: ZoneInfo, spring: date, fall: date, expression: str, per_hour: int
) -> None:
    schedule = CronSchedule(expression, zone)
    assert len(firings_on(schedule, spring)) == 23 * per_hour
    assert len(firings_on(schedule, fall)) == 25 * per_hour
    assert len(firings_on(schedule, spring + timedelta(days=1))) == 24 * per_hour
    for day in (spring, fall):
        start = at(zone, day.year, day.month, day.day) - timedelta(days=2)
        got = list(schedule.firings(start, start + timedelta(days=5)))
        steps = {later - earlier for earlier, later in pairwise(got)}
        assert steps == {timedelta(minutes=60 // per_hour)}


def test_interval_job_confined_to_the_skipped_hour_skips_it_and_repeats_the_doubled_one() -> None:
    schedule = CronSchedule("*/15 2 * * *", BERLIN)
    assert firings_on(schedule, date(2026, 3, 29)) == []
    assert walls(schedule, *local_day(BERLIN, date(2026, 10, 25))) == [
        f"2026-10-25 02:{minute:02d} {zone}"
        for zone in ("CEST", "CET")
        for minute in (0, 15, 30, 45)
    ]


def test_new_york_fixed_jobs_across_both_transitions() -> None:
    spring = CronSchedule("30 2 * * *", NEW_YORK)
    assert firings_on(spring, date(2026, 3, 8)) == [at(UTC, 2026, 3, 8, 7, 0)]  # 03:00 EDT
    fall = CronSchedule("30 1 * * *", NEW_YORK)
    assert firings_on(fall, date(2026, 11, 1)) == [at(UTC, 2026, 11, 1, 5, 30)]  # 01:30 EDT
    for schedule in (spring, fall):
        week = (at(NEW_YORK, 2026, 3, 5), at(NEW_YORK, 2026, 3, 12))
        other = (at(NEW_YORK, 2026, 10, 29), at(NEW_YORK, 2026, 11, 5))
        for start, end in (week, other):
            dates = [t.astimezone(NEW_YORK).date() for t in schedule.firings(start, end)]
            assert dates == [start.date() + timedelta(days=n) for n in range(7)]


# --- jitter and the interval grid ---------------------------------------------------------------


def test_jitter_spreads_ten_thousand_checks_evenly_over_the_minute() -> None:
    period = timedelta(seconds=60)
    buckets = [0] * 60
    for n in range(10_000):
        offset = jitter_offset(f"check-{n}", period)
        assert timedelta(0) <= offset < period
        buckets[int(offset.total_seconds())] += 1
    assert min(buckets) >= 100
    assert max(buckets) <= 240


def test_jitter_is_the_same_in_every_process() -> None:
    # Pinned: changing the hash would move every check's phase on upgrade.
    assert jitter_offset("api-health", timedelta(seconds=60)) == timedelta(
        seconds=49, microseconds=510394
    )
    code = (
        "from datetime import timedelta; from upkeep.config.schedule import jitter_offset; "
        "print(jitter_offset('root-disk', timedelta(minutes=5)) // timedelta(microseconds=1))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    here = jitter_offset("root-disk", timedelta(minutes=5)) // timedelta(microseconds=1)
    assert seen == {str(here)}


def test_jitter_edge_periods() -> None:
    assert jitter_offset("anything", timedelta(microseconds=1)) == timedelta(0)
    assert jitter_offset("a", timedelta(hours=1)) != jitter_offset("b", timedelta(hours=1))
    for bad in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(ValueError, match="positive"):
            jitter_offset("a", bad)
        with pytest.raises(ValueError, match="positive"):
            next_interval_firing("a", bad, at(UTC, 2026, 1, 1))


def test_interval_firings_sit_on_a_fixed_phase_grid() -> None:
    every = timedelta(seconds=30)
    phase = jitter_offset("api-health", every)
    rng = seeded(7)
    start = at(UTC, 2026, 5, 4, 12, 0)
    for _ in range(200):
        after = start + timedelta(microseconds=rng.randrange(10**10))
        firing = next_interval_firing("api-health", every, after)
        assert firing.tzinfo is UTC
        assert after < firing <= after + every
        assert (firing - EPOCH - phase) % every == timedelta(0)
    # Strictly after: a moment on the grid moves to the next point.
    on_grid = next_interval_firing("api-health", every, start)
    assert next_interval_firing("api-health", every, on_grid) == on_grid + every
    # Restarting at any time lands on the same grid, whatever zone the clock is read in.
    later = next_interval_firing(
        "api-health", every, (start + timedelta(hours=5)).astimezone(BERLIN)
    )
    assert (later - on_grid) % every == timedelta(0)


# --- against brute force --------------------------------------------------------------------------


@dataclass
class Spec:
    """What a randomly built expression means, worked out independently of the parser."""

    minutes: set[int] = field(default_factory=set)
    hours: set[int] = field(default_factory=set)
    days: set[int] = field(default_factory=set)
    months: set[int] = field(default_factory=set)
    weekdays: set[int] = field(default_factory=set)
    nth: set[tuple[int, int]] = field(default_factory=set)
    last_of: set[int] = field(default_factory=set)
    last_day: bool = False
    last_weekday: bool = False
    stars: tuple[bool, bool, bool, bool] = (False, False, False, False)

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        length = calendar.monthrange(day.year, day.month)[1]
        last_weekday = date(day.year, day.month, length)
        while last_weekday.weekday() >= calendar.SATURDAY:
            last_weekday -= timedelta(days=1)
        by_date = (
            day.day in self.days
            or (self.last_day and day.day == length)
            or (self.last_weekday and day == last_weekday)
        )
        weekday = day.isoweekday() % 7
        occurrence = sum(
            1
            for n in range(1, day.day + 1)
            if date(day.year, day.month, n).weekday() == day.weekday()
        )
        by_weekday = (
            weekday in self.weekdays
            or (weekday, occurrence) in self.nth
            or (weekday in self.last_of and (day + timedelta(days=7)).month != day.month)
        )
        if self.stars[2] or self.stars[3]:
            return by_date and by_weekday
        return by_date or by_weekday

    def wall_matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and self.day_matches(wall.date())
        )


DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


EARLY_HOURS = {
    "*": set(range(24)),
    "*/2": set(range(0, 24, 2)),
    "2/1": set(range(2, 24)),
    "1": {1},
    "2": {2},
    "3": {3},
    "1-3": {1, 2, 3},
    "0,2,4": {0, 2, 4},
}


def random_numeric(
    rng: random.Random, low: int, high: int, star_high: int, names: tuple[str, ...] = ()
) -> tuple[str, set[int]]:
    """A field of numbers (or names), stars, ranges, steps and lists, and the set it names."""
    kind = rng.choice(["star", "star_step", "value", "range", "range_step", "start_step", "list"])
    a, b = sorted(rng.randint(low, high) for _ in range(2))
    step = rng.randint(2, max(2, (high - low) // 2))
    named = bool(names) and rng.random() < 0.4

    def show(*values: int) -> list[str]:
        if named and all(v - low < len(names) for v in values):
            return [names[v - low] for v in values]
        return [str(v) for v in values]

    if kind == "star":
        return "*", set(range(low, star_high + 1))
    if kind == "star_step":
        return f"*/{step}", set(range(low, star_high + 1, step))
    if kind == "value":
        return show(a)[0], {a}
    if kind == "range":
        return "-".join(show(a, b)), set(range(a, b + 1))
    if kind == "range_step":
        return "-".join(show(a, b)) + f"/{step}", set(range(a, b + 1, step))
    if kind == "start_step":
        return f"{a}/{step}", set(range(a, high + 1, step))
    values = rng.sample(range(low, high + 1), rng.randint(2, 4))
    return ",".join(show(*values)), set(values)


def random_expression(rng: random.Random, *, early_hours: bool = False) -> tuple[str, Spec]:
    """A random expression and its meaning; `early_hours` keeps it daily around 00:00-04:59
    so that it meets daylight-saving transitions."""
    spec = Spec()
    minute, spec.minutes = random_numeric(rng, 0, 59, 59)
    if early_hours:
        hour = rng.choice(sorted(EARLY_HOURS))
        spec.hours = EARLY_HOURS[hour]
    else:
        hour, spec.hours = random_numeric(rng, 0, 23, 23)

    dom_items = []
    for _ in range(rng.choice([1, 1, 2])):
        choice = rng.random()
        if choice < 0.15:
            dom_items.append("L")
            spec.last_day = True
        elif choice < 0.25:
            dom_items.append("LW")
            spec.last_weekday = True
        else:
            text, values = random_numeric(rng, 1, 31, 31)
            dom_items.append(text)
            spec.days |= values
    month, spec.months = random_numeric(rng, 1, 12, 12, MONTH_NAMES)

    dow_items = []
    for _ in range(rng.choice([1, 1, 2])):
        choice = rng.random()
        day = rng.randint(0, 7)
        name = DAY_NAMES[day % 7] if rng.random() < 0.5 else str(day)
        if choice < 0.2:
            n = rng.randint(1, 5)
            dow_items.append(f"{name}#{n}")
            spec.nth.add((day % 7, n))
        elif choice < 0.35:
            dow_items.append(f"{name}L")
            spec.last_of.add(day % 7)
        else:
            text, values = random_numeric(rng, 0, 7, 6, DAY_NAMES)
            dow_items.append(text)
            spec.weekdays |= {v % 7 for v in values}

    if early_hours:
        month, spec.months = "*", set(range(1, 13))
        if rng.random() < 0.7:
            dom_items, spec.days = ["*"], set(range(1, 32))
            spec.last_day = spec.last_weekday = False
        if rng.random() < 0.7:
            dow_items, spec.weekdays, spec.nth, spec.last_of = ["*"], set(range(7)), set(), set()
    dom, dow = ",".join(dom_items), ",".join(dow_items)
    spec.stars = (minute[0] == "*", hour[0] == "*", dom[0] == "*", dow[0] == "*")
    return f"{minute} {hour} {dom} {month} {dow}", spec


def ever_fires(spec: Spec) -> bool:
    start = date(2000, 1, 1)
    return any(spec.day_matches(start + timedelta(days=n)) for n in range(366 * 28))


def parse_or_none(expression: str, spec: Spec, zone: ZoneInfo) -> CronSchedule | None:
    """The schedule, or None after checking that an expression refused as never firing
    really matches no date."""
    if ever_fires(spec):
        return CronSchedule(expression, zone)
    with pytest.raises(ValueError, match="never fires"):
        CronSchedule(expression, zone)
    return None


def test_next_after_matches_a_minute_by_minute_scan_in_utc() -> None:
    rng = seeded(20260504)
    start = at(UTC, 2026, 1, 1)
    days = 120
    compared = 0
    for _ in range(60):
        expression, spec = random_expression(rng)
        schedule = parse_or_none(expression, spec, ZONE_UTC)
        if schedule is None:
            continue
        compared += 1
        day_ok = [spec.day_matches(start.date() + timedelta(days=n)) for n in range(days)]
        expected = [
            start + timedelta(minutes=index)
            for index in range(days * 1440)
            if day_ok[index // 1440]
            and (index % 1440) // 60 in spec.hours
            and index % 60 in spec.minutes
        ]
        end = start + timedelta(days=days)
        assert list(islice(schedule.firings(start, end), 300)) == expected[:300], expression
        for _ in range(50):
            probe = start + timedelta(seconds=rng.randrange(days * 86400))
            index = bisect_right(expected, probe)
            got = schedule.next_after(probe)
            if index < len(expected):
                assert got == expected[index], (expression, probe)
            else:
                assert got >= end, (expression, probe)
    assert compared >= 40


@pytest.mark.parametrize(
    ("zone", "transitions"),
    [
        (BERLIN, [date(2026, 3, 29), date(2026, 10, 25)]),
        (NEW_YORK, [date(2026, 3, 8), date(2026, 11, 1)]),
    ],
)
def test_dst_rule_matches_a_minute_by_minute_scan(zone: ZoneInfo, transitions: list[date]) -> None:
    """Scan UTC minutes and apply the documented rule: interval jobs fire whenever the wall
    clock shows a matching time; fixed jobs fire at a matching first-occurrence wall time,
    and at the jump for matching wall times the clock skipped."""
    rng = seeded(f"dst {zone.key}")
    for _ in range(25):
        expression, spec = random_expression(rng, early_hours=True)
        schedule = parse_or_none(expression, spec, zone)
        if schedule is None:
            continue
        interval = spec.stars[0] or spec.stars[1]
        assert schedule.interval is interval
        for transition in transitions:
            start = datetime.combine(transition - timedelta(days=1), time(), tzinfo=UTC)
            end = start + timedelta(days=3)
            expected = []
            previous = (start - MINUTE).astimezone(zone).replace(tzinfo=None)
            instant = start
            while instant < end:
                local = instant.astimezone(zone)
                wall = local.replace(tzinfo=None)
                fires = spec.wall_matches(wall) and (interval or local.fold == 0)
                skipped = previous + MINUTE
                while not interval and not fires and skipped < wall:
                    fires = spec.wall_matches(skipped)
                    skipped += MINUTE
                if fires:
                    expected.append(instant)
                previous, instant = wall, instant + MINUTE
            assert list(schedule.firings(start, end)) == expected, expression
