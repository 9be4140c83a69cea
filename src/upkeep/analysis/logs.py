"""Reading logs for what matters: levels, patterns, security events, and for access logs
request counts, error rates and response-time percentiles per endpoint and per 5 minutes.

Formats, per line (``auto`` decides per file from its first lines):

* ``combined``: nginx/Apache combined access logs, optionally followed by the request time
  in seconds (nginx ``$request_time``) or ``rt=…``, as most setups log it;
* ``json``: one JSON object per line (``level``/``severity``, ``message``/``msg``,
  ``time``/``timestamp``/``ts``; access fields ``path``/``status``/``duration_ms`` or
  ``request_time``);
* ``plain``: anything else, its level found as a word (ERROR, WARN, INFO, …).

Files ending in ``.gz`` or ``.zst`` are read through gzip or zstd. Everything streams: memory
grows with the number of endpoints and response times, not with the file's size.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal, cast

from upkeep.analysis.timestamps import parse_timestamp
from upkeep.io.safefs import Identity

Format = Literal["auto", "combined", "json", "plain"]
STREAM_BUFFER_BYTES = 1 << 16
"""Read buffer of a decompressed log stream."""
BIN = timedelta(minutes=5)

COMBINED = re.compile(
    rb'^(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+)[^"]*" '
    rb'(?P<status>\d{3}) (?P<bytes>\d+|-)(?: "[^"]*" "[^"]*")?(?: (?:rt=)?(?P<rt>\d+(?:\.\d+)?))?'
)
LEVEL = re.compile(rb"\b(CRITICAL|FATAL|ERROR|WARN(?:ING)?|INFO|DEBUG)\b")
SECURITY = re.compile(
    rb"(Failed password|authentication failure|Invalid user|AUTH_FAILED|"
    rb"Failed publickey|BREAK-IN ATTEMPT|Unauthorized|permission denied)",
    re.IGNORECASE,
)
ID_SEGMENT = re.compile(r"/(?:\d+|[0-9a-f]{8}-[0-9a-f-]{27,}|[0-9a-f]{16,})(?=/|$)")
LEVEL_NAMES = {b"WARNING": "WARN", b"FATAL": "CRITICAL"}


class _OwnedStream(io.RawIOBase):
    """A decompressing reader that also closes the file under it."""

    def __init__(self, inner: IO[bytes], raw: IO[bytes]) -> None:
        self._inner = inner
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                self._raw.close()
        super().close()


def open_log(path: Path, *, below: Path | None = None, expect: Identity | None = None) -> IO[bytes]:
    """Given a log (plain, ``.gz``, ``.zst``, ``.xz`` or ``.bz2``), return a binary stream
    of its text. Only a regular file is opened, never through a link as its last part (a
    log directory is writable by others: a link there could lead to any file) and never a
    FIFO or device (a read would block). With ``below`` (the logs target's directory, in
    which a walk found ``path``), nothing below that directory is followed through a link
    either, nor across a mount; with ``expect``, only that inode is opened. Raise
    UnsafeFileError (an OSError) otherwise."""
    from upkeep.io.safefs import open_below, open_regular

    if below is not None:
        raw = os.fdopen(open_below(below, path, expect=expect), "rb")
    else:
        raw = os.fdopen(open_regular(path), "rb")
    try:
        if path.suffix == ".xz":
            import lzma

            # Closed by _OwnedStream with the file under it.
            inner: IO[bytes] = cast("IO[bytes]", lzma.LZMAFile(raw, "rb"))  # noqa: SIM115
        elif path.suffix == ".bz2":
            import bz2

            inner = cast("IO[bytes]", bz2.BZ2File(raw, "rb"))
        elif path.suffix == ".gz":
            # GzipFile is a binary stream; typeshed does not declare it an IO[bytes].
            inner = cast("IO[bytes]", gzip.GzipFile(fileobj=raw, mode="rb"))
        elif path.suffix == ".zst":
            import zstandard

            return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
        else:
            return raw
    except BaseException:
        raw.close()
        raise
    return io.BufferedReader(_OwnedStream(inner, raw), STREAM_BUFFER_BYTES)


def endpoint_of(path: str) -> str:
    """Given a request path, return its endpoint: no query, ids as ``:id``."""
    return ID_SEGMENT.sub("/:id", path.split("?", 1)[0]) or "/"


@dataclass
class EndpointFigures:
    """Requests, errors and response times of one endpoint (or one time bin)."""

    requests: int = 0
    errors: int = 0
    times_ms: array[float] = field(default_factory=lambda: array("d"))

    def add(self, status: int, time_ms: float | None) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        if time_ms is not None:
            self.times_ms.append(time_ms)

    def summary(self) -> dict[str, Any]:
        """Return count, error rate (5xx) and p50/p95/p99 (None without response times)."""
        ordered = sorted(self.times_ms)

        def percentile(share: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)

        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate_percent": round(100 * self.errors / self.requests, 3)
            if self.requests
            else 0.0,
            "p50_ms": percentile(0.50),
            "p95_ms": percentile(0.95),
            "p99_ms": percentile(0.99),
        }


@dataclass
class Analysis:
    """What one pass over some logs found."""

    lines: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)
    patterns: Counter[str] = field(default_factory=Counter)
    security: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    endpoints: defaultdict[str, EndpointFigures] = field(
        default_factory=lambda: defaultdict(EndpointFigures)
    )
    bins: defaultdict[datetime, EndpointFigures] = field(
        default_factory=lambda: defaultdict(EndpointFigures)
    )

    def merge(self, other: Analysis) -> None:
        """Add another pass's findings (its endpoints, not its 5-minute bins) to this one."""
        self.lines += other.lines
        self.formats.update(other.formats)
        self.levels.update(other.levels)
        self.patterns.update(other.patterns)
        self.security.update(other.security)
        self.statuses.update(other.statuses)
        for name, figures in other.endpoints.items():
            mine = self.endpoints[name]
            mine.requests += figures.requests
            mine.errors += figures.errors
            mine.times_ms.extend(figures.times_ms)

    def to_json(self, top: int = 20) -> dict[str, Any]:
        """Return the findings as JSON-ready data (the ``top`` busiest endpoints)."""
        busiest = sorted(self.endpoints.items(), key=lambda item: -item[1].requests)[:top]
        return {
            "lines": self.lines,
            "formats": dict(self.formats),
            "levels": dict(self.levels),
            "patterns": dict(self.patterns),
            "security_events": dict(self.security),
            "requests": sum(figures.requests for figures in self.endpoints.values()),
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
            "endpoints": {name: figures.summary() for name, figures in busiest},
            "bins": {
                start.isoformat(): figures.summary() for start, figures in sorted(self.bins.items())
            },
        }


