"""Cron expressions as the config accepts them: 5 fields, ``@daily``-style aliases,
``DOW#N`` (nth weekday of the month) and ``L`` (last day / last weekday).

One grammar serves both callers: `validate_cron` (config validation) and the scheduler
(`upkeep.config.schedule`) go through `parse_cron`, which turns the text into the sets of
minutes, hours, days and months it names. Which *instants* those are in a time zone is the
scheduler's business; this module only answers "does this calendar day match".

Day semantics are Vixie cron's: when both day-of-month and day-of-week are restricted a day
matches if *either* does; when either field begins with ``*`` (including ``*/2``) both must
match. Day-of-week ``7`` is Sunday, as is ``0``. ``N/S`` (a start with a step) means
``N-max/S``, as in cronie.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from functools import lru_cache

ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@quarterly": "0 0 1 1,4,7,10 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_ITEM = re.compile(r"^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?$")
_NTH = re.compile(r"([A-Za-z0-9]+)#([1-5])")
_LAST_OF = re.compile(r"([A-Za-z0-9]+)L", re.IGNORECASE)
_SATURDAY, _SUNDAY = 6, 0


@dataclass(frozen=True, slots=True)
class CronFields:
    """What a cron expression names, field by field; weekdays count from Sunday = 0.

    ``minute_star``/``hour_star``/``day_of_month_star``/``day_of_week_star`` record whether
    the field's text begins with ``*``: Vixie cron keys both its day-matching rule and its
    daylight-saving rule on that spelling, not on the set the field expands to.
    """

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    last_day: bool
    last_weekday: bool
    months: frozenset[int]
    weekdays: frozenset[int]
    nth_weekdays: frozenset[tuple[int, int]]
    last_weekdays: frozenset[int]
    minute_star: bool
    hour_star: bool
    day_of_month_star: bool
    day_of_week_star: bool

    def matches_day(self, month: int, day: int, weekday: int, month_length: int) -> bool:
        """Given a day as its month, day of month, weekday (Sunday = 0) and the length of its
        month, return whether the month, day-of-month and day-of-week fields select it."""
        if month not in self.months:
            return False
        by_date = self._matches_day_of_month(day, weekday, month_length)
        by_weekday = self._matches_day_of_week(day, weekday, month_length)
        if self.day_of_month_star or self.day_of_week_star:
            return by_date and by_weekday
        return by_date or by_weekday

    def _matches_day_of_month(self, day: int, weekday: int, month_length: int) -> bool:
        if day in self.days or (self.last_day and day == month_length):
            return True
        if not self.last_weekday:
            return False
        last = (weekday + month_length - day) % 7
        back = 1 if last == _SATURDAY else 2 if last == _SUNDAY else 0
        return day == month_length - back

    def _matches_day_of_week(self, day: int, weekday: int, month_length: int) -> bool:
        return (
            weekday in self.weekdays
            or (weekday, (day - 1) // 7 + 1) in self.nth_weekdays
            or (weekday in self.last_weekdays and day + 7 > month_length)
        )


def expand_alias(expression: str) -> str:
    """Given a cron expression or alias, return the 5-field form; raise ValueError if unknown."""
    text = expression.strip()
    if text.startswith("@"):
        try:
            return ALIASES[text.lower()]
        except KeyError:
            raise ValueError(
                f"unknown schedule alias {text!r}; expected one of {', '.join(ALIASES)}"
            ) from None
    return text


def _value(token: str, low: int, high: int, names: tuple[str, ...], field: str) -> int:
    if token.isdigit():
        number = int(token)
    elif token.upper() in names:
        number = names.index(token.upper()) + (1 if field == "month" else 0)
    else:
        raise ValueError(f"{token!r} is not valid in the {field} field")
    if not low <= number <= high:
        raise ValueError(f"{number} is outside {low}-{high} in the {field} field")
    return number


def _span(
    item: str, expression: str, *, field: str, low: int, high: int, names: tuple[str, ...]
) -> set[int]:
    match = _ITEM.match(item)
    if not match:
        raise ValueError(f"{item!r} is not valid in the {field} field of {expression!r}")
    span, step_text = match.groups()
    step = 1 if step_text is None else int(step_text)
    if step == 0:
        raise ValueError(f"step 0 in the {field} field of {expression!r}")
    if span == "*":
        # `*` in day-of-week is 0-6: 7 would only repeat Sunday.
        first, last = low, (6 if field == "day of week" else high)
    else:
        bounds = [_value(part, low, high, names, field) for part in span.split("-")]
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise ValueError(f"range {span!r} runs backwards in the {field} field")
        first = bounds[0]
        last = bounds[-1] if len(bounds) == 2 or step_text is None else high
    return set(range(first, last + 1, step))


MAX_CRON_LENGTH = 1000
"""The longest schedule text accepted: every minute listed one by one is under 200."""


@lru_cache(maxsize=512)
def parse_cron(expression: str) -> CronFields:
    """Given a schedule (5 fields or an alias), return the fields it names; raise ValueError
    saying why if it is malformed, longer than ``MAX_CRON_LENGTH``, or if no date in any
    year matches it (``0 0 31 2 *``)."""
    if len(expression) > MAX_CRON_LENGTH:
        raise ValueError(f"a schedule is at most {MAX_CRON_LENGTH:,} characters")
    fields = expand_alias(expression).split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} has {len(fields)} fields; a cron schedule has 5 "
            "(minute hour day-of-month month day-of-week) or is an alias such as @daily"
        )
    sets: list[set[int]] = []
    last_day = last_weekday = False
    nth: set[tuple[int, int]] = set()
    last_of: set[int] = set()
    for text, (field, low, high, names) in zip(fields, _FIELDS, strict=True):
        values: set[int] = set()
        for item in text.split(","):
            if field == "day of month" and item.upper() in ("L", "LW"):
                last_day = last_day or item.upper() == "L"
                last_weekday = last_weekday or item.upper() == "LW"
                continue
            if field == "day of week":
                if special := _NTH.fullmatch(item):
                    weekday = _value(special.group(1), low, high, names, field) % 7
                    nth.add((weekday, int(special.group(2))))
                    continue
                if special := _LAST_OF.fullmatch(item):
                    last_of.add(_value(special.group(1), low, high, names, field) % 7)
                    continue
            values |= _span(item, expression, field=field, low=low, high=high, names=names)
        sets.append(values)
    minutes, hours, days, months, weekdays = sets
    parsed = CronFields(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        last_day=last_day,
        last_weekday=last_weekday,
        months=frozenset(months),
        weekdays=frozenset(day % 7 for day in weekdays),
        nth_weekdays=frozenset(nth),
        last_weekdays=frozenset(last_of),
        minute_star=fields[0].startswith("*"),
        hour_star=fields[1].startswith("*"),
        day_of_month_star=fields[2].startswith("*"),
        day_of_week_star=fields[4].startswith("*"),
    )
    if not _ever_matches(parsed):
        raise ValueError(
            f"{expression!r} never fires: no date has the day of month, month "
            "and day of week it asks for"
        )
    return parsed


def _ever_matches(parsed: CronFields) -> bool:
    # Over the 400-year Gregorian cycle every month starts on every weekday, and February
    # does so in both leap and common years; checking those 7 x 13 shapes of month is
    # therefore exact without walking real dates.
    for month in sorted(parsed.months):
        lengths = (28, 29) if month == 2 else (calendar.monthrange(2001, month)[1],)
        for length in lengths:
            for first_weekday in range(7):
                for day in range(1, length + 1):
                    if parsed.matches_day(month, day, (first_weekday + day - 1) % 7, length):
                        return True
    return False


def validate_cron(expression: str) -> None:
    """Given a schedule, return if it is a valid cron expression; raise ValueError saying why."""
    parse_cron(expression)
