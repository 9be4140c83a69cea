"""Line timestamps, as the logs probes and ``upkeep logs analyze`` read them.

Timestamps understood (first match wins, in this order):

* syslog at the start of a line, ``Nov 23 09:00:00`` (RFC 3164; an optional ``<PRI>``
  prefix is allowed). The year is not written, so it is inferred: the current year,
  unless that puts the line more than a day in the future, then the year before.
* JSON lines (``{...}``) with a ``time``, ``timestamp``, ``ts`` or ``@timestamp`` field
  holding an ISO-8601 string or a number of epoch seconds or milliseconds (micro- and
  nanoseconds are recognised by magnitude too).
* ISO-8601 within the first 160 characters: ``2026-11-23T09:00:00Z``,
  ``2026-11-23 09:00:00,123``, ``2026-11-23T09:00:00.5+01:00``, ``... 09:00:00 UTC``.
* nginx/Apache combined within the first 160 characters: ``[23/Nov/2026:09:00:00 +0000]``.

A timestamp without an offset (naive) is taken as the local time of the machine upkeep
runs on, the way the writing process most likely meant it. A line without a timestamp
(a stack trace continuation) inherits the previous line's; lines before the first
timestamp of a file take the file's modification time.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import orjson

SCAN_PREFIX_CHARS = 160
"""Only this many leading characters of a line are searched for a timestamp, so a date
quoted in a message body is not mistaken for the line's own time."""
SYSLOG_FUTURE_TOLERANCE = timedelta(days=1)
"""A year-less syslog date this far ahead of now is last year's; less is clock skew or a
sender in another time zone."""

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_MONTH_ALTERNATION = "|".join(_MONTHS)

_SYSLOG = re.compile(
    rf"^(?:<\d{{1,3}}>)?({_MONTH_ALTERNATION})\s+(\d{{1,2}})\s+(\d{{2}}):(\d{{2}}):(\d{{2}})(?!\d)"
)
_ISO = re.compile(
    r"(?<!\d)(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"(?:\s?(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)(?!\w))?"
)
_APACHE = re.compile(
    rf"\[(\d{{1,2}})/({_MONTH_ALTERNATION})/(\d{{4}}):(\d{{2}}):(\d{{2}}):(\d{{2}})"
    r"(?:\s+([+-])(\d{2}):?(\d{2}))?\]"
)
_JSON_TIME_FIELDS = ("time", "timestamp", "ts", "@timestamp")
_NUMERIC = re.compile(r"^-?\d+(?:\.\d+)?$")


_Wall = tuple[int, int, int, int, int, int]
"""Wall-clock fields: year, month, day, hour, minute, second."""


def _aware(wall: _Wall, microsecond: int, zone: tzinfo | None) -> datetime:
    """Given wall-clock fields and a zone (None: this machine's local time), return UTC.

    Raise ValueError if the fields are not a real date and time.
    """
    year, month, day, hour, minute, second = wall
    if zone is not None:
        return datetime(
            year, month, day, hour, minute, second, microsecond, tzinfo=zone
        ).astimezone(UTC)
    # Validate the fields first: mktime silently normalises 31 Feb to 3 Mar.
    datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)
    # mktime applies the local zone's DST rules for that date, which a fixed offset
    # taken from "now" would get wrong for half the year.
    try:
        epoch = time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
    except (OverflowError, OSError) as error:
        raise ValueError(f"{year}-{month}-{day} is out of range") from error
    return datetime.fromtimestamp(epoch, UTC) + timedelta(microseconds=microsecond)


def _fraction_to_microseconds(digits: str | None) -> int:
    if not digits:
        return 0
    return int(digits[:6].ljust(6, "0"))