class Clock:
    """Parses access-log times, caching by text (a busy log repeats each second)."""

    def __init__(self) -> None:
        self._cache: dict[bytes, datetime | None] = {}

    def moment_of(self, text: bytes) -> datetime | None:
        """Given a combined log's time field (``23/Nov/2026:12:00:01 +0000``), return it in
        UTC, or None if it is not one."""
        if text in self._cache:
            return self._cache[text]
        try:
            value: datetime | None = datetime.strptime(
                text.decode(), "%d/%b/%Y:%H:%M:%S %z"
            ).astimezone(UTC)
        except ValueError:
            value = None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[text] = value
        return value

    def bin_of(self, text: bytes) -> datetime | None:
        """Given a combined log's time field, return the start of its 5-minute bin (UTC),
        or None if it is not a time."""
        moment = self.moment_of(text)
        if moment is None:
            return None
        return moment.replace(minute=moment.minute - moment.minute % 5, second=0)


def line_time(kind: str, line: bytes, clock: Clock, *, now: datetime) -> datetime | None:
    """Given a line of a log of ``kind`` (combined, json, plain), return its own time in
    UTC, or None if it has none: a combined line's bracketed field (exact, never a date
    that appears in its request path), else the first timestamp ``parse_timestamp`` finds.
    """
    if kind == "combined":
        match = COMBINED.match(line)
        if match is not None:
            return clock.moment_of(match.group("time"))
    return parse_timestamp(line.decode("utf-8", "replace"), now=now)


def detect_format(first: Sequence[bytes]) -> str:
    """Given a file's first lines, return its format: combined, json or plain."""
    sample = [line for line in first if line.strip()][:20]
    if sample and all(COMBINED.match(line) for line in sample):
        return "combined"
    if sample and all(line.lstrip().startswith(b"{") for line in sample):
        return "json"
    return "plain"


