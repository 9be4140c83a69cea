"""Log files: how many recent lines match an error pattern, and how much space logs take.

The errors probe reads every line's own timestamp rather than trusting file times, so a
log that is appended to all day does not count the morning's errors in the evening's
one-hour window. Timestamps understood (first match wins, in this order):

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

import gzip
import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from io import BufferedIOBase
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from upkeep.config.durations import Duration, format_duration
from upkeep.io.threads import run_blocking
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    StrictModel,
    TargetBase,
    TargetUnreachable,
    metrics_from,
)

SCAN_PREFIX_CHARS = 160
"""Only this many leading characters of a line are searched for a timestamp, so a date
quoted in a message body is not mistaken for the line's own time."""
MAX_LINE_BYTES = 1024 * 1024
"""A longer line is read in pieces (the later pieces count as continuation lines), so one
runaway line cannot take all memory."""
SYSLOG_FUTURE_TOLERANCE = timedelta(days=1)
"""A year-less syslog date this far ahead of now is last year's; less is clock skew or a
sender in another time zone."""
DEADLINE_CHECK_LINES = 4096
"""How many lines are read between looks at the clock."""

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


class LogsTarget(TargetBase):
    """A log file, or a directory whose files matching ``pattern`` are the logs.

    ``pattern`` is a glob relative to the directory (``*.log``, ``app-*.log*``,
    ``**/*.log``); it is ignored when ``path`` is a file. Files ending in ``.gz`` that
    the glob matches are read through gzip. A relative ``path`` is relative to the config
    file's directory.
    """

    path_fields: ClassVar[tuple[str, ...]] = ("path",)

    kind: Literal["logs"] = "logs"
    path: Annotated[str, Field(min_length=1)]
    pattern: Annotated[str, Field(min_length=1)] = "*.log"

    @field_validator("pattern")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/"):
            raise ValueError(
                f"{value!r} is absolute; the pattern is a glob relative to path, such as *.log"
            )
        return value


class ErrorsParams(StrictModel):
    """Params of the errors probe: the regular expression and how far back to look."""

    pattern: Annotated[str, Field(min_length=1)] = "ERROR|FATAL|CRITICAL"
    window: Duration = timedelta(hours=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"{value!r} is not a valid regular expression: {error}") from error
        return value

    @field_validator("window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the window must be longer than zero")
        return value


# ---------------------------------------------------------------------------------------
# Timestamps (pure functions)


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
    import orjson

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


def count_recent_matches(
    lines: Iterable[str],
    pattern: re.Pattern[str],
    *,
    since: datetime,
    now: datetime,
    initial: datetime,
    local_tz: tzinfo | None = None,
) -> int:
    """Given lines in file order, return how many match ``pattern`` and are not before ``since``.

    Each line's time is its own timestamp, else the previous line's (continuations of a
    multi-line record belong to it), else ``initial`` (the file's modification time).
    Lines stamped after ``now`` still count: they are recent, whatever the sender's clock.
    """
    current = initial
    count = 0
    for line in lines:
        stamp = parse_timestamp(line, now=now, local_tz=local_tz)
        if stamp is not None:
            current = stamp
        if current >= since and pattern.search(line) is not None:
            count += 1
    return count


# ---------------------------------------------------------------------------------------
# Files (blocking; run in a worker thread)


class _DeadlineExceeded(Exception):  # noqa: N818 - internal signal, never leaves this module
    """The scan ran past the check's deadline."""


@dataclass(frozen=True)
class LogFile:
    """One file a logs target covers, as found when listing it."""

    path: Path
    size: int
    mtime: datetime


def list_log_files(path: str, pattern: str) -> list[LogFile]:
    """Given a target's path and glob, return its regular files, sorted by path.

    Raise TargetUnreachable if the path does not exist, is neither a file nor a
    directory, or cannot be listed. Files that vanish while listing (rotation) are left out.
    """
    root = Path(path)
    try:
        if root.is_file():
            candidates: Iterable[Path] = [root]
        elif root.is_dir():
            # glob skips directories it may not read without a word; an empty answer
            # would then pass for "no errors", so refuse it here instead.
            if not os.access(root, os.R_OK | os.X_OK):
                raise TargetUnreachable(f"log path {path!r} cannot be listed: permission denied")
            candidates = sorted(root.glob(pattern))
        elif root.exists():
            raise TargetUnreachable(f"log path {path!r} is neither a file nor a directory")
        else:
            raise TargetUnreachable(f"log path {path!r} does not exist")
    except PermissionError as error:
        raise TargetUnreachable(f"log path {path!r} cannot be listed: permission denied") from error
    found: list[LogFile] = []
    for candidate in candidates:
        try:
            info = candidate.stat()
        except FileNotFoundError:
            continue
        except PermissionError as error:
            raise TargetUnreachable(f"log file {str(candidate)!r} cannot be read") from error
        if not candidate.is_file():
            continue
        found.append(LogFile(candidate, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC)))
    return found


