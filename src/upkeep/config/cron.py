"""Cron expressions as the config accepts them: 5 fields, ``@daily``-style aliases,
``DOW#N`` (nth weekday of the month) and ``L`` (last day / last weekday).

This module validates the text; the scheduler computes firings from the same grammar.
"""

from __future__ import annotations

import re

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


def validate_cron(expression: str) -> None:
    """Given a schedule, return if it is a valid cron expression; raise ValueError saying why."""
    fields = expand_alias(expression).split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} has {len(fields)} fields; a cron schedule has 5 "
            "(minute hour day-of-month month day-of-week) or is an alias such as @daily"
        )
    for text, (field, low, high, names) in zip(fields, _FIELDS, strict=True):
        for item in text.split(","):
            if field == "day of month" and item.upper() in ("L", "LW"):
                continue
            if field == "day of week":
                special = re.fullmatch(r"([A-Za-z0-9]+)#([1-5])", item) or re.fullmatch(
                    r"([A-Za-z0-9]+)L", item
                )
                if special is not None:
                    _value(special.group(1), low, high, names, field)
                    continue
            match = _ITEM.match(item)
            if not match:
                raise ValueError(f"{item!r} is not valid in the {field} field of {expression!r}")
            span = match.group(1)
            if span != "*":
                bounds = [_value(part, low, high, names, field) for part in span.split("-")]
                if len(bounds) == 2 and bounds[0] > bounds[1]:
                    raise ValueError(f"range {span!r} runs backwards in the {field} field")
            if match.group(2) is not None and int(match.group(2)) == 0:
                raise ValueError(f"step 0 in the {field} field of {expression!r}")