def analyze(
    paths: Sequence[Path],
    *,
    log_format: Format = "auto",
    patterns: Sequence[str] = (),
    since: datetime | None = None,
    below: Path | None = None,
    until: datetime | None = None,
) -> Analysis:
    """Given log files, return what they hold. ``patterns`` are regular expressions counted
    per line; ``below``: the logs target's directory the files were found in (see
    ``open_log``).

    ``since`` keeps only the lines of that moment or later, in every format and for every
    figure (lines, levels, patterns, security events, statuses, endpoints, bins): a line's
    time is its own (``line_time``), else the previous line's (a stack trace belongs to the
    line that began it); lines before a file's first timestamp are kept. ``until`` keeps
    only the lines before that moment, by the same rule (a report's period).
    """
    result = Analysis()
    compiled = [(pattern, re.compile(pattern.encode())) for pattern in patterns]
    clock = Clock()
    since_utc = since.astimezone(UTC) if since else None
    until_utc = until.astimezone(UTC) if until else None
    now = datetime.now(UTC)
    for path in paths:
        with open_log(path, below=below) as stream:
            lines = _lines(stream)
            head = [line for _, line in zip(range(20), lines, strict=False)]
            kind = log_format if log_format != "auto" else detect_format(head)
            result.formats[kind] += 1
            stamp: datetime | None = None
            for line in _chain(head, lines):
                if since_utc is not None or until_utc is not None:
                    # The one window filter, before any figure is counted, so no format can
                    # count a figure over the whole file.
                    stamp = line_time(kind, line, clock, now=now) or stamp
                    if stamp is not None and (
                        (since_utc is not None and stamp < since_utc)
                        or (until_utc is not None and stamp >= until_utc)
                    ):
                        continue
                feed_line(result, kind, line, clock, compiled)
    return result


def feed_line(
    result: Analysis,
    kind: str,
    line: bytes,
    clock: Clock,
    compiled: Sequence[tuple[str, re.Pattern[bytes]]],
) -> None:
    """Given one line of a log of ``kind`` (combined, json, plain), add everything it holds
    to ``result``. Choosing the lines (a time window) is the caller's job, done before
    this, so that every figure is counted over the same lines. An empty line is no line
    and counts nothing."""
    if is_empty_line(line):
        return
    result.lines += 1
    for name, regex in compiled:
        if regex.search(line):
            result.patterns[name] += 1
    if kind == "combined":
        _access(result, line, clock)
    elif kind == "json":
        _json_line(result, line)
    else:
        _plain(result, line)


def is_empty_line(line: bytes) -> bool:
    """Return whether a line (with or without its line end) holds nothing: no record, and
    what upkeep's lossless rotation leaves at the head of a live log in place of the end of
    the line it archived whole."""
    return not line.rstrip(b"\r\n")


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    # Empty lines are no lines: the format sample, the window and every figure skip them.
    return (line for line in stream if not is_empty_line(line))


def _chain(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from head
    yield from rest


def _plain(result: Analysis, line: bytes) -> None:
    level = LEVEL.search(line)
    if level is not None:
        word = level.group(1)
        result.levels[LEVEL_NAMES.get(word, word.decode())] += 1
    security = SECURITY.search(line)
    if security is not None:
        result.security[security.group(1).decode()] += 1


def _access(result: Analysis, line: bytes, clock: Clock) -> None:
    match = COMBINED.match(line)
    if match is None:
        _plain(result, line)
        return
    start = clock.bin_of(match.group("time"))
    status = int(match.group("status"))
    seconds = match.group("rt")
    time_ms = float(seconds) * 1000 if seconds is not None else None
    result.statuses[status] += 1
    result.endpoints[endpoint_of(match.group("path").decode(errors="replace"))].add(status, time_ms)
    if start is not None:
        result.bins[start].add(status, time_ms)
    if status in (401, 403):
        result.security[f"HTTP {status}"] += 1


def _json_line(result: Analysis, line: bytes) -> None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # nesting past the parser's depth is no record either
        _plain(result, line)
        return
    if not isinstance(record, dict):
        return
    level = record.get("level") or record.get("severity")
    if isinstance(level, str):
        name = level.upper()
        result.levels[{"WARNING": "WARN", "FATAL": "CRITICAL"}.get(name, name)] += 1
    message = str(record.get("message") or record.get("msg") or "")
    security = SECURITY.search(message.encode())
    if security is not None:
        result.security[security.group(1).decode()] += 1
    status = record.get("status")
    path = record.get("path")
    if isinstance(status, int) and isinstance(path, str):
        duration = record.get("duration_ms")
        if duration is None and isinstance(record.get("request_time"), int | float):
            duration = float(record["request_time"]) * 1000
        result.statuses[status] += 1
        result.endpoints[endpoint_of(path)].add(
            status, float(duration) if isinstance(duration, int | float) else None
        )


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """Given counts, return a one-line chart of them."""
    if not values:
        return ""
    top = max(values) or 1
    return "".join(SPARK[min(len(SPARK) - 1, value * len(SPARK) // (top + 1))] for value in values)
