"""A sliding window over live logs that reads each byte once.

The logs probes run every minute or so over files that only grow; reading each file whole
every time would cost a gigabyte log a gigabyte of reading per check. A ``LogTail`` keeps,
per file (by device and inode, so a rename is followed), how far it has read and the last
bytes it read (a fingerprint), and per minute what the lines stamped in that minute held
(an ``Analysis`` per minute). A refresh reads only what was appended since, drops the
minutes that fell out of the window, and sums the minutes inside it (to the minute: the
first minute counts whole).

Before reading on, a refresh checks that the fingerprint still ends where reading stopped.
If it does not, the file was rotated in place:

* **collapsed** (upkeep's lossless ``copytruncate``): the bytes after the cut are unchanged
  and moved down by whole filesystem blocks, so the fingerprint is looked for at each
  position the cut could have left it; found, reading resumes right after it. The end of
  the line the cut fell in is archived whole and left in the file as newlines (filler):
  where the fingerprint reaches into it, those bytes match whatever they stood for, and
  the filler is neither counted nor fingerprinted (the next archive does not hold it);
* **truncated, or collapsed past what was read**: reading starts again at 0. What was
  appended between the last refresh and the rotation is in the new archive beside the log
  (``<log>-…`` or ``<log>.…``): the fingerprint is looked for in the newest ones and the
  lines after it are counted. Reading the file starts after a collapse's filler; what a
  copy-and-truncate carried (or, from an upkeep before the filler, the part line a
  collapse carried) is joined to the file's first bytes, so that line counts whole.

A file that is no longer listed (renamed away) is looked for among the archives beside it
by inode, and read to its end; else its gap is recovered from the archives as above. Its
minutes stay until they age out.

Archives the target's pattern lists (compressed, or named like one: ``app.log-20261201-…``,
``app.log.1``) are read once, on the first complete refresh, to fill the window with lines
from before the tail started; one appearing later holds lines already read live (or
recovered above) and is not read again. The state lives in the process (the daemon keeps it
between runs); a one-shot ``upkeep check`` reads each recent file in full.

Where upkeep's collapse rotation cut the file, its rotation state says by how much, so the
read position moves by exactly that (no search that a log of identical lines could fool).
Known gaps, each costing only the lines written between one refresh and a rotation: an
archive written to another directory (``archive_dir``), a log that was empty at the last
refresh and then copied and truncated, and writes that reach a renamed file after the tail
followed it (a writer slow to reopen).
"""

from __future__ import annotations

import os
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, BinaryIO

import zstandard

from upkeep.analysis.logs import (
    Analysis,
    Clock,
    Format,
    detect_format,
    feed_line,
    is_empty_line,
    open_log,
)
from upkeep.analysis.rotated import (
    FILLER,
    RENAMED_PREFIX,
    carried_part_line,
    collapsed_bytes,
    filled_head,
)
from upkeep.analysis.timestamps import parse_timestamp
from upkeep.io.safefs import (
    Directory,
    Identity,
    UnsafeFileError,
    entries_below,
    open_below,
    open_regular,
)

READ_BYTES = 1 << 20
"""Read this much at a time: memory stays bounded whatever was appended."""
MAX_LINE_BYTES = 1 << 20
"""A line longer than this without a newline is cut and counted in pieces."""
FINGERPRINT_BYTES = 256
"""How many of the last bytes read identify the read position after a rotation."""
MAX_REALIGN_PROBES = 65_536
"""At most this many block-aligned positions are tried after a file shrank."""
GAP_ARCHIVES = 3
"""After a rotation, the newest this many archives beside the log are searched for the gap."""
GAP_SLACK_S = 5.0
"""An archive older than the last refresh by more than this cannot hold the gap."""
DEADLINE_CHECK_LINES = 4096
"""Lines read between looks at the clock."""
MAX_TAILS = 256
"""Tails kept per process (one per logs check); the least recently used goes first."""
COMPRESSED_SUFFIXES = (".gz", ".zst", ".xz", ".bz2")
ARCHIVE_SHAPE = re.compile(
    r"(?:-\d{8}(?:\d{2})?(?:-\d{6})?|-\d{4}-\d{2}-\d{2}|\.\d+)(?:\.\d+)?"
    r"(?:\.gz|\.zst|\.xz|\.bz2)?$"
)
"""upkeep's ``app.log-20261201-093000[.1][.zst]``; logrotate's ``app.log-20261201``,
``app.log-2026120110`` (hourly), ``app.log-2026-12-01`` and ``app.log.1[.gz]``."""


