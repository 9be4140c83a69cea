"""Log files: errors, levels, security events and request figures within a window, and
how much space logs take.

Every probe reads each line's own timestamp rather than trusting file times, so a log
that is appended to all day does not count the morning's errors in the evening's one-hour
window (how a line's time is read: ``upkeep.analysis.timestamps``). ``errors`` reads the
recent files whole on every run; ``levels``, ``security`` and ``access`` go through the
analyzer (``upkeep.analysis.logs``, as ``upkeep logs analyze``) and a tail that reads only
what was appended since their last run (``upkeep.analysis.tail``).
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import re
import stat
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Annotated, ClassVar, Literal

import zstandard
from pydantic import Field, field_validator

from upkeep.analysis.logs import Analysis, EndpointFigures, Format, open_log
from upkeep.analysis.tail import TAILS, TailReport
from upkeep.analysis.timestamps import parse_timestamp
from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import StrictModel
from upkeep.core.results import MetricValue
from upkeep.core.text import format_bytes
from upkeep.io.safefs import Identity, UnsafeFileError
from upkeep.io.threads import run_blocking
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
    metrics_from,
)

MAX_LINE_BYTES = 1024 * 1024
"""A longer line is read in pieces (the later pieces count as continuation lines), so one
runaway line cannot take all memory."""
DEADLINE_CHECK_LINES = 4096
"""How many lines are read between looks at the clock."""


MAX_PATTERN_LENGTH = 4096
"""The longest regular expression a probe takes, in characters (compiling grows with it)."""


def regex_problem(pattern: str) -> str | None:
    """Given a regular expression from the config, return why it cannot be used, or None.

    Beside syntax errors, ``re`` raises OverflowError for a repetition count past its
    limit (``a{4294967295}``) and RecursionError for parentheses nested a few hundred
    deep; both are answers about the pattern, not failures of ours.
    """
    shown = pattern if len(pattern) <= 60 else f"{pattern[:60]}..."
    if len(pattern) > MAX_PATTERN_LENGTH:
        return (
            f"a pattern is at most {MAX_PATTERN_LENGTH:,} characters; this one has {len(pattern):,}"
        )
    try:
        re.compile(pattern)
    except re.error as error:
        return f"{shown!r} is not a valid regular expression: {error}"
    except OverflowError as error:
        return f"{shown!r} is not a usable regular expression: {error}"
    except RecursionError:
        return f"{shown!r} nests its groups too deeply"
    return None


class LogsTarget(TargetBase):
    """A log file, or a directory whose files matching ``pattern`` are the logs.

    ``pattern`` is a glob relative to the directory (``*.log``, ``app-*.log*``,
    ``**/*.log``); it is ignored when ``path`` is a file. Files ending in ``.gz`` or
    ``.zst`` that the glob matches are read through gzip or zstd. A relative ``path`` is relative to the config
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
        if problem := regex_problem(value):
            raise ValueError(problem)
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
    Empty lines are no lines (a rotation's filler among them): they never match.
    """
    current = initial
    count = 0
    for line in lines:
        if not line:
            continue
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
    below: Path | None = None
    """The target's directory the walk found it in (None: the target is this file): it is
    opened through that directory, never through a link below it (``open_log``)."""
    identity: Identity | None = None
    """The inode the walk saw: a file swapped since is not read."""


def target_directory(files: list[LogFile]) -> Path | None:
    """Return the directory a target's files were found in (None for a one-file target)."""
    return files[0].below if files else None


def list_log_files(path: str, pattern: str) -> list[LogFile]:
    """Given a target's path and glob, return its regular files, sorted by path.

    The path is the operator's and is followed as written; below it, nothing is followed
    through a link and no other mount is entered (``upkeep.io.safefs.walk_files``): a link
    planted in a log directory cannot make a probe read another file.
    Raise TargetUnreachable if the path does not exist, is neither a file nor a
    directory, or cannot be listed. Files that vanish while listing (rotation) are left out.
    """
    from upkeep.io.safefs import Directory, glob_walk

    root = Path(path)
    try:
        info = os.stat(root)
        if stat.S_ISREG(info.st_mode):
            return [LogFile(root, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))]
        if not stat.S_ISDIR(info.st_mode):
            raise TargetUnreachable(f"log path {path!r} is neither a file nor a directory")
        with Directory.open(root) as directory:
            walk = glob_walk(directory, pattern, skip_dirs=frozenset({".upkeep-rotate"}))
    except FileNotFoundError:
        raise TargetUnreachable(f"log path {path!r} does not exist") from None
    except PermissionError as error:
        raise TargetUnreachable(f"log path {path!r} cannot be listed: permission denied") from error
    except OSError as error:
        raise TargetUnreachable(f"log path {path!r} cannot be listed: {error.strerror}") from error
    return [
        LogFile(
            root / found.relative,
            found.info.st_size,
            datetime.fromtimestamp(found.info.st_mtime, UTC),
            below=root,
            identity=found.identity,
        )
        for found in walk.files
    ]


def _decoded_lines(handle: IO[bytes], deadline: float) -> Iterator[str]:
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
    newer. A damaged or truncated gzip or zstd archive contributes the lines before the damage and
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
            with open_log(log.path, below=log.below, expect=log.identity) as handle:
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
                except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as error:
                    problems.append(f"{log.path.name}: {error}")
        except FileNotFoundError:
            continue  # Rotated away between listing and reading.
        except UnsafeFileError:
            continue  # Swapped (or a directory on its way) since the listing: never read.
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
            message=f"{len(files)} files, {format_bytes(total)}",
        )


# ---------------------------------------------------------------------------------------
# Window probes on the analyzer (levels, security events, access figures)


class WindowParams(StrictModel):
    """Params shared by the analyzer probes: the window and the log format."""

    window: Duration = Field(default=timedelta(minutes=5), description="how far back to look")
    format: Format = Field(default="auto", description="auto, combined, json or plain")

    @field_validator("window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("the window must be at least 1m (lines are counted per minute)")
        return value


class LevelsParams(WindowParams):
    """Params of the levels probe: optionally, one more pattern to count."""

    window: Duration = Field(default=timedelta(hours=1), description="how far back to look")
    pattern: str | None = Field(default=None, description="a regular expression to count too")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None and (problem := regex_problem(value)):
            raise ValueError(problem)
        return value


class AccessParams(WindowParams):
    """Params of the access probe: optionally, only the endpoints a glob matches."""

    endpoint: str | None = Field(
        default=None, description="glob on the endpoint (ids as :id): /api/orders*"
    )


async def _window(
    probe: str,
    target: LogsTarget,
    params: WindowParams,
    patterns: tuple[str, ...],
    context: ProbeContext,
) -> tuple[Analysis, TailReport]:
    """Refresh this check's tail of the target and return the window's sum; raise
    TargetUnreachable if the path is missing or unreadable, or reading runs out of time."""
    key = (probe, target.path, target.pattern, params.model_dump_json())
    tail = TAILS.get(key, params.format, patterns)
    now = datetime.now(UTC)
    deadline = time.monotonic() + context.timeout_s

    def refresh() -> TailReport:
        # The window is summed in this worker thread too, under the tail's lock: the event
        # loop never waits on a lock or merges a window's response times.
        files = list_log_files(target.path, target.pattern)
        try:
            return tail.refresh(
                [log.path for log in files],
                horizon=params.window,
                now=now,
                deadline=deadline,
                below=target_directory(files),
            )
        except PermissionError as error:
            raise TargetUnreachable(str(error)) from error

    try:
        report = await run_blocking(refresh, timeout_s=context.timeout_s + 1.0)
    except TimeoutError as error:
        raise TargetUnreachable(
            f"reading {target.path} took longer than {context.timeout_s:g}s"
        ) from error
    if not report.complete:
        # What was read is kept: the next run carries on from there.
        raise TargetUnreachable(
            f"{target.path}: {report.bytes_read} bytes read within {context.timeout_s:g}s, "
            "not yet caught up; the next run continues where this one stopped"
        )
    return report.found, report


class LevelsProbe(Probe[LogsTarget, LevelsParams]):
    """Lines per level (and one pattern) within a window, read incrementally."""

    target_kind: ClassVar[str] = "logs"
    name: ClassVar[str] = "levels"
    summary: ClassVar[str] = (
        "Lines by level (CRITICAL, ERROR, WARN) and matching a pattern within a window, in "
        "plain, JSON and access logs; each run reads only what was appended."
    )
    Params: ClassVar[type[StrictModel]] = LevelsParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("lines", "number", "lines stamped within the window (to the minute)"),
        MetricSpec("critical", "number", "CRITICAL and FATAL lines"),
        MetricSpec("errors", "number", "ERROR lines, CRITICAL included"),
        MetricSpec("warnings", "number", "WARN and WARNING lines"),
        MetricSpec("matches", "number", "lines matching pattern (0 without one)"),
        MetricSpec("errors_per_min", "number", "errors divided by the window in minutes"),
    )

    async def run(
        self, target: LogsTarget, params: LevelsParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a logs target, return the level counts of the window."""
        patterns = (params.pattern,) if params.pattern else ()
        found, report = await _window(self.name, target, params, patterns, context)
        critical = found.levels["CRITICAL"]
        errors = found.levels["ERROR"] + critical
        matches = found.patterns[params.pattern] if params.pattern else 0
        message = (
            f"{errors} errors ({critical} critical), {found.levels['WARN']} warnings in "
            f"{found.lines} lines of the last {format_duration(params.window)} "
            f"({report.files} files)"
        )
        if params.pattern:
            message += f"; {matches} matching /{params.pattern}/"
        return ProbeOutcome(
            metrics_from(
                {
                    "lines": found.lines,
                    "critical": critical,
                    "errors": errors,
                    "warnings": found.levels["WARN"],
                    "matches": matches,
                    "errors_per_min": errors / (params.window.total_seconds() / 60),
                }
            ),
            message=message,
        )


FAILED_LOGIN_KINDS = frozenset(
    {"Failed password", "authentication failure", "Invalid user", "AUTH_FAILED", "Failed publickey"}
)


class SecurityProbe(Probe[LogsTarget, WindowParams]):
    """Security events within a window: failed logins, break-in attempts, denied requests."""

    target_kind: ClassVar[str] = "logs"
    name: ClassVar[str] = "security"
    summary: ClassVar[str] = (
        "Security events within a window: failed logins (sshd, PAM, AUTH_FAILED), break-in "
        "attempts, and 401/403 answers in access logs."
    )
    Params: ClassVar[type[StrictModel]] = WindowParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("events", "number", "all security events in the window (to the minute)"),
        MetricSpec("failed_logins", "number", "failed password/key logins, invalid users"),
        MetricSpec("denied_requests", "number", "HTTP 401 and 403 answers"),
    )

    async def run(
        self, target: LogsTarget, params: WindowParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a logs target, return the security events of the window, by kind."""
        found, _ = await _window(self.name, target, params, (), context)
        # The analyzer names what it matched as written; case differs between daemons.
        by_kind = {kind.casefold(): count for kind, count in found.security.items()}
        failed = sum(by_kind.get(kind.casefold(), 0) for kind in FAILED_LOGIN_KINDS)
        denied = found.security["HTTP 401"] + found.security["HTTP 403"]
        total = sum(found.security.values())
        top = ", ".join(f"{kind} {count}" for kind, count in found.security.most_common(4))
        return ProbeOutcome(
            {"events": total, "failed_logins": failed, "denied_requests": denied},
            message=(
                f"{total} security events in the last {format_duration(params.window)}"
                + (f": {top}" if top else "")
            ),
        )


class AccessProbe(Probe[LogsTarget, AccessParams]):
    """Requests, 5xx rate and response-time percentiles of access logs within a window."""

    target_kind: ClassVar[str] = "logs"
    name: ClassVar[str] = "access"
    summary: ClassVar[str] = (
        "Access logs (nginx/Apache combined with a request time, or JSON): requests, 5xx "
        "rate and p50/p95/p99 response time within a window, for all or some endpoints."
    )
    Params: ClassVar[type[StrictModel]] = AccessParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("requests", "number", "requests in the window (to the minute)"),
        MetricSpec("requests_per_min", "number", "requests divided by the window in minutes"),
        MetricSpec("errors", "number", "5xx answers"),
        MetricSpec("error_rate_percent", "number", "5xx answers as a percentage of requests"),
        MetricSpec("p50_ms", "number", "median response time (absent if none are logged)"),
        MetricSpec("p95_ms", "number", "95th percentile response time"),
        MetricSpec("p99_ms", "number", "99th percentile response time"),
    )

    async def run(
        self, target: LogsTarget, params: AccessParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a logs target, return the window's request figures; the percentiles are 0
        without requests and absent when requests carry no response time."""
        found, _ = await _window(self.name, target, params, (), context)
        total = EndpointFigures()
        slowest: tuple[float, str] | None = None
        for name, figures in found.endpoints.items():
            if params.endpoint is not None and not fnmatch.fnmatchcase(name, params.endpoint):
                continue
            total.requests += figures.requests
            total.errors += figures.errors
            total.times_ms.extend(figures.times_ms)
            p95 = figures.summary()["p95_ms"]
            if p95 is not None and figures.requests >= 10 and (slowest is None or p95 > slowest[0]):
                slowest = (p95, name)
        summary = total.summary()
        values: dict[str, MetricValue] = {
            "requests": total.requests,
            "requests_per_min": total.requests / (params.window.total_seconds() / 60),
            "errors": total.errors,
            "error_rate_percent": summary["error_rate_percent"],
        }
        for name in ("p50_ms", "p95_ms", "p99_ms"):
            if total.requests == 0:
                values[name] = 0.0
            elif summary[name] is not None:
                values[name] = summary[name]
        scope = f" to {params.endpoint}" if params.endpoint else ""
        message = (
            f"{total.requests} requests{scope} in the last {format_duration(params.window)}, "
            f"5xx {summary['error_rate_percent']:g} %"
        )
        if summary["p95_ms"] is not None:
            message += f", p95 {summary['p95_ms']:g} ms"
        elif total.requests:
            message += ", no response times in the log"
        if slowest is not None and params.endpoint is None:
            message += f"; slowest {slowest[1]} (p95 {slowest[0]:g} ms)"
        return ProbeOutcome(metrics_from(values), message=message)
