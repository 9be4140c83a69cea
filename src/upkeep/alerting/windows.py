"""Maintenance windows: whether a named window is open, and when it opens next.

A window opens at each firing of its cron ``schedule`` (in its timezone, else the config's)
and stays open for ``duration``; a config window with ``start`` instead is one opening.
One-off windows added from the CLI or API are stored; one named like a config window is an
extra opening of it, any other is a window of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from upkeep.config.schedule import CronSchedule

if TYPE_CHECKING:
    from upkeep.config.models import UpkeepConfig, WindowConfig
    from upkeep.store.runs import OneOffWindow


@dataclass(frozen=True)
class Opening:
    """One period a window is open: ``start`` inclusive, ``end`` exclusive."""

    window: str
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        """Given a moment, return whether it falls inside this opening."""
        return self.start <= moment < self.end


@dataclass(frozen=True)
class WindowEntry:
    """One window as a person manages it, listed once: a config window (``one_off`` None;
    its openings include the one-off openings that share its name) or one stored one-off
    window (its own single opening)."""

    name: str
    config: WindowConfig | None
    one_off: OneOffWindow | None
    current: Opening | None
    following: Opening | None


_PRECISION = timedelta(seconds=1)


def _latest_firing(schedule: CronSchedule, *, after: datetime, until: datetime) -> datetime | None:
    """Given a schedule and a span, return its latest firing strictly after ``after`` and at
    or before ``until``, or None if there is none.

    Several openings may overlap (a duration longer than the period); the latest is the one
    that counts. It is found by bisection on "is there a firing in (t, until]", which holds
    for every t before the latest firing and for none after: a few dozen ``next_after``
    calls however long the window is, where walking the firings one by one would take a
    minute-by-minute schedule with a month-long duration tens of thousands of steps.
    """
    if schedule.next_after(after) > until:
        return None
    low, high = after, until  # a firing is in (low, until]; none is in (high, until]
    while high - low > _PRECISION:
        middle = low + (high - low) / 2
        if schedule.next_after(middle) <= until:
            low = middle
        else:
            high = middle
    # Firings are whole seconds apart at least: (low, high] holds only the latest.
    return schedule.next_after(low)


def _aware(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


class WindowCalendar:
    """The windows of one config plus the stored one-off windows."""

    def __init__(self, config: UpkeepConfig, one_offs: Sequence[OneOffWindow] = ()) -> None:
        """Given a config and stored one-off windows, build the calendar; a one-off given
        twice (same id) counts once."""
        self._config = config
        self._one_offs = list({one_off.id: one_off for one_off in one_offs}.values())
        self._schedules: dict[str, CronSchedule] = {}
        for name, window in config.windows.items():
            if window.schedule is not None:
                self._schedules[name] = CronSchedule(window.schedule, self._zone(window))

    def _zone(self, window: WindowConfig) -> ZoneInfo:
        return ZoneInfo(window.timezone or self._config.timezone)

    def names(self) -> list[str]:
        """Return every window name: config windows, then one-off names not in the config."""
        extra = sorted({w.name for w in self._one_offs} - set(self._config.windows))
        return [*self._config.windows, *extra]

    def opening_at(self, name: str, moment: datetime) -> Opening | None:
        """Given a window name and an aware moment, return the opening containing it, or None."""
        for one_off in self._one_offs:
            if one_off.name == name and one_off.starts_at <= moment < one_off.ends_at:
                return Opening(name, one_off.starts_at, one_off.ends_at)
        window = self._config.windows.get(name)
        if window is None:
            return None
        if window.start is not None:
            start = _aware(window.start, self._zone(window))
            opening = Opening(name, start, start + window.duration)
            return opening if opening.contains(moment) else None
        latest = _latest_firing(self._schedules[name], after=moment - window.duration, until=moment)
        return Opening(name, latest, latest + window.duration) if latest is not None else None

    def is_open(self, name: str, moment: datetime) -> bool:
        """Given a window name and an aware moment, return whether the window is open then."""
        return self.opening_at(name, moment) is not None

    def next_opening(self, name: str, after: datetime) -> Opening | None:
        """Given a window name and an aware moment, return its next opening strictly after it.

        Return None if the window never opens again (a past one-off window, an unknown name).
        """
        candidates = [
            Opening(name, one_off.starts_at, one_off.ends_at)
            for one_off in self._one_offs
            if one_off.name == name and one_off.starts_at > after
        ]
        window = self._config.windows.get(name)
        if window is not None:
            if window.start is not None:
                start = _aware(window.start, self._zone(window))
                if start > after:
                    candidates.append(Opening(name, start, start + window.duration))
            else:
                start = self._schedules[name].next_after(after)
                candidates.append(Opening(name, start, start + window.duration))
        return min(candidates, key=lambda opening: opening.start, default=None)

    def closed_within(self, name: str, since: datetime, until: datetime) -> Opening | None:
        """Given a window name and a span, return its latest opening that ended in
        ``(since, until]``, or None if none did (an unknown name has none)."""
        ended = [
            Opening(name, one_off.starts_at, one_off.ends_at)
            for one_off in self._one_offs
            if one_off.name == name and since < one_off.ends_at <= until
        ]
        window = self._config.windows.get(name)
        if window is not None:
            if window.start is not None:
                start = _aware(window.start, self._zone(window))
                if since < start + window.duration <= until:
                    ended.append(Opening(name, start, start + window.duration))
            else:
                latest = _latest_firing(
                    self._schedules[name],
                    after=since - window.duration,
                    until=until - window.duration,
                )
                if latest is not None:
                    ended.append(Opening(name, latest, latest + window.duration))
        return max(ended, key=lambda opening: opening.end, default=None)

    def entries(self, now: datetime) -> list[WindowEntry]:
        """Given an aware moment, return every window once by its identity: each config
        window (by name, with its current and next opening), then each stored one-off
        window (by id, in start order), whether or not its name is a config window's.

        A name is not an identity: two one-offs may share one, and a one-off may share a
        config window's; listing by name would show such windows twice or merge them.
        """
        listed = [
            WindowEntry(
                name, window, None, self.opening_at(name, now), self.next_opening(name, now)
            )
            for name, window in self._config.windows.items()
        ]
        for one_off in sorted(self._one_offs, key=lambda window: (window.starts_at, window.id)):
            opening = Opening(one_off.name, one_off.starts_at, one_off.ends_at)
            listed.append(
                WindowEntry(
                    one_off.name,
                    None,
                    one_off,
                    opening if opening.contains(now) else None,
                    opening if opening.start > now else None,
                )
            )
        return listed

    def open_windows(self, moment: datetime) -> list[Opening]:
        """Given an aware moment, return the openings of every window open then."""
        found = [self.opening_at(name, moment) for name in self.names()]
        return [opening for opening in found if opening is not None]


def window_rows(
    config: UpkeepConfig, one_offs: Sequence[OneOffWindow], now: datetime
) -> list[dict[str, Any]]:
    """Given the config, the stored one-off windows not yet over and an aware moment,
    return every window once (``WindowCalendar.entries``) as ``upkeep window list --json``
    and ``GET /api/windows`` show it: id (one-offs), name, source, schedule, whether open
    now and until when, next opening, comment."""
    rows: list[dict[str, Any]] = []
    for entry in WindowCalendar(config, one_offs).entries(now):
        one_off, window = entry.one_off, entry.config
        comment = one_off.comment if one_off else ""
        if window is not None:
            comment = window.description or ""
        rows.append(
            {
                "id": one_off.id if one_off else None,
                "name": entry.name,
                "source": f"one-off by {one_off.created_by}" if one_off else "config",
                "schedule": window.schedule if window else None,
                "open_now": entry.current is not None,
                "until": entry.current.end.isoformat() if entry.current else None,
                "next_opening": entry.following.start.isoformat() if entry.following else None,
                "comment": comment,
            }
        )
    return rows