def is_archive_name(name: str) -> bool:
    """Return whether a file name is a rotated archive's rather than a live log's."""
    return name.endswith(COMPRESSED_SUFFIXES) or ARCHIVE_SHAPE.search(name) is not None


@dataclass
class _FileState:
    path: Path
    archive: bool
    offset: int = 0
    """Live file: bytes consumed. Archive: lines consumed."""
    done: bool = False
    """Archive: read to its end (or not to be read)."""
    fingerprint: bytes = b""
    kind: str | None = None
    last_stamp: datetime | None = None
    head: list[bytes] = field(default_factory=list)
    prefix: bytes = b""
    """What upkeep's rotation carried: it begins the next line read (a truncation's carry
    may hold whole lines before that part line)."""
    read_at: float = 0.0
    """When this file was last read (epoch seconds)."""
    collapsed: int | None = None
    """What upkeep's rotation state said had been collapsed out of the file at the last
    read: the difference at the next read is exactly how far the read position moved."""
    stream_offset: int = -1
    """Where the fingerprint ends in the byte stream the next archive will hold (offset,
    plus the carried part line it begins with); -1: at ``offset`` or later."""


@dataclass(frozen=True)
class TailReport:
    """How a refresh went: files looked at, bytes read, whether it caught up, and the
    window it was asked for."""

    files: int
    bytes_read: int
    complete: bool
    found: Analysis


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
        self._created = time.time()
        self._below: Path | None = None
        """The target's directory the files are opened through (None: one-file target)."""

    def refresh(
        self,
        paths: Sequence[Path],
        *,
        horizon: timedelta,
        now: datetime,
        deadline: float,
        below: Path | None = None,
    ) -> TailReport:
        """Given the target's files now, read what was appended since the last refresh,
        forget minutes older than ``horizon`` and return the window ``now - horizon`` on.
        Stop at ``deadline`` (``time.monotonic``), keeping what was read so the next refresh
        carries on. ``below``: the target's directory, in which a walk found ``paths``;
        every file (and archive beside one) is then opened through it, never through a link
        below it (see ``upkeep.io.safefs.open_below``). Raise PermissionError naming a file
        that may not be read."""
        with self._lock:
            self._below = below
            cutoff = _minute(now - horizon)
            for minute in [minute for minute in self._minutes if minute < cutoff]:
                del self._minutes[minute]
            seen: set[tuple[int, int]] = set()
            read = 0
            complete = True
            for path in paths:
                try:
                    done, count = self._refresh_file(path, seen, horizon, now, deadline)
                except FileNotFoundError:
                    continue  # rotated away between listing and opening
                except UnsafeFileError:
                    continue  # swapped for a link since it was listed: never followed
                except PermissionError as error:
                    raise PermissionError(f"log file {str(path)!r} cannot be read") from error
                read += count
                if not done:
                    complete = False
                    break
            if complete:
                # Only a refresh that saw every file may forget the ones it did not see.
                self._primed = True
                for key in [key for key in self._files if key not in seen]:
                    gone = self._files.pop(key)
                    if not gone.archive:
                        read += self._follow_renamed(key, gone, now)
            return TailReport(len(seen), read, complete, self._window(now - horizon))

    def window(self, since: datetime) -> Analysis:
        """Return the sum of the minutes from ``since``'s minute on."""
        with self._lock:
            return self._window(since)

    def _window(self, since: datetime) -> Analysis:
        start = _minute(since)
        total = Analysis()
        for minute, found in self._minutes.items():
            if minute >= start:
                total.merge(found)
        return total

    # --- files ---------------------------------------------------------------------------

    def _refresh_file(
        self,
        path: Path,
        seen: set[tuple[int, int]],
        horizon: timedelta,
        now: datetime,
        deadline: float,
    ) -> tuple[bool, int]:
        # Opened first (a regular file, never through a link) and known by what was opened:
        # a name swapped since the listing is never followed, and stat and read agree.
        with self._open(path) as handle:
            opened = os.fstat(handle.fileno())
            key = (opened.st_dev, opened.st_ino)
            seen.add(key)
            state = self._files.get(key)
            if state is None:
                state = self._files[key] = _FileState(path, archive=is_archive_name(path.name))
                recent = opened.st_mtime >= (now - horizon).timestamp()
                if state.archive:
                    # Archives made since the tail started are rotations of what it read
                    # live (or recovered from them after a rotation): only older ones fill
                    # the window.
                    state.done = self._primed or not recent or opened.st_mtime >= self._created
                elif not recent:
                    state.offset = opened.st_size  # nothing in it is recent
                    state.fingerprint = _bytes_before(handle, opened.st_size)
                    return True, 0
                else:
                    # A rotation's filler is archived already: read, and fingerprint, after.
                    state.offset = filled_head(path, handle.fileno())
                    state.stream_offset = 0 if state.offset else -1
                state.last_stamp = datetime.fromtimestamp(opened.st_mtime, UTC)
            state.path = path
            if state.archive:
                return self._read_archive(state, key, opened.st_size, now, deadline)
            if not self._continues(handle, state, opened.st_size):
                self._after_rotation(handle, state, opened.st_size, now)
            state.collapsed = collapsed_bytes(path, handle.fileno())
            return self._read(handle, state, opened.st_size, now, deadline)

    def _open(self, path: Path, expect: Identity | None = None) -> BinaryIO:
        """Open a listed file only as a regular file, never through a link planted in its
        place (or, below the target's directory, in a directory's) since the listing; raise
        UnsafeFileError (an OSError) otherwise."""
        if self._below is not None:
            return os.fdopen(open_below(self._below, path, expect=expect), "rb")
        return os.fdopen(open_regular(path), "rb")

    def _archives_beside(self, log: Path) -> list[tuple[Path, os.stat_result]]:
        """Return the archive-shaped regular files next to ``log`` whose names start with
        its name, as listed (never through a link)."""
        try:
            if self._below is not None:
                entries = entries_below(self._below, log.parent)
            else:
                with Directory.open(log.parent) as directory:
                    entries = directory.entries()
        except OSError:
            return []
        found = []
        for entry in entries:
            name = entry.name.removeprefix(RENAMED_PREFIX)
            if (
                name.startswith((f"{log.name}-", f"{log.name}."))
                and is_archive_name(name)
                and entry.is_file
            ):
                found.append((log.parent / entry.name, entry.info))
        return found

    def _continues(self, handle: BinaryIO, state: _FileState, size: int) -> bool:
        """Return whether the file still holds what was read, where it was read."""
        if state.offset == 0:
            return True
        if size < state.offset:
            return False
        width = min(len(state.fingerprint), state.offset)
        handle.seek(state.offset - width)
        return handle.read(width) == state.fingerprint[len(state.fingerprint) - width :]

    def _after_rotation(
        self, handle: BinaryIO, state: _FileState, size: int, now: datetime
    ) -> None:
        """The file was cut or truncated: resume after the fingerprint if a collapse left it
        in the file; else start after the filler, count the gap from the new archive, and
        join what upkeep's rotation carried."""
        # Collapse cuts whole filesystem blocks (f_bsize), as upkeep's rotation does.
        block = os.fstatvfs(handle.fileno()).f_bsize
        filled = filled_head(state.path, handle.fileno())
        position = None
        collapsed = collapsed_bytes(state.path, handle.fileno())
        if collapsed is not None and state.collapsed is not None and collapsed > state.collapsed:
            # upkeep's rotation says how much it cut: trust that alone (a search could
            # match falsely on a log whose lines repeat with the block size).
            moved = state.offset - (collapsed - state.collapsed)
            if moved > 0 and _ends_at(handle, max(moved, filled), state.fingerprint, filled):
                position = max(moved, filled)
        else:
            # Caught between the cut and its record: the filler, if written, lies within
            # the first block.
            position = _realign(handle, state.offset, state.fingerprint, size, block)
        if position is not None:
            # The next archive will begin with the part line carried at this cut and then
            # the file's bytes after the filler: the fingerprint must be findable there.
            position = max(position, filled)
            carried = carried_part_line(state.path, handle.fileno())
            start = max(filled, position - FINGERPRINT_BYTES)
            handle.seek(start)
            head = handle.read(position - start)
            state.offset = position
            state.fingerprint = (carried + head)[-FINGERPRINT_BYTES:]
            state.stream_offset = len(carried) + position - filled
            return
        self._recover_gap(state, now)
        state.prefix = carried_part_line(state.path, handle.fileno())
        state.offset, state.fingerprint, state.stream_offset = filled, b"", len(state.prefix)

    def _follow_renamed(self, key: tuple[int, int], state: _FileState, now: datetime) -> int:
        """A live file left the listing: read the rest of it where it went (same inode
        beside it), else count its gap from the archives; return the bytes read."""
        for candidate, info in self._archives_beside(state.path):
            if (info.st_dev, info.st_ino) == key:
                try:
                    handle = self._open(candidate, Identity.of(info))
                except OSError:
                    break  # gone or swapped since it was listed: count the gap instead
                with handle:
                    _, count = self._read(handle, state, info.st_size, now, float("inf"))
                return count
        self._recover_gap(state, now)
        return 0

    def _recover_gap(self, state: _FileState, now: datetime) -> None:
        """Count what was appended between the last refresh and a rotation: the lines after
        ``state``'s fingerprint in the archive that holds it, and every newer archive beside
        the file whole (more than one rotation since). A damaged archive counts up to the
        damage, once."""
        if not state.fingerprint:
            return
        recent = sorted(
            (
                (candidate, info)
                for candidate, info in self._archives_beside(state.path)
                if info.st_mtime >= state.read_at - GAP_SLACK_S
            ),
            key=lambda found: (found[1].st_mtime, found[0].name),
        )[-GAP_ARCHIVES:]
        gap = _FileState(state.path, archive=True, kind=state.kind)
        gap.last_stamp = state.last_stamp
        # An archive holds the stream from the file's start (after any carried part line),
        # so the fingerprint ends no earlier than where reading stopped.
        at_least = state.stream_offset if state.stream_offset >= 0 else state.offset
        found = False
        for candidate, info in recent:
            try:
                with open_log(candidate, below=self._below, expect=Identity.of(info)) as stream:
                    rest: Iterator[bytes] = _chunks(stream)
                    if not found:
                        after = _after(rest, state.fingerprint, at_least)
                        if after is None:
                            continue
                        rest, found = after, True
                    for line in _split_lines(rest):
                        self._line(gap, line, now)
            except (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError):
                if found:
                    break  # what was read stays counted; the rest of this gap is lost
                continue  # a damaged or vanished archive: try the next
        self._settle(gap, now)
        if found:
            state.last_stamp = gap.last_stamp

    def _read_archive(
        self, state: _FileState, key: tuple[int, int], size: int, now: datetime, deadline: float
    ) -> tuple[bool, int]:
        """Read an archive (the inode ``key``, ``size`` bytes stored) once, resuming after
        ``state.offset`` lines; return whether it was finished and the bytes read."""
        if state.done:
            return True, 0
        try:
            with open_log(state.path, below=self._below, expect=Identity(*key)) as stream:
                for number, line in enumerate(_split_lines(_chunks(stream)), start=1):
                    if number <= state.offset:
                        continue
                    self._line(state, line, now)
                    state.offset = number
                    if number % DEADLINE_CHECK_LINES == 0 and time.monotonic() > deadline:
                        self._settle(state, now)
                        return False, 0
        except (EOFError, zlib.error, zstandard.ZstdError, OSError) as error:
            if isinstance(error, (FileNotFoundError, PermissionError)):
                raise
            # Damaged: the lines before the damage are counted, once; it is not read again.
            pass
        self._settle(state, now)
        state.done = True
        return True, size

    def _read(
        self, handle: BinaryIO, state: _FileState, size: int, now: datetime, deadline: float
    ) -> tuple[bool, int]:
        """Read complete lines from the state's offset up to ``size``; return whether it
        reached ``size`` before the deadline, and the bytes consumed."""
        handle.seek(state.offset)
        start = state.offset
        state.read_at = time.time()
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
            for line in _block_lines(block):
                used += len(line) + 1
                if state.prefix:
                    # A truncation's carry may hold whole lines before the part line.
                    *whole, part = state.prefix.split(b"\n")
                    for early in whole:
                        self._line(state, early, now)
                    self._line(state, part + line, now)
                    state.prefix = b""
                else:
                    self._line(state, line, now)
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
        if state.stream_offset >= 0:
            state.stream_offset += len(consumed)
        state.fingerprint = (state.fingerprint + consumed)[-FINGERPRINT_BYTES:]

    # --- lines ---------------------------------------------------------------------------

    def _line(self, state: _FileState, line: bytes, now: datetime) -> None:
        if is_empty_line(line):
            return  # no record (a rotation's filler among them): not in the format sample
        if state.kind is None:
            state.head.append(line)
            if len(state.head) >= 20 or self.log_format != "auto":
                self._settle(state, now)
            return
        self._classified(state, line, now)

    def _settle(self, state: _FileState, now: datetime) -> None:
        """Decide the file's format from the lines held back for it (fewer than the
        detection sample in a short file) and count them."""
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
        minute = _minute(state.last_stamp or now)
        bucket = self._minutes.get(minute)
        if bucket is None:
            bucket = self._minutes[minute] = Analysis()
        feed_line(bucket, state.kind or "plain", line.rstrip(b"\r"), self._clock, self._compiled)


