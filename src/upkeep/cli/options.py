"""Typed parsers of command-line values: every option or argument that is parsed goes
through one of these, so bad input is refused before anything is loaded or changed.

Each is given to typer as ``parser=``; it raises ``typer.BadParameter`` with what is
expected, which click prints as ``Invalid value for '--start': …`` (naming the option)
and exits with 2. Values that a command reads again later (a duration, a time) are
returned as written once they are known to parse, so each command keeps one reading.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

import typer

from upkeep.core.moments import since_start, start_time

MAX_ID = 2**63 - 1
"""The largest id a store holds (a signed 64-bit integer in SQLite and PostgreSQL)."""

OUTBOX_STATUSES = ("pending", "sending", "sent", "dead", "muted")
"""The statuses ``notify outbox --status`` takes: the store's (a test holds them equal; the
store is not imported here, so ``--help`` stays fast)."""

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


def duration_text(value: str) -> str:
    """Given a duration as typed (``30m``, ``2h``), return it; raise BadParameter if it is
    not one."""
    from upkeep.core.durations import parse_duration

    try:
        parse_duration(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def _time_checked(value: str, read: Callable[[str, tzinfo, datetime], datetime]) -> str:
    """Given option text and the reader its command uses, return the text if it reads
    (in UTC: the config's zone is not known yet, and the range check does not need it);
    raise BadParameter with the reader's reason otherwise."""
    try:
        read(value, UTC, datetime.now(UTC))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def since_text(value: str) -> str:
    """Given how far back (``24h``, ``7d``) or an ISO time from ``FIRST_YEAR`` to
    ``LAST_YEAR``, return it; raise BadParameter otherwise."""
    return _time_checked(value, since_start)


def moment_text(value: str) -> str:
    """Given ``now`` or an ISO time (the config's timezone when it names none) between
    ``FIRST_YEAR`` and ``LAST_YEAR``, return it; raise BadParameter otherwise."""
    return _time_checked(value, start_time)


def regex_text(value: str) -> str:
    """Given a regular expression, return it; raise BadParameter saying where it is wrong."""
    try:
        # Compiled as the analyzer compiles it (bytes), so what passes here runs there.
        re.compile(value.encode())
    except re.error as error:
        where = f" at position {error.pos}" if error.pos is not None else ""
        raise typer.BadParameter(
            f"{value!r} is not a regular expression: {error.msg}{where}"
        ) from None
    return value


def pair_text(value: str) -> str:
    """Given ``key=value``, return it; raise BadParameter if it has no ``=`` or no key."""
    key, separator, _rest = value.partition("=")
    if not separator or not key.strip():
        raise typer.BadParameter(f"expected key=value (e.g. env=prod), not {value!r}")
    return value


def record_id(value: str) -> int:
    """Given an id as typed, return it; raise BadParameter unless it is a whole number from
    1 to ``MAX_ID``."""
    try:
        number = int(value)
    except ValueError:
        raise typer.BadParameter(f"expected an id (a whole number), not {value!r}") from None
    if not 1 <= number <= MAX_ID:
        raise typer.BadParameter(f"no id is {number}; ids are whole numbers from 1")
    return number


def count(value: str) -> int:
    """Given a count as typed (``--limit``, ``--top``), return it; raise BadParameter unless
    it is a whole number from 1 to 1,000,000."""
    try:
        number = int(value)
    except ValueError:
        raise typer.BadParameter(f"expected a whole number, not {value!r}") from None
    if not 1 <= number <= 1_000_000:
        raise typer.BadParameter(f"expected a number from 1 to 1,000,000, not {number}")
    return number


MAX_RETRIES = 100
"""The most retries ``upkeep ping --retries`` takes (their waits double up to a minute)."""


def retries(value: str) -> int:
    """Given a number of retries as typed, return it; raise BadParameter unless it is a
    whole number from 0 to ``MAX_RETRIES``."""
    try:
        number = int(value)
    except ValueError:
        raise typer.BadParameter(f"expected a whole number, not {value!r}") from None
    if not 0 <= number <= MAX_RETRIES:
        raise typer.BadParameter(f"expected a number from 0 to {MAX_RETRIES}, not {number}")
    return number


def host_port(value: str) -> str:
    """Given ``host:port``, return it; raise BadParameter if it is not one (port 1 to 65535)."""
    match = _HOST_PORT.match(value)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise typer.BadParameter(
            f"expected host:port such as 127.0.0.1:9464 (port 1 to 65535), not {value!r}"
        )
    return value


def one_of(*choices: str) -> Callable[[str], str]:
    """Given the accepted words, return a parser that returns the word typed; it raises
    BadParameter naming every choice for anything else."""

    def parse(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"expected one of {', '.join(choices)}, not {value!r}")
        return value

    return parse
