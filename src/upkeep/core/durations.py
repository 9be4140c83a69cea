"""Duration literals used across the config: ``500ms``, ``30s``, ``5m``, ``2h``, ``7d``, ``1y``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

UNIT_SECONDS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}

MAX_DURATION = timedelta(days=100 * 365)
"""The longest duration accepted anywhere (100y): anything longer is surely a mistake, and
every time computed from a duration (now + every, a deadline) stays within the calendar."""

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+$")


def parse_duration(text: str) -> timedelta:
    """Given ``"90s"``, ``"1h30m"`` or ``"500ms"``, return the timedelta; raise ValueError.

    Units: ms, s, m (minutes), h, d, w, y (365 days). Parts may be combined, largest first
    or not; a bare number is rejected because its unit would be a guess, and so is a
    duration longer than ``MAX_DURATION``.
    """
    compact = text.strip().replace(" ", "")
    if not compact or not _WHOLE.match(compact):
        raise ValueError(
            f"{text!r} is not a duration; expected a number and a unit such as "
            "500ms, 30s, 5m, 2h, 7d, 1y (parts may be combined: 1h30m)"
        )
    seconds = sum(float(number) * UNIT_SECONDS[unit] for number, unit in _PART.findall(compact))
    # Compared as a float first: timedelta itself overflows far below what a float holds.
    if not seconds <= MAX_DURATION.total_seconds():
        raise ValueError(_too_long(text))
    return timedelta(seconds=seconds)


def _too_long(text: str) -> str:
    shown = text if len(text) <= 40 else f"{text[:40]}..."
    return f"{shown!r} is longer than 100y, the longest duration upkeep accepts"


def format_duration(value: timedelta) -> str:
    """Given a timedelta, return the shortest exact literal that parses back to it."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms % 1000:
        return f"{total_ms}ms"
    seconds = total_ms // 1000
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _coerce(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("a duration needs a unit, such as 30s or 5m")
    if isinstance(value, int | float):
        raise ValueError(f"{value!r} has no unit; write it as {value}s, {value}m, ...")
    return value


def _bounded(value: timedelta) -> timedelta:
    # A timedelta given as such (not as text) is held to the same bounds.
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    if value > MAX_DURATION:
        raise ValueError(_too_long(format_duration(value)))
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    AfterValidator(_bounded),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A config field holding a duration literal; parses to a timedelta."""
