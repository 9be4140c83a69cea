"""How upkeep writes sizes, spans of time and errors for people: one form each, so a table,
a message and a notification say 1536 bytes, three hours or a driver's error the same way.

Sizes are in binary (IEC) units: ``B``, ``KiB``, ``MiB``, ``GiB``, ``TiB``. A measured span
(an age, an outage, a restore's duration) is written by ``human_duration`` (``3h 20m``); a
duration that echoes a config setting (a timeout, a window) is written by
``upkeep.core.durations.format_duration`` (``3h20m``), the form the config reads back.
"""

from __future__ import annotations

import math
from datetime import timedelta
from fractions import Fraction

SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
"""Each unit 1024 times the one before it; a size past 1024 TiB stays in TiB."""
DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
"""The units of ``human_duration``, largest first, with their length in seconds."""


def format_bytes(count: float) -> str:
    """Given a number of bytes, return it for people in the largest binary unit that keeps
    it below 1024: ``0 B``, ``1023 B``, ``1 KiB``, ``1.5 KiB``, ``3.2 GiB``.

    Below 1 KiB the count is whole bytes; from 1 KiB on it has one decimal, left out when
    it is 0. A negative count (a shrinkage) is written with a minus sign.
    """
    value = abs(float(count))
    unit = 0
    precision = 0
    # Compared as it will be shown, so 1048575 bytes reads "1 MiB", not "1024 KiB".
    while unit < len(SIZE_UNITS) - 1 and round(value, precision) >= 1024:
        value /= 1024
        unit += 1
        precision = 1
    shown = f"{value:.{precision}f}".removesuffix(".0")
    sign = "-" if count < 0 and shown != "0" else ""
    return f"{sign}{shown} {SIZE_UNITS[unit]}"


def human_duration(span: timedelta | float) -> str:
    """Given a span (a timedelta or seconds), return it for people: ``0s``, ``350ms``,
    ``59s``, ``12m 34s``, ``3h 20m``, ``2d 4h``, ``400d``.

    Below a second it is whole milliseconds. From a second on it is rounded to whole
    seconds and written in its two largest units, the second one left out when it is 0
    (``1h``, ``1d 5m`` reads ``1d``: beside a day, minutes do not matter). A negative span
    (the clock stepped back) reads ``0s``.
    """
    seconds = span.total_seconds() if isinstance(span, timedelta) else float(span)
    milliseconds = int(seconds * 1000 + 0.5) if seconds > 0 else 0
    if milliseconds < 1000:
        return f"{milliseconds}ms" if milliseconds else "0s"
    whole = int(seconds + 0.5)
    for index, (unit, size) in enumerate(DURATION_UNITS):
        if whole < size:
            continue
        count, rest = divmod(whole, size)
        if unit == "s":
            return f"{count}s"
        smaller, smaller_size = DURATION_UNITS[index + 1]
        remainder = rest // smaller_size
        return f"{count}{unit} {remainder}{smaller}" if remainder else f"{count}{unit}"
    raise AssertionError("unreachable: a whole second or more matches the unit of seconds")


def one_line(text: str | BaseException, limit: int | None = None) -> str:
    """Given a text or an exception, return it on one line: every run of white space (a
    newline, the indented hint lines libpq adds) becomes one space, and the ends are
    trimmed. An exception with no text gives its class name, so an error never reads as
    nothing. Given a limit, a longer result is cut to ``limit`` characters, the last of
    them ``…``; raise ValueError if the limit is below 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"a limit of {limit} characters leaves no room for the text")
    folded = " ".join(str(text).split())
    if not folded and isinstance(text, BaseException):
        folded = type(text).__name__
    if limit is not None and len(folded) > limit:
        return folded[: limit - 1] + "…"
    return folded


PERCENT_DECIMALS = 3


def format_percent(value: float | None) -> str:
    """Given a percentage in [0, 100] (or None), return it with exactly
    ``PERCENT_DECIMALS`` decimals, truncated rather than rounded, or ``-`` for None.

    Truncation is done on the float's exact value (not on ``value * 1000``, which can
    itself round up), so anything below 100 reads below ``100.000%``: an incident stays
    visible however short it was. Raise ValueError on a value outside [0, 100] or NaN.
    """
    if value is None:
        return "-"
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"a percentage must be within [0, 100], not {value!r}")
    scale = 10**PERCENT_DECIMALS
    units = math.floor(Fraction(value) * scale)
    return f"{units // scale}.{units % scale:0{PERCENT_DECIMALS}d}%"