# --- helpers (pure, or reading only) ------------------------------------------------------


def _minute(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


def _bytes_before(handle: BinaryIO, offset: int) -> bytes:
    start = max(0, offset - FINGERPRINT_BYTES)
    handle.seek(start)
    return handle.read(offset - start)


def _ends_at(handle: BinaryIO, position: int, fingerprint: bytes, filler_below: int = 0) -> bool:
    """Return whether the bytes before ``position`` are the fingerprint's tail. The newlines
    the file begins with, up to ``filler_below``, match any bytes: they may be a rotation's
    filler, written over bytes the fingerprint holds (archived whole)."""
    width = min(len(fingerprint), position)
    start = position - width
    expected = fingerprint[len(fingerprint) - width :]
    if start >= filler_below:
        handle.seek(start)
        return handle.read(width) == expected
    handle.seek(0)
    before = handle.read(position)  # less than a block and a fingerprint
    limit = min(filler_below, position)
    filler = limit - len(before[:limit].lstrip(FILLER))
    compared = max(filler, start)
    return before[compared:] == expected[compared - start :]


def _realign(handle: BinaryIO, old: int, fingerprint: bytes, size: int, block: int) -> int | None:
    """Return where the bytes read up to ``old`` end now, if a collapse of whole blocks
    moved them there, else None.

    A collapse of ``k`` blocks moved the byte at ``old`` to ``old - k * block`` and left the
    bytes before it as they were, so the fingerprint ends there for the right ``k``; when
    fewer bytes than the fingerprint remain before that point, its tail must match them.
    """
    width = len(fingerprint)
    if not width or block <= 0:
        return None
    k = max(1, -(-(old - size) // block))  # the smallest cut that fits in ``size``
    for _ in range(MAX_REALIGN_PROBES):
        position = old - k * block
        if position <= 0:
            return None
        if _ends_at(handle, position, fingerprint, block):
            return position
        k += 1
    return None


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(READ_BYTES):
        yield chunk


def _after(
    chunks: Iterable[bytes], fingerprint: bytes, at_least: int = -1
) -> Iterator[bytes] | None:
    """Return the bytes after the first occurrence of ``fingerprint`` that ends at or after
    position ``at_least`` of the stream (as an iterator of chunks), or None. The bound keeps
    a repetitive log from matching an earlier, identical stretch."""
    iterator = iter(chunks)
    window = b""
    window_start = 0
    minimum = max(at_least, len(fingerprint))
    for chunk in iterator:
        window += chunk
        search_from = max(0, minimum - len(fingerprint) - window_start)
        found = window.find(fingerprint, search_from)
        if found >= 0:
            return _prepended(window[found + len(fingerprint) :], iterator)
        keep = len(fingerprint) - 1
        if len(window) > keep:
            window_start += len(window) - keep
            window = window[-keep:] if keep else b""
    return None


def _prepended(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the lines (without newlines) of a stream of chunks; a last line without a
    newline is yielded too, and one longer than MAX_LINE_BYTES in pieces."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        cut = pending.rfind(b"\n")
        if cut < 0:
            if len(pending) >= MAX_LINE_BYTES:
                yield pending
                pending = b""
            continue
        yield from pending[:cut].split(b"\n")
        pending = pending[cut + 1 :]
    if pending:
        yield pending


def _block_lines(block: bytes) -> list[bytes]:
    # Split on newlines only: a stray carriage return is part of its line.
    return block[:-1].split(b"\n") if block.endswith(b"\n") else [block]


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
