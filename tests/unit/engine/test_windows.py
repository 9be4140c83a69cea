"""WindowCalendar: recurring config windows across DST, one-off windows, overlapping openings."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import load_text
from upkeep.alerting.windows import Opening, WindowCalendar
from upkeep.config.models import UpkeepConfig
from upkeep.store.runs import OneOffWindow

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

CONFIG = """\
timezone: Europe/Berlin
windows:
  sunday:
    schedule: "0 2 * * SUN"
    duration: 2h
  hourly:
    schedule: "0 * * * *"
    duration: 90m
  migration:
    start: 2030-06-01T22:00:00
    duration: 3h
    timezone: America/New_York
"""


@pytest.fixture
def config(tmp_path: Path) -> UpkeepConfig:
    return load_text(tmp_path, CONFIG).config


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def one_off(window_id: int, name: str, start: datetime, hours: float) -> OneOffWindow:
    return OneOffWindow(
        id=window_id,
        name=name,
        starts_at=start,
        ends_at=start + timedelta(hours=hours),
        mute=None,
        comment="",
        created_by="tester",
        created_at=start - timedelta(days=1),
    )


# --- recurring config window ---------------------------------------------------------------


def test_is_open_inside_and_outside(config: UpkeepConfig) -> None:
    calendar = WindowCalendar(config)
    # 2025-06-01 is a Sunday (CEST).
    assert calendar.is_open("sunday", berlin(2025, 6, 1, 2, 0))
    assert calendar.is_open("sunday", berlin(2025, 6, 1, 3, 59, 59))
    assert not calendar.is_open("sunday", berlin(2025, 6, 1, 1, 59, 59))
    assert not calendar.is_open("sunday", berlin(2025, 6, 2, 2, 30))  # a Monday
    assert not calendar.is_open("sunday", berlin(2025, 6, 1, 12, 0))
    opening = calendar.opening_at("sunday", berlin(2025, 6, 1, 2, 30))
    assert opening == Opening("sunday", berlin(2025, 6, 1, 2, 0), berlin(2025, 6, 1, 4, 0))


def test_the_end_of_an_opening_is_exclusive(config: UpkeepConfig) -> None:
    calendar = WindowCalendar(config)
    end = berlin(2025, 6, 1, 4, 0)
    assert calendar.opening_at("sunday", end) is None
    assert not calendar.is_open("sunday", end)
    assert calendar.is_open("sunday", end - timedelta(microseconds=1))


def test_unknown_window_is_never_open(config: UpkeepConfig) -> None:
    calendar = WindowCalendar(config)
    assert not calendar.is_open("nope", berlin(2025, 6, 1, 2, 30))
    assert calendar.next_opening("nope", berlin(2025, 6, 1, 2, 30)) is None


def test_next_opening_is_strictly_after(config: UpkeepConfig) -> None:
    calendar = WindowCalendar(config)
    opening = calendar.next_opening("sunday", berlin(2025, 6, 2, 10, 0))
    assert opening is not None
    assert opening.start == berlin(2025, 6, 8, 2, 0)
    assert opening.end == opening.start + timedelta(hours=2)
    same = calendar.next_opening("sunday", berlin(2025, 6, 8, 2, 0))
    assert same is not None and same.start == berlin(2025, 6, 15, 2, 0)


def test_next_opening_across_spring_forward(config: UpkeepConfig) -> None:
    # 2025-03-30: Berlin clocks jump from 02:00 to 03:00, so 02:00 does not exist that day.
    # The opening is not skipped: it starts at the first instant after the gap.
    calendar = WindowCalendar(config)
    opening = calendar.next_opening("sunday", berlin(2025, 3, 27, 12, 0))
    assert opening is not None
    assert opening.start == utc(2025, 3, 30, 1, 0)
    assert opening.start.astimezone(BERLIN).hour == 3
    assert opening.end - opening.start == timedelta(hours=2)
    assert calendar.is_open("sunday", utc(2025, 3, 30, 2, 30))
    assert not calendar.is_open("sunday", utc(2025, 3, 30, 3, 0))
    following = calendar.next_opening("sunday", opening.start)
    assert following is not None and following.start == berlin(2025, 4, 6, 2, 0)


def test_next_opening_across_fall_back(config: UpkeepConfig) -> None:
    # 2025-10-26: Berlin clocks go back from 03:00 to 02:00, so 02:00 happens twice.
    # The window opens once, at the first 02:00 (CEST), for two real hours.
    calendar = WindowCalendar(config)
    opening = calendar.next_opening("sunday", berlin(2025, 10, 23, 12, 0))
    assert opening is not None
    assert opening.start == utc(2025, 10, 26, 0, 0)
    assert opening.end == utc(2025, 10, 26, 2, 0)
    second_two_oclock = datetime(2025, 10, 26, 2, 30, tzinfo=BERLIN, fold=1)
    assert second_two_oclock.astimezone(UTC) == utc(2025, 10, 26, 1, 30)
    assert calendar.is_open("sunday", second_two_oclock)
    following = calendar.next_opening("sunday", opening.start)
    assert following is not None
    assert following.start == utc(2025, 11, 2, 1, 0)  # 02:00 CET a week later


# --- config window with start --------------------------------------------------------------


def test_one_off_config_window_uses_its_own_zone(config: UpkeepConfig) -> None:
    calendar = WindowCalendar(config)
    start = datetime(2030, 6, 1, 22, 0, tzinfo=NEW_YORK)
    assert calendar.is_open("migration", start)
    assert calendar.is_open("migration", start + timedelta(hours=2, minutes=59))
    assert not calendar.is_open("migration", start + timedelta(hours=3))
    assert not calendar.is_open("migration", start - timedelta(seconds=1))
    opening = calendar.next_opening("migration", utc(2030, 1, 1))
    assert opening == Opening("migration", start, start + timedelta(hours=3))
    assert calendar.next_opening("migration", start) is None


# --- stored one-off windows ---------------------------------------------------------------


def test_stored_one_off_extends_a_config_window(config: UpkeepConfig) -> None:
    extra_start = berlin(2025, 6, 4, 20, 0)  # a Wednesday
    calendar = WindowCalendar(config, [one_off(1, "sunday", extra_start, 1)])
    assert calendar.names() == ["sunday", "hourly", "migration"]
    assert calendar.is_open("sunday", berlin(2025, 6, 4, 20, 30))
    assert not calendar.is_open("sunday", berlin(2025, 6, 4, 21, 0))
    assert calendar.is_open("sunday", berlin(2025, 6, 8, 2, 30))  # the recurring one still holds
    opening = calendar.next_opening("sunday", berlin(2025, 6, 2, 0, 0))
    assert opening == Opening("sunday", extra_start, extra_start + timedelta(hours=1))
    after = calendar.next_opening("sunday", extra_start)
    assert after is not None and after.start == berlin(2025, 6, 8, 2, 0)


def test_standalone_stored_one_off_window(config: UpkeepConfig) -> None:
    start = utc(2025, 6, 10, 8, 0)
    windows = [one_off(1, "hotfix", start, 2), one_off(2, "hotfix", start + timedelta(days=1), 1)]
    calendar = WindowCalendar(config, windows)
    assert calendar.names() == ["sunday", "hourly", "migration", "hotfix"]
    assert calendar.is_open("hotfix", start + timedelta(minutes=1))
    assert not calendar.is_open("hotfix", start + timedelta(hours=2))
    nxt = calendar.next_opening("hotfix", start - timedelta(hours=1))
    assert nxt is not None and nxt.start == start
    nxt = calendar.next_opening("hotfix", start)
    assert nxt is not None and nxt.start == start + timedelta(days=1)
    assert calendar.next_opening("hotfix", start + timedelta(days=2)) is None
    names = [o.window for o in calendar.open_windows(start + timedelta(minutes=5))]
    assert "hotfix" in names and "sunday" not in names


def test_entries_list_each_window_once_by_identity(config: UpkeepConfig) -> None:
    # `window list` showed every one-off twice: once under its name (with no id) and once
    # by id. Names are not identities: two one-offs share "hotfix", one shares "sunday".
    now = utc(2025, 6, 10, 9, 0)
    extra = one_off(1, "sunday", now + timedelta(days=1), 1)
    first = one_off(2, "hotfix", now - timedelta(hours=1), 2)
    second = one_off(3, "hotfix", now + timedelta(days=2), 1)
    # The same stored row passed twice (two reads merged) is still one window.
    calendar = WindowCalendar(config, [second, extra, first, first])
    entries = calendar.entries(now)
    identities = [entry.one_off.id if entry.one_off else entry.name for entry in entries]
    assert identities == ["sunday", "hourly", "migration", 2, 1, 3]
    by_identity = dict(zip(identities, entries, strict=True))
    # The config window's next opening includes its extra one-off opening.
    sunday = by_identity["sunday"]
    assert sunday.config is not None and sunday.one_off is None
    assert sunday.following == Opening("sunday", extra.starts_at, extra.ends_at)
    # Each one-off carries only its own opening.
    assert by_identity[2].current == Opening("hotfix", first.starts_at, first.ends_at)
    assert by_identity[2].following is None
    assert by_identity[3].current is None
    assert by_identity[3].following == Opening("hotfix", second.starts_at, second.ends_at)
    assert by_identity[1].config is None


# --- overlapping openings ---------------------------------------------------------------------


def test_opening_at_takes_the_latest_of_overlapping_openings(config: UpkeepConfig) -> None:
    calendar = WindowCalendar(config)
    # Hourly openings of 90 minutes: at 10:15 both the 09:00 and the 10:00 openings hold.
    moment = berlin(2025, 6, 3, 10, 15)
    opening = calendar.opening_at("hourly", moment)
    assert opening == Opening("hourly", berlin(2025, 6, 3, 10, 0), berlin(2025, 6, 3, 11, 30))
    # At 10:45 only the 10:00 opening holds (09:00 closed at 10:30).
    late = calendar.opening_at("hourly", berlin(2025, 6, 3, 10, 45))
    assert late is not None and late.start == berlin(2025, 6, 3, 10, 0)
    nxt = calendar.next_opening("hourly", moment)
    assert nxt is not None and nxt.start == berlin(2025, 6, 3, 11, 0)


def test_stored_one_off_overlapping_a_config_opening(config: UpkeepConfig) -> None:
    start = berlin(2025, 6, 1, 1, 0)
    calendar = WindowCalendar(config, [one_off(1, "sunday", start, 1.5)])
    # Before the recurring opening: only the one-off holds.
    assert calendar.opening_at("sunday", berlin(2025, 6, 1, 1, 30)) == Opening(
        "sunday", start, start + timedelta(hours=1.5)
    )
    # After the one-off ended, the recurring opening still holds.
    opening = calendar.opening_at("sunday", berlin(2025, 6, 1, 3, 0))
    assert opening == Opening("sunday", berlin(2025, 6, 1, 2, 0), berlin(2025, 6, 1, 4, 0))
    # While both hold, the window is open either way.
    assert calendar.is_open("sunday", berlin(2025, 6, 1, 2, 15))


def test_a_window_far_longer_than_its_period_is_answered_at_once(tmp_path: Path) -> None:
    # Every minute, open for 100 years (the longest duration a config takes): walking the
    # openings one by one took 4 s for a 30-day duration and hours for this one.
    config = load_text(
        tmp_path,
        "windows:\n  always: {schedule: '* * * * *', duration: 100y}\n"
        "  january: {schedule: '* * * 1 *', duration: 1y}\n",
    ).config
    calendar = WindowCalendar(config)
    started = time.monotonic()
    moment = utc(2025, 6, 3, 10, 15)
    assert calendar.opening_at("always", moment) == Opening(
        "always", utc(2025, 6, 3, 10, 15), utc(2025, 6, 3, 10, 15) + timedelta(days=36500)
    )
    # Every minute of January opens it for a year: in June the last minute of January counts.
    assert calendar.opening_at("january", moment) == Opening(
        "january", utc(2025, 1, 31, 23, 59), utc(2026, 1, 31, 23, 59)
    )
    assert calendar.opening_at("always", moment + timedelta(seconds=30)) == Opening(
        "always", moment, moment + timedelta(days=36500)
    )
    assert time.monotonic() - started < 1.0
