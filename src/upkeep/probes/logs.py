"""Log files: how many recent lines match an error pattern, and how much space logs take.

The errors probe reads every line's own timestamp rather than trusting file times, so a
log that is appended to all day does not count the morning's errors in the evening's
one-hour window. How a line's time is read is in ``upkeep.analysis.timestamps``.
"""

from __future__ import annotations

import gzip
import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from io import BufferedIOBase
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from upkeep.analysis.timestamps import parse_timestamp
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

MAX_LINE_BYTES = 1024 * 1024
"""A longer line is read in pieces (the later pieces count as continuation lines), so one
runaway line cannot take all memory."""
DEADLINE_CHECK_LINES = 4096
"""How many lines are read between looks at the clock."""


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