def _open_log(path: Path) -> BufferedIOBase:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _decoded_lines(handle: BufferedIOBase, deadline: float) -> Iterator[str]:
    for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES), b"")):
        if number % DEADLINE_CHECK_LINES == 0 and time.monotonic() > deadline:
            raise _DeadlineExceeded
        yield raw.decode("utf-8", "replace").rstrip("\r\n")


@dataclass(frozen=True)
class ScanResult:
    """What scanning a target's files found."""

    count: int
    files_total: int
    files_read: int
    problems: tuple[str, ...]


def scan_files(
    files: list[LogFile],
    pattern: re.Pattern[str],
    *,
    since: datetime,
    now: datetime,
    deadline: float,
    local_tz: tzinfo | None = None,
) -> ScanResult:
    """Given files, return the count of matching lines not older than ``since``.

    Files last modified before ``since`` are skipped unread: none of their lines can be
    newer. A damaged or truncated gzip archive contributes the lines before the damage and
    is named in ``problems``. Raise TargetUnreachable if a file may not be read, and
    ``_DeadlineExceeded`` once ``deadline`` (``time.monotonic``) has passed.
    """
    count = 0
    read = 0
    problems: list[str] = []
    for log in files:
        if log.mtime < since:
            continue
        try:
            with _open_log(log.path) as handle:
                read += 1
                try:
                    count += count_recent_matches(
                        _decoded_lines(handle, deadline),
                        pattern,
                        since=since,
                        now=now,
                        initial=log.mtime,
                        local_tz=local_tz,
                    )
                except (EOFError, gzip.BadGzipFile, zlib.error) as error:
                    problems.append(f"{log.path.name}: {error}")
        except FileNotFoundError:
            continue  # Rotated away between listing and reading.
        except PermissionError as error:
            raise TargetUnreachable(f"log file {str(log.path)!r} cannot be read") from error
    return ScanResult(count, len(files), read, tuple(problems))


# ---------------------------------------------------------------------------------------
# Probes


class ErrorsProbe(Probe[LogsTarget, ErrorsParams]):
    """Count recent log lines that match an error pattern."""

    target_kind: ClassVar[str] = "logs"
    name: ClassVar[str] = "errors"
    summary: ClassVar[str] = "Lines matching a pattern within a time window, by line timestamp."
    Params: ClassVar[type[StrictModel]] = ErrorsParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("count", "number", "matching lines whose timestamp is within the window"),
        MetricSpec("rate_per_min", "number", "count divided by the window in minutes"),
    )

    async def run(
        self, target: LogsTarget, params: ErrorsParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a logs target, return count and rate_per_min of matching lines in the window.

        Raise TargetUnreachable if the path is missing or unreadable, or if reading takes
        longer than the check's timeout.
        """
        pattern = re.compile(params.pattern)
        now = datetime.now(UTC)
        since = now - params.window
        deadline = time.monotonic() + context.timeout_s

        def scan() -> ScanResult:
            files = list_log_files(target.path, target.pattern)
            return scan_files(files, pattern, since=since, now=now, deadline=deadline)

        try:
            # The scan watches the deadline itself; the outer limit only covers a read
            # that blocks (a hung network file system) between two of its looks, and
            # abandons that thread rather than waiting for it (see run_blocking).
            result = await run_blocking(scan, timeout_s=context.timeout_s + 1.0)
        except (TimeoutError, _DeadlineExceeded) as error:
            raise TargetUnreachable(
                f"reading {target.path} took longer than {context.timeout_s:g}s"
            ) from error
        minutes = params.window.total_seconds() / 60
        message = (
            f"{result.count} lines matching /{params.pattern}/ in the last "
            f"{format_duration(params.window)} ({result.files_read} of "
            f"{result.files_total} files recent enough to read)"
        )
        if result.problems:
            message += "; " + "; ".join(result.problems)
        return ProbeOutcome(
            metrics_from({"count": result.count, "rate_per_min": result.count / minutes}),
            message=message,
        )


class SizeProbe(Probe[LogsTarget, StrictModel]):
    """Total size and number of the target's log files."""

    target_kind: ClassVar[str] = "logs"
    name: ClassVar[str] = "size"
    summary: ClassVar[str] = "Total bytes and number of log files."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("bytes", "number", "total size of the matching files (compressed as stored)"),
        MetricSpec("files", "number", "number of matching files"),
    )

    async def run(
        self, target: LogsTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a logs target, return bytes and files; raise TargetUnreachable if missing."""
        try:
            files = await run_blocking(
                list_log_files, target.path, target.pattern, timeout_s=context.timeout_s
            )
        except TimeoutError as error:
            raise TargetUnreachable(
                f"listing {target.path} took longer than {context.timeout_s:g}s"
            ) from error
        total = sum(log.size for log in files)
        return ProbeOutcome(
            {"bytes": total, "files": len(files)},
            message=f"{len(files)} files, {total} bytes",
        )
