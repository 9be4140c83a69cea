"""What the API's newer routes read from a query or path beyond ``upkeep.web.inputs``:
config names, backup ids, a ``since`` and ``k=v`` filters, read as the commands read them
(``upkeep.core.moments``), each bounded so a bad one is a 422 naming the field."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated

from fastapi import Path, Query

from upkeep.web.inputs import invalid

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""How the config spells a name (``upkeep.config.models.NAME_PATTERN``)."""
MAX_FILTERS = 32
"""A request filters on at most this many ``k=v`` pairs."""
MAX_FILTER_CHARS = 400
"""A ``k=v`` pair is at most this long."""

CheckName = Annotated[
    str, Path(pattern=NAME_PATTERN, max_length=200, description="a configured check's name")
]
RunbookPathName = Annotated[
    str, Path(pattern=NAME_PATTERN, max_length=200, description="a configured runbook's name")
]
SourceName = Annotated[
    str,
    Path(
        pattern=NAME_PATTERN,
        max_length=200,
        description="a backup source (`backups.sources`), or for a drill the target it backs up",
    ),
]
BackupId = Annotated[
    str,
    Path(
        pattern=r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$",
        max_length=24,
        description="a backup's id, as `GET /api/backups` lists it (20260301T020000Z-a1b2c3)",
    ),
]
Since = Annotated[
    str,
    Query(
        min_length=1,
        max_length=40,
        description="how far back: a duration (24h, 7d) or an ISO time (2026-03-01T00:00, "
        "in the config's timezone unless it names one)",
    ),
]
Filters = Annotated[
    list[str],
    Query(
        alias="label",
        description="`k=v`, repeatable: only what carries every such label",
    ),
]


def period_start(text: str, zone: tzinfo, now: datetime, field: str = "since") -> datetime:
    """Given a ``since`` as a client sent it, the config's timezone and now, return when
    the span starts; raise RequestValidationError (a 422) if it is neither a duration nor an ISO time
    of the years the commands accept (the answer does not quote the input)."""
    from upkeep.core.moments import FIRST_YEAR, LAST_YEAR, since_start

    try:
        return since_start(text, zone, now)
    except (ValueError, OverflowError):
        raise invalid(
            ("query", field),
            f"{field} must be a duration (24h, 7d) or an ISO time of the years "
            f"{FIRST_YEAR} to {LAST_YEAR} (2026-03-01T00:00)",
        ) from None


def label_filters(pairs: list[str], field: str = "label") -> dict[str, str]:
    """Given ``k=v`` texts from a query, return them as a mapping; raise RequestValidationError (a 422)
    if there are more than ``MAX_FILTERS``, one is longer than ``MAX_FILTER_CHARS``, holds
    a control character, or has no ``=`` or an empty key."""
    if len(pairs) > MAX_FILTERS:
        raise invalid(("query", field), f"at most {MAX_FILTERS} {field} filters")
    found: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if (
            len(pair) > MAX_FILTER_CHARS
            or not separator
            or not key.strip()
            or not pair.isprintable()
        ):
            raise invalid(
                ("query", field),
                f"each {field} is key=value (e.g. env=prod), one line, at most "
                f"{MAX_FILTER_CHARS} characters",
            )
        found[key.strip()] = value.strip()
    return found