def _offset_zone(text: str | None, local_tz: tzinfo | None) -> tzinfo | None:
    """Given an ISO offset (``Z``, ``UTC``, ``+01``, ``+0100``, ``+01:00``), return a zone."""
    if text is None:
        return local_tz
    if text in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) >= 4 else 0
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_iso(text: str, *, local_tz: tzinfo | None = None) -> datetime | None:
    """Given text, return the first ISO-8601 date-time found in it, in UTC, or None.

    Naive times are taken in ``local_tz``, or this machine's local time when None.
    """
    match = _ISO.search(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    try:
        zone = _offset_zone(match.group(8), local_tz)
        return _aware(
            (year, month, day, hour, minute, second),
            _fraction_to_microseconds(match.group(7)),
            zone,
        )
    except ValueError:
        return None


def parse_epoch(value: float) -> datetime | None:
    """Given epoch seconds, milliseconds, micro- or nanoseconds, return the UTC time or None.

    The unit is chosen by magnitude: below 1e11 are seconds (1e11 s is the year 5138),
    below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.
    """
    magnitude = abs(value)
    for limit, divisor in ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6)):
        if magnitude < limit:
            seconds = value / divisor
            break
    else:
        seconds = value / 1e9
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _parse_json_line(text: str, local_tz: tzinfo | None) -> tuple[bool, datetime | None]:
    """Given a line that may be a JSON object, return (was JSON, its timestamp or None)."""

    try:
        document: Any = orjson.loads(text)
    except ValueError:
        return False, None
    if not isinstance(document, dict):
        return False, None
    for key in _JSON_TIME_FIELDS:
        value = document.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            return True, parse_epoch(float(value))
        if isinstance(value, str):
            stripped = value.strip()
            if _NUMERIC.match(stripped):
                return True, parse_epoch(float(stripped))
            parsed = parse_iso(stripped, local_tz=local_tz)
            if parsed is not None:
                return True, parsed
    return True, None


def _parse_syslog(match: re.Match[str], now: datetime, local_tz: tzinfo | None) -> datetime | None:
    month = _MONTHS[match.group(1)]
    day, hour, minute, second = (int(part) for part in match.group(2, 3, 4, 5))
    local_now_year = now.astimezone(local_tz).year if local_tz else now.astimezone().year
    # Walk back over years so that 29 Feb finds the last leap year before now.
    for year in range(local_now_year, local_now_year - 5, -1):
        try:
            candidate = _aware((year, month, day, hour, minute, second), 0, local_tz)
        except ValueError:
            continue
        if candidate <= now + SYSLOG_FUTURE_TOLERANCE:
            return candidate
    return None


def _parse_apache(match: re.Match[str], local_tz: tzinfo | None) -> datetime | None:
    day = int(match.group(1))
    month = _MONTHS[match.group(2)]
    year, hour, minute, second = (int(part) for part in match.group(3, 4, 5, 6))
    try:
        zone = local_tz
        if match.group(7) is not None:
            offset = timedelta(hours=int(match.group(8)), minutes=int(match.group(9)))
            zone = timezone(-offset if match.group(7) == "-" else offset)
        return _aware((year, month, day, hour, minute, second), 0, zone)
    except ValueError:
        return None


def parse_timestamp(line: str, *, now: datetime, local_tz: tzinfo | None = None) -> datetime | None:
    """Given one log line, return its timestamp in UTC, or None if it carries none.

    ``now`` (aware) anchors the year of syslog dates. Naive timestamps are taken in
    ``local_tz``, or in this machine's local time when it is None. See the module
    docstring for the formats and their order.
    """
    head = line[:SCAN_PREFIX_CHARS]
    syslog = _SYSLOG.match(head)
    if syslog is not None:
        parsed = _parse_syslog(syslog, now, local_tz)
        if parsed is not None:
            return parsed
    stripped = line.lstrip()
    if stripped.startswith("{"):
        was_json, parsed = _parse_json_line(stripped, local_tz)
        if was_json:
            return parsed
    iso = parse_iso(head, local_tz=local_tz)
    if iso is not None:
        return iso
    apache = _APACHE.search(head)
    if apache is not None:
        return _parse_apache(apache, local_tz)
    return None
