"""Reading moments people type: an ISO time in a given timezone, ``now``, or how far back
(``24h``, ``7d``). The command line and the API read them with these same functions, so a
``since`` means the same in ``upkeep stats`` and ``GET /api/stats``."""

from __future__ import annotations

from datetime import datetime, tzinfo

FIRST_YEAR = 1970
LAST_YEAR = 9000
"""The years a typed moment may fall in."""


def iso_time(value: str) -> datetime:
    """Given an ISO time as typed, return it (naive if it names no timezone); raise
    ValueError if it is no ISO time or its year is not from ``FIRST_YEAR`` to ``LAST_YEAR``.

    What is read from it (a start, a window's end a duration later, the same moment in
    UTC or any timezone) must stay in the calendar: year 1 at +05:00 is before year 1.
    """
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO time") from None
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise ValueError(f"{value!r} is not between the years {FIRST_YEAR} and {LAST_YEAR}")
    return moment


def read_time(value: str, zone: tzinfo) -> datetime:
    """Given an ISO time as typed and the config's timezone, return the aware time: one
    naming no timezone is read in the config's, everywhere. Raise ValueError as
    ``iso_time``."""
    moment = iso_time(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def since_start(value: str, zone: tzinfo, now: datetime) -> datetime:
    """Given ``--since`` as typed (``24h``, ``7d`` or an ISO time), the config's timezone
    and now, return when the span starts; raise ValueError if it is neither."""
    from upkeep.core.durations import parse_duration

    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        return read_time(value, zone)
    except ValueError as error:
        if "between the years" in str(error):
            raise
        raise ValueError(
            f"{value!r} is neither a duration (24h, 7d) nor an ISO time "
            "(2025-06-01 or 2025-06-01T02:00)"
        ) from None


def start_time(value: str, zone: tzinfo, now: datetime) -> datetime:
    """Given ``--start`` as typed (``now`` or an ISO time), the config's timezone and now,
    return the start; raise ValueError if it is neither."""
    if value == "now":
        return now
    try:
        return read_time(value, zone)
    except ValueError as error:
        if "between the years" in str(error):
            raise
        raise ValueError(
            f"{value!r} is not a time; expected 'now' or an ISO time such as 2025-06-01T02:00 "
            "(in the config's timezone unless it names one, e.g. 2025-06-01T02:00+02:00)"
        ) from None
