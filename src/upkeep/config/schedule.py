"""When schedules fire: cron expressions in a time zone, and jittered fixed-rate intervals.

Cron firings
------------
`CronSchedule` turns a cron expression (grammar and day semantics in
`upkeep.config.cron`) plus an IANA zone into UTC instants. Wall times are read in the
zone; on ordinary days a wall time is one instant. Daylight-saving transitions follow
Vixie cron / cronie, which split jobs by how their minute and hour fields are *spelled*:

* **Interval jobs** — the minute or the hour field begins with ``*`` (``*/15 * * * *``,
  ``0 * * * *``, ``*/10 2 * * *``). They fire whenever the wall clock shows a matching time,
  so they keep to elapsed time across a transition: wall times skipped by spring-forward
  do not fire (``*/30`` fires 46 times on a 23-hour day, still every 30 minutes), and wall
  times that occur twice at fall-back fire twice (50 times on a 25-hour day). A job whose
  every matching time lies in the skipped hour (``*/15 2 * * *``) does not run that day,
  as in cronie.
* **Fixed-time jobs** — neither field begins with ``*`` (``30 2 * * *``, ``0 1-3 * * *``).
  They run once per matching wall time, never skipped, never doubled: a wall time that
  does not exist fires at the first instant after the gap (02:30 on 2026-03-29 in
  Europe/Berlin fires at 03:00 CEST, the instant the clock jumps), and a wall time that
  occurs twice fires at its first occurrence only (``fold=0``). Several wall times that
  fall in one gap (``0,30 2 * * *``) become that one instant, so they fire once.

A day is treated as a transition day when the zone's offset at 00:00 and at 23:59 (either
fold) differ; two transitions that cancel out within one day are not recognised, and no
zone in the tz database has them.

Interval firings
----------------
`every:` checks run on a fixed phase grid, ``epoch + jitter_offset(key, every) + k * every``,
so many checks with the same period spread evenly over it, and a check keeps its phase
across restarts instead of starting its clock at boot.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
from bisect import bisect_right
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from upkeep.config.cron import CronFields, parse_cron

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)
# parse_cron only accepts expressions that match some date; every date pattern recurs
# within one 400-year Gregorian cycle, so a longer search would mean a bug, not a rare job.
_SEARCH_MONTHS = 401 * 12
_CACHE_LIMIT = 64


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


class CronSchedule:
    """A cron expression evaluated in one time zone; see the module docstring for DST rules.

    ``fields`` is the parsed expression; ``interval`` is whether it is an interval job
    (minute or hour field spelled with a leading ``*``) or a fixed-time job.
    """

    __slots__ = ("_day_instants", "_month_days", "_walls", "expression", "fields", "zone")

    def __init__(self, expression: str, zone: ZoneInfo) -> None:
        """Given a cron expression or alias and a zone, return the schedule; raise ValueError
        saying why if the expression is malformed or can never fire (``0 0 31 2 *``)."""
        self.expression = expression
        self.zone = zone
        self.fields: CronFields = parse_cron(expression)
        # Minutes since local midnight of every matching wall time, ascending, so the
        # next one on an ordinary day is a bisection rather than a scan.
        self._walls: tuple[int, ...] = tuple(
            hour * 60 + minute for hour in self.fields.hours for minute in self.fields.minutes
        )
        self._month_days: dict[tuple[int, int], tuple[int, ...]] = {}
        self._day_instants: dict[date, tuple[datetime, ...]] = {}

    @property
    def interval(self) -> bool:
        """Return whether this is an interval job (keeps elapsed time across DST)."""
        return self.fields.minute_star or self.fields.hour_star

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, {self.zone.key!r})"

    def next_after(self, moment: datetime) -> datetime:
        """Given an aware datetime, return the first firing strictly after it, as an aware UTC
        datetime; raise ValueError if ``moment`` is naive."""
        _require_aware(moment, "moment")
        now = moment.astimezone(UTC)
        # Start a day early: a wall time in a gap that crosses midnight fires at an instant
        # whose local date is the next day.
        start = now.astimezone(self.zone).date() - _ONE_DAY
        found: datetime | None = None
        found_on = start
        for day in self._matching_days(start):
            if found is not None and day > found_on + _ONE_DAY:
                break
            candidate = self._first_on(day, now)
            if candidate is None:
                continue
            if found is not None:
                # A fall-back that crosses midnight can repeat the previous day's late
                # wall times after this day's first ones; take the earlier instant.
                return min(found, candidate)
            found, found_on = candidate, day
        if found is None:
            raise RuntimeError(
                f"{self!r} found no firing in 400 years; parse_cron should not allow that"
            )
        return found

    def firings(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Given aware datetimes ``start`` and ``end``, return an iterator over every firing
        ``t`` with ``start <= t < end``, ascending, as aware UTC datetimes; raise ValueError if
        either is naive."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        return self._firings(start, end)

    def _firings(self, start: datetime, end: datetime) -> Iterator[datetime]:
        moment = self.next_after(start - _MICROSECOND)
        while moment < end:
            yield moment
            moment = self.next_after(moment)

    def _matching_days(self, start: date) -> Iterator[date]:
        year, month = start.year, start.month
        for _ in range(_SEARCH_MONTHS):
            if month in self.fields.months:
                for day in self._days_of(year, month):
                    if (year, month) != (start.year, start.month) or day >= start.day:
                        yield date(year, month, day)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    def _days_of(self, year: int, month: int) -> tuple[int, ...]:
        cached = self._month_days.get((year, month))
        if cached is None:
            first_weekday, length = calendar.monthrange(year, month)
            sunday_based = (first_weekday + 1) % 7
            cached = tuple(
                day
                for day in range(1, length + 1)
                if self.fields.matches_day(month, day, (sunday_based + day - 1) % 7, length)
            )
            if len(self._month_days) >= _CACHE_LIMIT:
                self._month_days.clear()
            self._month_days[(year, month)] = cached
        return cached

    def _first_on(self, day: date, now: datetime) -> datetime | None:
        offset = self._steady_offset(day)
        if offset is None:
            instants = self._transition_day(day)
            index = bisect_right(instants, now)
            return instants[index] if index < len(instants) else None
        local = (now + offset).replace(tzinfo=None)
        if local.date() > day:
            return None
        # Firings are on whole minutes, so one at the current minute is not after `now`
        # whether or not `now` has seconds.
        minute = local.hour * 60 + local.minute if local.date() == day else -1
        index = bisect_right(self._walls, minute)
        if index == len(self._walls):
            return None
        wall = datetime.combine(day, time(), tzinfo=UTC) + timedelta(minutes=self._walls[index])
        return wall - offset

    def _steady_offset(self, day: date) -> timedelta | None:
        offsets = {
            datetime.combine(day, clock, tzinfo=self.zone).replace(fold=fold).utcoffset()
            for clock in (time(0, 0), time(23, 59))
            for fold in (0, 1)
        }
        only = offsets.pop()
        return only if not offsets else None

    def _transition_day(self, day: date) -> tuple[datetime, ...]:
        cached = self._day_instants.get(day)
        if cached is not None:
            return cached
        instants: set[datetime] = set()
        midnight = datetime.combine(day, time(), tzinfo=self.zone)
        for wall in self._walls:
            local = midnight + timedelta(minutes=wall)
            first = local.astimezone(UTC)
            second = local.replace(fold=1).astimezone(UTC)
            if first == second:
                instants.add(first)
            elif first < second:
                # Ambiguous (fall-back): fold=0 is the earlier instant.
                instants.add(first)
                if self.interval:
                    instants.add(second)
            elif not self.interval:
                # Skipped (spring-forward): fold=1 reads the wall time with the new offset,
                # giving an instant before the jump, fold=0 one after it.
                instants.add(self._jump(before=second, after=first))
        result = tuple(sorted(instants))
        if len(self._day_instants) >= _CACHE_LIMIT:
            self._day_instants.clear()
        self._day_instants[day] = result
        return result

    def _jump(self, before: datetime, after: datetime) -> datetime:
        # The zone has no public transition table, so bisect on whole seconds for the first
        # instant that already has the post-transition offset.
        target = after.astimezone(self.zone).utcoffset()
        low, high = int(before.timestamp()), int(after.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, UTC).astimezone(self.zone).utcoffset() == target:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)


def jitter_offset(key: str, period: timedelta) -> timedelta:
    """Given a key (a check's name) and a positive period, return a deterministic offset in
    ``[0, period)`` at microsecond resolution, from a SHA-256 of the key so it is the same in
    every process; raise ValueError if ``period`` is not positive."""
    if period <= timedelta(0):
        raise ValueError(f"period must be positive, got {period}")
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest(), "big")
    # 256 bits modulo a period of at most ~10^17 microseconds: the bias is far below 1e-50.
    return timedelta(microseconds=digest % (period // _MICROSECOND))


def next_interval_firing(key: str, every: timedelta, after: datetime) -> datetime:
    """Given a key, a positive period and an aware datetime, return the first instant strictly
    after ``after`` on the grid ``EPOCH + jitter_offset(key, every) + k * every``, as an aware
    UTC datetime; raise ValueError if ``every`` is not positive or ``after`` is naive."""
    _require_aware(after, "after")
    phase = EPOCH + jitter_offset(key, every)
    step = every // _MICROSECOND
    elapsed = (after.astimezone(UTC) - phase) // _MICROSECOND
    return phase + timedelta(microseconds=(elapsed // step + 1) * step)


@functools.lru_cache(maxsize=1024)
def _cron_schedule(expression: str, zone: str) -> CronSchedule:
    return CronSchedule(expression, ZoneInfo(zone))


def next_cron_firing(expression: str, zone: str, after: datetime) -> datetime:
    """Given a cron expression, an IANA zone name and an aware datetime, return the first
    firing strictly after it (schedules are built once per expression and zone); raise
    ValueError if the expression or the zone is invalid or ``after`` is naive."""
    return _cron_schedule(expression, zone).next_after(after)
