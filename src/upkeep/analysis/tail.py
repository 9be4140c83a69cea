"""A sliding window over live logs that reads each byte once.

The logs probes run every minute or so over files that only grow; reading each file whole
every time would cost a gigabyte log a gigabyte of reading per check. A ``LogTail`` keeps,
per file (by device and inode, so a rename is followed), how far it has read, and per
minute what the lines stamped in that minute held (an ``Analysis`` per minute). A run reads
only what was appended since, drops the minutes that fell out of the longest window asked
for, and sums the minutes inside the window.

Rotation, by the way it shows:

* **renamed** (``rename`` mode): the inode moves to the archive name; what was read of it
  stays counted until it ages out, and a new inode at the log's path is read from its start;
* **shrunk in place** (``copytruncate``): if upkeep's collapse-range rotation cut a prefix,
  the bytes after the cut are unchanged, so the last bytes read are looked for at each
  block-aligned position the cut could have left them; found, reading resumes right after
  them (nothing counted twice). Not found (truncated to zero and written again), reading
  starts at 0 and what was counted before stays counted;
* **gone**: its minutes stay until they age out.

Compressed archives (``.gz``, ``.zst``) the target's pattern lists are read once, on the
first refresh, to fill the window with lines from before the tail started; one that appears
later holds lines the tail already read in the live file, and is not read. The state lives
in the process (the daemon keeps it between runs); a one-shot ``upkeep check`` reads each
recent file in full.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from upkeep.analysis.logs import Analysis, Clock, Format, detect_format, feed_line, open_log
from upkeep.analysis.timestamps import parse_timestamp

READ_BYTES = 1 << 20
"""Read this much at a time: memory stays bounded whatever was appended."""
MAX_LINE_BYTES = 1 << 20
"""A line longer than this without a newline is cut and counted in pieces."""
FINGERPRINT_BYTES = 256
"""How many of the last bytes read identify the read position after a collapse."""
MAX_REALIGN_PROBES = 65_536
"""At most this many block-aligned positions are tried after a file shrank."""
DEADLINE_CHECK_LINES = 4096
"""Lines read between looks at the clock."""
MAX_TAILS = 256
"""Tails kept per process (one per logs check); the least recently used goes first."""
COMPRESSED_SUFFIXES = (".gz", ".zst")


@dataclass
class _FileState:
    path: Path
    offset: int = 0
    fingerprint: bytes = b""
    kind: str | None = None
    last_stamp: datetime | None = None
    head: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class TailReport:
    """How a refresh went: files looked at, bytes read, whether it caught up."""

    files: int
    bytes_read: int
    complete: bool


class LogTail:
    """The incremental window over one logs target's files. Thread-safe."""

    def __init__(self, log_format: Format, patterns: Sequence[str]) -> None:
        self.log_format = log_format
        self._compiled = [(pattern, re.compile(pattern.encode())) for pattern in patterns]
        self._files: dict[tuple[int, int], _FileState] = {}
        self._minutes: dict[int, Analysis] = {}
        self._clock = Clock()
        self._lock = threading.Lock()
        self._primed = False

    def refresh(
        self, paths: Sequence[Path], *, horizon: timedelta, now: datetime, deadline: float
    ) -> TailReport:
        """Given the target's files now, read what was appended since the last refresh and
        forget minutes older than ``horizon``; stop at ``deadline`` (``time.monotonic``),
        keeping what was read so the next refresh carries on."""
        with self._lock:
            cutoff = _minute(now - horizon)
            for minute in [minute for minute in self._minutes if minute < cutoff]:
                del self._minutes[minute]
            seen: set[tuple[int, int]] = set()
            read = 0
            complete = True
            for path in paths:
                try:
                    if path.name.endswith(COMPRESSED_SUFFIXES):
                        done, count = self._archive(path, seen, horizon, now, deadline)
                    else:
                        done, count = self._live(path, seen, horizon, now, deadline)
                except FileNotFoundError:
                    continue  # rotated away between listing and opening
                except PermissionError as error:
                    raise PermissionError(f"log file {str(path)!r} cannot be read") from error
                read += count
                if not done:
                    complete = False
                    break
            self._primed = True
            # A file no longer listed keeps its minutes; only its read position goes.
            for key in [key for key in self._files if key not in seen]:
                del self._files[key]
            return TailReport(len(seen), read, complete)

    def _live(
        self,
        path: Path,
        seen: set[tuple[int, int]],
        horizon: timedelta,
        now: datetime,
        deadline: float,
    ) -> tuple[bool, int]:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            key = (info.st_dev, info.st_ino)
            seen.add(key)
            state = self._files.get(key)
            if state is None:
                state = self._files[key] = _FileState(path)
                if info.st_mtime < (now - horizon).timestamp():
                    state.offset = info.st_size  # nothing in it is recent
                    return True, 0
                state.last_stamp = datetime.fromtimestamp(info.st_mtime, UTC)
            state.path = path
            if info.st_size < state.offset:
                # Collapse cuts whole filesystem blocks (f_bsize), as upkeep's rotation does.
                block = os.fstatvfs(handle.fileno()).f_bsize
                self._realign(handle, state, info.st_size, block)
            return self._read(handle, state, info.st_size, now, deadline)

    def _archive(
        self,
        path: Path,
        seen: set[tuple[int, int]],
        horizon: timedelta,
        now: datetime,
        deadline: float,
    ) -> tuple[bool, int]:
        """Read a compressed archive once, and only on the first refresh: it fills the
        window with lines from before the tail started. One appearing later is a rotation
        of lines the tail already read live."""
        info = path.stat()
        key = (info.st_dev, info.st_ino)
        seen.add(key)
        if key in self._files:
            return True, 0
        state = self._files[key] = _FileState(path, offset=info.st_size)
        if self._primed or info.st_mtime < (now - horizon).timestamp():
            return True, 0
        state.last_stamp = datetime.fromtimestamp(info.st_mtime, UTC)
        with open_log(path) as stream:
            for number, line in enumerate(stream, start=1):
                self._line(state, line[:MAX_LINE_BYTES].rstrip(b"\n"), now)
                if number % DEADLINE_CHECK_LINES == 0 and time.monotonic() > deadline:
                    self._settle(state, now)
                    return False, info.st_size
        self._settle(state, now)
        return True, info.st_size

    def window(self, since: datetime) -> Analysis:
        """Return the sum of the minutes from ``since``'s minute on."""
        start = _minute(since)
        total = Analysis()
        with self._lock:
            for minute, found in self._minutes.items():
                if minute >= start:
                    total.merge(found)
        return total

    def _realign(self, handle: BinaryIO, state: _FileState, size: int, block: int) -> None:
        """The file shrank: find where the last bytes read went, else start again at 0.

        A collapse of ``k`` blocks moved the byte at ``old`` to ``old - k * block`` and left
        the bytes before it as they were, so the fingerprint ends there for the right ``k``.
        """
        old, fingerprint = state.offset, state.fingerprint
        state.offset, state.fingerprint = 0, b""
        width = len(fingerprint)
        if not width or block <= 0:
            return
        k = max(1, -(-(old - size) // block))  # the smallest cut that fits in ``size``
        for _ in range(MAX_REALIGN_PROBES):
            position = old - k * block
            if position < width:
                return
            handle.seek(position - width)
            if handle.read(width) == fingerprint:
                state.offset, state.fingerprint = position, fingerprint
                return
            k += 1

    def _read(
        self, handle: BinaryIO, state: _FileState, size: int, now: datetime, deadline: float
    ) -> tuple[bool, int]:
        """Read complete lines from the state's offset up to ``size``; return whether it
        reached ``size`` before the deadline, and the bytes consumed."""
        handle.seek(state.offset)
        start = state.offset
        pending = b""
        lines = 0
        while state.offset + len(pending) < size:
            chunk = handle.read(min(READ_BYTES, size - state.offset - len(pending)))
            if not chunk:
                break
            pending += chunk
            cut = pending.rfind(b"\n")
            if cut < 0:
                if len(pending) < MAX_LINE_BYTES:
                    continue
                cut = len(pending) - 1
            block, pending = pending[: cut + 1], pending[cut + 1 :]
            used = 0
            # Split on newlines only: a stray carriage return is part of its line.
            for line in block[:-1].split(b"\n") if block.endswith(b"\n") else [block]:
                self._line(state, line, now)
                used += len(line) + 1
                lines += 1
                if lines % DEADLINE_CHECK_LINES == 0 and time.monotonic() > deadline:
                    self._advance(state, block[:used])
                    self._settle(state, now)
                    return False, state.offset - start
            self._advance(state, block)
        self._settle(state, now)
        return True, state.offset - start

    def _advance(self, state: _FileState, consumed: bytes) -> None:
        state.offset += len(consumed)
        state.fingerprint = (state.fingerprint + consumed)[-FINGERPRINT_BYTES:]

    def _line(self, state: _FileState, line: bytes, now: datetime) -> None:
        if state.kind is None:
            state.head.append(line)
            if len(state.head) < 20 and self.log_format == "auto":
                return
            self._settle(state, now)
            return
        self._classified(state, line, now)

    def _settle(self, state: _FileState, now: datetime) -> None:
        """A file shorter than the detection sample: decide its format from what there is."""
        if state.kind is None and state.head:
            state.kind = self.log_format if self.log_format != "auto" else detect_format(state.head)
            head, state.head = state.head, []
            for early in head:
                self._classified(state, early, now)

    def _classified(self, state: _FileState, line: bytes, now: datetime) -> None:
        # A JSON line's time field may sit anywhere in it; other formats lead with theirs.
        text = line if state.kind == "json" else line[:512]
        stamp = parse_timestamp(text.decode("utf-8", "replace"), now=now)
        if stamp is not None:
            state.last_stamp = stamp
        moment = state.last_stamp or now
        minute = _minute(moment)
        bucket = self._minutes.get(minute)
        if bucket is None:
            bucket = self._minutes[minute] = Analysis()
        feed_line(bucket, state.kind or "plain", line.rstrip(b"\r"), self._clock, self._compiled)


def _minute(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


class TailCache:
    """The tails of one process, one per (target, format, patterns); least recently used
    out first once there are ``MAX_TAILS``."""

    def __init__(self) -> None:
        self._tails: OrderedDict[tuple[object, ...], LogTail] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...], log_format: Format, patterns: Sequence[str]) -> LogTail:
        """Return the tail for ``key``, making it on first use."""
        with self._lock:
            tail = self._tails.get(key)
            if tail is None:
                tail = self._tails[key] = LogTail(log_format, patterns)
            self._tails.move_to_end(key)
            while len(self._tails) > MAX_TAILS:
                self._tails.popitem(last=False)
            return tail


TAILS = TailCache()
"""The process's tails: the daemon's logs checks keep their read positions here."""
