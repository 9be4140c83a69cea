"""Rotating a log a writer keeps appending to, without losing or doubling a line.

``copytruncate`` as logrotate does it copies the file, then truncates it: whatever the
writer appends between the end of the copy and the truncation is lost (2.6 % of the lines
of a fast writer, measured on this machine). Here, where the filesystem supports it (ext4,
XFS), the copied prefix is removed with ``fallocate(FALLOC_FL_COLLAPSE_RANGE)`` instead,
at a block-aligned offset (what logrotate's unmerged ``copyreduce`` proposes): the kernel
shifts the rest of the file down under the inode lock that ``O_APPEND`` writes also take,
so an append lands either before the cut (and is in the copy) or after it (and stays).

The cut is block-aligned, so it usually falls inside a line. The archive runs past the cut
to the end of that line, so it holds the line whole; after the collapse, the rest of that
line (now the first bytes of the live file, less than a block, already archived) is
overwritten with newlines (``_fill_head``). The live file therefore begins with empty lines
and then a whole line, never with part of one. Overwriting is safe under a writer: those
bytes are complete and writers only append. The state records how many bytes are filler;
the next archive starts after them. Archives hold whole lines, and all archives in order
followed by the live file without its filler are the writer's exact byte stream. The cut is
the last block boundary at or before the end of the last whole line, so the line it falls
in is always complete (a line still being written is never cut); a log with less than one
block of whole lines is not rotated (``find_cut`` says so, and the dry run with it).

Crash safety: the archive is written under a temporary name, compressed, fsynced and
verified by decompressing it; the cut is recorded as pending in the state file (written
atomically, naming the archive and its inode, the hash of the bytes to cut and of the line
end to fill) before the archive is renamed to its final name; then the cut is made, the
head filled (fdatasync), and the state finalised. A run that finds a pending cut whose
archive never got its name drops it (the log was not touched; the temporary is removed and
the rotation done again). Otherwise it checks the file's first bytes against the recorded
hash: still there, it performs the cut; gone, the cut was done. Then it fills the head if
it still holds the recorded line end (already newlines: done; anything else: not touched).
A kill at any step thus neither loses nor doubles a line. Nothing half-written ever carries
an archive's name.

Where the filesystem cannot collapse (tmpfs, btrfs), the file is copied and truncated like
logrotate, but in the safe order: the archive is complete, verified and named first (a full
disk leaves the log whole), the cut is recorded, the bytes appended meanwhile are read and
recorded as the carry, and only then is the file truncated. The loss window (from the last
read to the truncation) is measured and reported. A run that finds a recorded truncation
the log still begins with archives the rest from the recorded offset and truncates then; one
the log no longer begins with was done, and only its carry is kept. A crash between the
truncation and the last state write loses what was appended during that one state write.
There the live file begins with what the writer appended after the truncation (a whole
line from a writer that writes a line at a time); the lines appended while the archive was
verified wait in the state as the carry and begin the next archive.

Two rotations of logs in one directory never overlap (the daemon's and an operator's
``upkeep logs rotate``): each holds a lock on the directory's state directory, and one that
waits longer than ``ROTATION_LOCK_WAIT_S`` fails saying so. Without it both would archive
the same bytes and both cut them.

Log directories are writable by others, so all file work goes through ``upkeep.io.safefs``:
the log is opened relative to its directory's descriptor, never through a link, only if it
is the inode the listing saw and has no other hard link; archives and the state are
written under unguessable temporary names (``O_EXCL``), an archive gets the log's mode and
owner (a 0600 log never becomes a world-readable archive), the state file is 0600 in a
0700 directory that must belong to upkeep's user, and nothing is renamed over an existing
name.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import gzip
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

from upkeep.analysis.rotated import FILLER, RotationError, RotationState, state_directory, state_of
from upkeep.core.text import format_bytes
from upkeep.io.safefs import (
    Directory,
    Identity,
    TemporaryFile,
    UnsafeFileError,
)

FALLOC_FL_COLLAPSE_RANGE = 0x08
CHUNK_BYTES = 1 << 20
"""Read and compress this much at a time: memory stays bounded whatever the log's size."""
MAX_CARRY_BYTES = 1 << 20
"""A copy-and-truncate carries at most this much over to the next archive; and a log whose
last this many bytes hold no newline is not made of lines: it is cut at a block boundary
(its "line" archived split)."""
HEAD_BYTES = 64
"""How many of a log's first bytes after a cut are remembered, to know it is still the same."""
ARCHIVE_NAME_ATTEMPTS = 1000
"""How many ``.N`` names an archive may try when others of the same second exist."""
ROTATION_LOCK_WAIT_S = 30.0
"""Named timeout: how long a rotation waits for another rotation in the same directory (the
daemon's and an operator's ``upkeep logs rotate``) before it fails saying so."""
LOCK_POLL_S = 0.05

Compression = Literal["zstd", "gzip", "none"]
SUFFIXES: dict[str, str] = {"zstd": ".zst", "gzip": ".gz", "none": ""}


@dataclass(frozen=True)
class RotationResult:
    """What one rotation did."""

    archive: Path
    bytes_archived: int
    method: Literal["collapse", "truncate", "rename"]
    loss_window_s: float = 0.0
    """For ``truncate``: the time appends could have been lost in (0 for ``collapse``)."""


@dataclass(frozen=True)
class Cut:
    """Where a collapse cuts a log: ``at``, a block boundary, and ``end``, the end of the
    line ``at`` falls in (``at`` itself when it falls between two lines). The archive holds
    the bytes before ``end``; the ``end - at`` bytes between them stay in the live file as
    its first bytes and become filler."""

    at: int
    end: int


NEWLINE_SEARCH_BYTES = 1 << 16
"""Look for the last newline this many bytes at a time, from the end."""


def _last_newline(fd: int, size: int) -> int:
    """Return the offset of the last newline in the file's first ``size`` bytes, looking at
    most ``MAX_CARRY_BYTES`` back from there; -1 if there is none."""
    end = size
    floor = max(0, size - MAX_CARRY_BYTES)
    while end > floor:
        start = max(floor, end - NEWLINE_SEARCH_BYTES)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            return start + found
        end = start
    return -1


def find_cut(fd: int, size: int, block: int, skip: int = 0) -> Cut | str:
    """Given an open log, its size, its filesystem's block size and how many of its first
    bytes are the last cut's filler, return where a rotation cuts it: the last block
    boundary at or before the end of its last whole line (and before its end: the kernel
    refuses a range that reaches it), so the line the cut falls in is complete; or, if the
    archive would hold no whole line (no such boundary past 0, or none past the filler),
    why there is nothing to rotate. A log whose last ``MAX_CARRY_BYTES`` hold no newline is
    not lines: it is cut at its last block boundary."""
    last = _last_newline(fd, size)
    if last < 0 and size > MAX_CARRY_BYTES:
        at = ((size - 1) // block) * block
        return Cut(at, at)
    at = max(0, min(last + 1, size - 1)) // block * block
    cut = Cut(at, at)
    if at > 0 and os.pread(fd, 1, at - 1) != b"\n":
        # The line ``at`` falls in ends at ``last`` or before, less than a block on.
        following = os.pread(fd, min(block, last + 1 - at), at)
        cut = Cut(at, at + following.index(b"\n") + 1)
    if at == 0 or cut.end <= skip:
        whole = max(0, last + 1 - skip)
        since = " since the last rotation" if skip else ""
        return (
            f"only {format_bytes(whole)} of whole lines{since}; a lossless rotation cuts "
            f"whole filesystem blocks ({format_bytes(block)}) of them"
        )
    return cut


def readiness(directory: Directory, name: str, expect: Identity | None = None) -> str | None:
    """Given a log's directory and name (and the inode a listing saw), return why a
    rotation would leave it as it is (too little to cut), or None if it would rotate it;
    read only. Raise RotationError if the log or its state cannot be trusted."""
    try:
        fd = directory.open_file(name, os.O_RDONLY, expect=expect, single_link=True)
    except UnsafeFileError as error:
        raise RotationError(
            f"refusing to rotate {directory.path / name}: {error.strerror}"
        ) from None
    try:
        with state_of(directory, name, create=False) as state:
            skip = state.filler(fd)
        cut = find_cut(fd, os.fstat(fd).st_size, os.fstatvfs(fd).f_bsize, skip)
    finally:
        os.close(fd)
    return cut if isinstance(cut, str) else None


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def collapse_prefix(fd: int, length: int) -> None:
    """Given an open file and a block-aligned length shorter than the file, remove that
    many bytes from its start; raise OSError (EOPNOTSUPP, EINVAL) if the filesystem can't.
    """
    if _libc().fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, ctypes.c_long(0), ctypes.c_long(length)):
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


@contextlib.contextmanager
def _rotation_lock(directory: Directory) -> Iterator[None]:
    """Hold the lock on the directory's rotation state for the block: two processes that
    rotate one log at once would each archive the same bytes and each cut them. Raise
    RotationError if another rotation holds it past ``ROTATION_LOCK_WAIT_S``."""
    state = state_directory(directory, create=True)
    assert state is not None  # noqa: S101 - created when missing
    with state:
        deadline = time.monotonic() + ROTATION_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(state.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RotationError(
                        f"another rotation of a log in {directory.path} is under way "
                        f"(waited {ROTATION_LOCK_WAIT_S:g}s); the next run rotates it"
                    ) from None
                time.sleep(LOCK_POLL_S)
        yield  # released when the state directory's descriptor is closed


def _compressor(raw: IO[bytes], compression: Compression) -> IO[bytes]:
    if compression == "zstd":
        import zstandard

        writer: IO[bytes] = zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(
            raw, closefd=False
        )
        return writer
    if compression == "gzip":
        # GzipFile is a binary stream; typeshed does not declare it an IO[bytes].
        return cast("IO[bytes]", gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0))
    return raw


def decompressed(raw: IO[bytes], compression: Compression) -> Iterator[bytes]:
    """Given an open archive and its compression, yield its content in bounded chunks."""
    if compression == "zstd":
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            while chunk := reader.read(CHUNK_BYTES):
                yield chunk
    elif compression == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="rb") as reader:
            while chunk := reader.read(CHUNK_BYTES):
                yield chunk
    else:
        while chunk := raw.read(CHUNK_BYTES):
            yield chunk


def archive_name(
    log_name: str, directory: Directory, moment: datetime, compression: Compression
) -> str:
    """Return a date-stamped archive name for a log that is free in ``directory``
    (``app.log`` → ``app.log-20261123-140501.zst``, then ``…-140501.1.zst``)."""
    stamp = moment.strftime("%Y%m%d-%H%M%S")
    suffix = SUFFIXES[compression]
    candidate = f"{log_name}-{stamp}{suffix}"
    number = 0
    while directory.exists(candidate):
        number += 1
        if number > ARCHIVE_NAME_ATTEMPTS:
            raise RotationError(f"no free archive name for {log_name} at {stamp}")
        candidate = f"{log_name}-{stamp}.{number}{suffix}"
    return candidate


class _ArchiveWriter:
    """Writes an archive under an unguessable temporary name with the log's mode and
    owner; ``commit`` verifies it and gives it a free archive name."""

    def __init__(
        self,
        directory: Directory,
        log_name: str,
        moment: datetime,
        compression: Compression,
        like: os.stat_result,
    ) -> None:
        self.directory = directory
        self.log_name = log_name
        self.moment = moment
        self.compression = compression
        self.temporary: TemporaryFile = directory.create_temporary(log_name)
        try:
            self.temporary.take_ownership_of(like)
            self._stream = _compressor(self.temporary.handle, compression)
        except BaseException:
            self.temporary.abort()
            raise
        self._hash = hashlib.sha256()
        self.size = 0
        self.final = ""

    @property
    def path(self) -> Path:
        """Return where the archive is (once committed)."""
        return self.directory.path / self.final

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self, before_naming: Callable[[str, int], None] | None = None) -> Path:
        """Finish, fsync and verify (decompress and compare the hash) the archive, then
        give it a free archive name and return its path; raise RotationError (removing the
        temporary) if it does not verify. ``before_naming`` is called with each name about
        to be given and the archive's inode, before it is (to record the cut first)."""
        if self._stream is not self.temporary.handle:
            self._stream.close()
        self.temporary.finish()
        check = hashlib.sha256()
        identity = Identity.of(os.fstat(self.temporary.fd))
        descriptor = self.directory.open_file(self.temporary.name, expect=identity)
        with os.fdopen(descriptor, "rb") as reader:
            for chunk in decompressed(reader, self.compression):
                check.update(chunk)
        if check.digest() != self._hash.digest():
            self.temporary.abort()
            raise RotationError(f"the archive of {self.log_name} did not verify; nothing changed")
        for _ in range(ARCHIVE_NAME_ATTEMPTS):
            final = archive_name(self.log_name, self.directory, self.moment, self.compression)
            if before_naming is not None:
                before_naming(final, identity.inode)
            try:
                self.final = self.temporary.commit(final)
            except FileExistsError:
                continue  # taken since we looked: the next number
            return self.path
        raise RotationError(f"no free archive name for {self.log_name}")

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._stream is not self.temporary.handle:
                self._stream.close()
        self.temporary.abort()


def _prefix_sha256(fd: int, length: int) -> str:
    digest = hashlib.sha256()
    position = 0
    while position < length:
        chunk = os.pread(fd, min(CHUNK_BYTES, length - position), position)
        if not chunk:
            break
        digest.update(chunk)
        position += len(chunk)
    return digest.hexdigest()


def _open_log(directory: Directory, name: str, expect: Identity | None) -> int:
    """Open a log for rotation: relative to its directory, never through a link, only the
    listed inode, only a file without other hard links. Raise RotationError otherwise."""
    try:
        return directory.open_file(name, os.O_RDWR, expect=expect, single_link=True)
    except UnsafeFileError as error:
        raise RotationError(
            f"refusing to rotate {directory.path / name}: {error.strerror}"
        ) from None


def recover_in(
    directory: Directory,
    name: str,
    *,
    archive_dir: Directory | None = None,
    expect: Identity | None = None,
) -> bool:
    """Given a log's directory and name (and where its archives go, if not beside it),
    finish a rotation a crash interrupted and remove its temporary archives; return whether
    there was one. A cut whose archive never got its name is dropped (the log was not
    touched); else the cut is made if it was not, and the head filled if it was not. Raise
    RotationError if the log or the state cannot be trusted."""
    for place in {id(directory): directory, id(archive_dir): archive_dir}.values():
        if place is not None:
            place.remove_temporaries(name)
    with state_of(directory, name, create=False) as state:
        if state.directory is not None:
            state.directory.remove_temporaries(state.file_name)
        pending = state.pending
        if pending is None:
            return False
        if not _archive_named(pending, directory, archive_dir):
            # Killed before the archive was named: the log is whole, the carry not used.
            state.pending = None
            state.save()
            return True
        # The archive holds the carry: it must not begin another one.
        state.carry = b""
        cut = int(pending["cut"])
        truncating = pending.get("method") == "truncate"
        fd = _open_log(directory, name, expect)
        try:
            size = os.fstat(fd).st_size
            still_there = (size >= cut if truncating else size > cut) and _prefix_sha256(
                fd, cut
            ) == pending["prefix_sha256"]
            if still_there and truncating:
                # The archive was named but the log never truncated: archive the rest from
                # the recorded cut and truncate now (its own record replaces this one).
                compression = cast("Compression", pending.get("compression", "zstd"))
                state.save()  # the carry cleared; the record stays until the next replaces it
                state.close()
                _rotate_truncate(
                    directory,
                    name,
                    fd,
                    archive_dir or directory,
                    datetime.now(UTC),
                    compression if compression in SUFFIXES else "zstd",
                    start=cut,
                )
                return True
            if still_there:
                collapse_prefix(fd, cut)
            if "fill" in pending:
                # Only in the file that was cut: a file put in its place is not touched.
                ours = pending.get("inode") == os.fstat(fd).st_ino
                fill = int(pending["fill"]) if ours else 0
                filled = _fill_head(fd, fill, str(pending["fill_sha256"]))
                _finish_cut(state, fd, cut if ours else 0, filled)
            else:
                # A state written before the filler existed: its part line is carried.
                state.carry = base64.b64decode(pending["fragment"])
                state.pending = None
                state.inode, state.head = os.fstat(fd).st_ino, os.pread(fd, HEAD_BYTES, 0)
                state.filled = 0
                state.save()
        finally:
            os.close(fd)
    return True


def _archive_named(
    pending: dict[str, Any], directory: Directory, archive_dir: Directory | None
) -> bool:
    """Return whether the archive a pending cut records got its name (the very inode
    written). A record from before names were recorded first, or one whose archive
    directory is not known here, counts as named (it was named before it was recorded)."""
    inode = pending.get("archive_inode")
    if inode is None:
        return True
    if archive_dir is None and not pending.get("beside", True):
        return True
    info = (archive_dir or directory).lstat(str(pending["archive"]))
    return info is not None and info.st_ino == int(inode)


def _fill_head(fd: int, length: int, line_end_sha256: str) -> int:
    """Overwrite the first ``length`` bytes of the log (the end of the line the cut fell in,
    archived whole) with newlines, only if they are still those bytes; return ``length`` if
    they are newlines now, 0 if the file holds something else there (replaced or
    truncated by someone else since: left untouched). Safe under an appending writer: those
    bytes are complete and only their own newline is kept in place."""
    if length <= 0:
        return 0
    head = os.pread(fd, length, 0)
    if head == FILLER * length:
        return length
    if len(head) != length or hashlib.sha256(head).hexdigest() != line_end_sha256:
        return 0
    os.pwrite(fd, FILLER * (length - 1), 0)
    # Durable before the state says so: after a power cut the part line never reappears.
    os.fdatasync(fd)
    return length


def _finish_cut(state: RotationState, fd: int, cut: int, filled: int) -> None:
    """Record a finished cut of ``cut`` bytes from the open log, whose first ``filled``
    bytes are now filler, and save the state."""
    inode = os.fstat(fd).st_ino
    state.collapsed = (state.collapsed if state.inode == inode else 0) + cut
    state.carry, state.pending, state.filled = b"", None, filled
    state.inode, state.head = inode, os.pread(fd, HEAD_BYTES, 0)
    state.save()


def rotate_in(
    directory: Directory,
    name: str,
    *,
    moment: datetime,
    expect: Identity | None = None,
    archive_dir: Directory | None = None,
    compression: Compression = "zstd",
    mode: Literal["auto", "collapse", "truncate"] = "auto",
) -> RotationResult | None:
    """Given a log's open directory and name (and the inode a listing saw), move what it
    holds to a verified, compressed, date-stamped archive and remove it from the log
    without losing or doubling a byte; return what was done, or None if the log holds less
    than one filesystem block.

    ``mode``: ``collapse`` requires FALLOC_FL_COLLAPSE_RANGE (raise RotationError where the
    filesystem lacks it), ``truncate`` copies and truncates (with a measured loss window),
    ``auto`` collapses where it can. Raise RotationError if the archive does not verify or
    cannot be written (a full disk; the log is then unchanged), or if the log is a link, not
    a regular file, another inode than ``expect``, or hard-linked elsewhere (nothing is
    touched then).
    """
    archives = archive_dir or directory
    with _rotation_lock(directory):
        recover_in(directory, name, archive_dir=archives, expect=expect)
        return _rotate_locked(directory, name, moment, expect, archives, compression, mode)


def _rotate_locked(
    directory: Directory,
    name: str,
    moment: datetime,
    expect: Identity | None,
    archives: Directory,
    compression: Compression,
    mode: Literal["auto", "collapse", "truncate"],
) -> RotationResult | None:
    """``rotate_in`` once the rotation lock is held and any interrupted cut finished."""
    fd = _open_log(directory, name, expect)
    try:
        with state_of(directory, name) as state:
            skip = state.filler(fd)
        cut = find_cut(fd, os.fstat(fd).st_size, os.fstatvfs(fd).f_bsize, skip)
        if isinstance(cut, str):
            return None
        if mode != "truncate":
            try:
                return _rotate_collapse(directory, name, fd, cut, archives, moment, compression)
            except OSError as error:
                if mode == "collapse" or error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise RotationError(
                        f"cannot collapse {directory.path / name}: {error.strerror}"
                    ) from error
        try:
            return _rotate_truncate(directory, name, fd, archives, moment, compression)
        except UnsafeFileError:
            raise
        except OSError as error:
            # A full disk, most often: the log is cut only once its archive is complete.
            raise RotationError(
                f"cannot rotate {directory.path / name}: {error.strerror}"
            ) from error
    finally:
        os.close(fd)


def rotate(
    log: Path,
    *,
    moment: datetime,
    archive_dir: Path | None = None,
    compression: Compression = "zstd",
    mode: Literal["auto", "collapse", "truncate"] = "auto",
) -> RotationResult | None:
    """``rotate_in`` for a log given by path (its directory is the caller's, trusted as
    written; the log itself is still never followed through a link)."""
    with Directory.open(log.parent) as directory:
        if archive_dir is None:
            return rotate_in(directory, log.name, moment=moment, compression=compression, mode=mode)
        with Directory.open(archive_dir, create=True) as archives:
            return rotate_in(
                directory,
                log.name,
                moment=moment,
                archive_dir=archives,
                compression=compression,
                mode=mode,
            )


def recover(log: Path, *, archive_dir: Path | None = None) -> bool:
    """``recover_in`` for a log given by path (under the rotation lock); ``archive_dir``:
    where its archives go, if not beside it."""
    with Directory.open(log.parent) as directory, _rotation_lock(directory):
        if archive_dir is None:
            return recover_in(directory, log.name)
        with Directory.open(archive_dir) as archives:
            return recover_in(directory, log.name, archive_dir=archives)


def _rotate_collapse(
    directory: Directory,
    name: str,
    fd: int,
    cut: Cut,
    archives: Directory,
    moment: datetime,
    compression: Compression,
) -> RotationResult:
    with state_of(directory, name) as state:
        # The last cut's filler stands for bytes archived then: hashed, never archived again.
        start = min(state.filler(fd), cut.at)
        writer = _ArchiveWriter(archives, name, moment, compression, os.fstat(fd))
        prefix = hashlib.sha256()
        try:
            writer.write(state.carried_line(fd))
            position = _read_range(fd, 0, start, prefix.update)
            position = _read_range(fd, position, cut.at, lambda chunk: _both(chunk, prefix, writer))
            line_end = os.pread(fd, cut.end - cut.at, cut.at) if cut.end > cut.at else b""
            if position < cut.at or len(line_end) < cut.end - cut.at:
                raise RotationError(f"{directory.path / name} shrank while it was being rotated")
            writer.write(line_end)
            # Probe the filesystem before naming the archive: if it cannot collapse, nothing
            # is left behind and the caller falls back to truncating.
            _probe_collapse(directory)
            line_end_sha256 = hashlib.sha256(line_end).hexdigest()
            record: dict[str, Any] = {
                "cut": cut.at,
                "prefix_sha256": prefix.hexdigest(),
                "fill": cut.end - cut.at,
                "fill_sha256": line_end_sha256,
                "inode": os.fstat(fd).st_ino,
            }
            archive = writer.commit(_recorder(state, record, archives is directory))
        except BaseException:
            writer.abort()
            raise
        collapse_prefix(fd, cut.at)
        _finish_cut(state, fd, cut.at, _fill_head(fd, cut.end - cut.at, line_end_sha256))
    return RotationResult(archive, writer.size, "collapse")


def _recorder(
    state: RotationState, record: dict[str, Any], beside: bool
) -> Callable[[str, int], None]:
    """Return the hook that records a cut as pending, naming its archive and the archive's
    inode, before the archive gets that name: a kill after the naming finds the cut to
    finish; a kill before it, an unnamed archive and a log untouched."""

    def before_naming(final: str, inode: int) -> None:
        state.pending = {**record, "archive": final, "archive_inode": inode, "beside": beside}
        state.save()

    return before_naming


def _probe_collapse(directory: Directory) -> None:
    """Raise OSError if the filesystem of ``directory`` cannot collapse a range (tried on
    a scratch file there, so the log itself is untouched)."""
    scratch = directory.create_temporary("probe")
    try:
        block = os.fstatvfs(scratch.fd).f_bsize
        os.pwrite(scratch.fd, b"\0" * (2 * block), 0)
        collapse_prefix(scratch.fd, block)
    finally:
        scratch.abort()


def _rotate_truncate(
    directory: Directory,
    name: str,
    fd: int,
    archives: Directory,
    moment: datetime,
    compression: Compression,
    *,
    start: int = 0,
) -> RotationResult:
    """Copy the log from ``start`` to its end into a verified, named archive, then
    truncate it; the bytes appended meanwhile become the carry that starts the next
    archive. Nothing is cut before the archive is complete under its name, and the cut is
    recorded first, so a full disk leaves the log whole and a crash is finished by the
    next run (``recover_in``) rather than repeated."""
    with state_of(directory, name) as state:
        writer = _ArchiveWriter(archives, name, moment, compression, os.fstat(fd))
        prefix = hashlib.sha256()
        try:
            writer.write(state.carried_line(fd))
            # A collapse's filler stands for bytes archived then: hashed, not archived again.
            position = _read_range(fd, 0, max(start, state.filler(fd)), prefix.update)
            position = _read_range(fd, position, None, lambda chunk: _both(chunk, prefix, writer))
            # The archive holds the carry and [start, position): once it has its name a
            # repeat would double them, so the cut is recorded before it is named.
            record = {
                "method": "truncate",
                "cut": position,
                "prefix_sha256": prefix.hexdigest(),
                "compression": compression,
                "fragment": "",
            }
            archive = writer.commit(_recorder(state, record, archives is directory))
        except BaseException:
            writer.abort()
            raise
        assert state.pending is not None  # noqa: S101 - recorded before the naming
        state.carry = b""
        late = _read_tail(fd, position, MAX_CARRY_BYTES)
        if late is None:
            # More was appended while the archive was verified than a carry may hold: the
            # next run archives it (from the recorded cut) and truncates then.
            return RotationResult(archive, writer.size, "truncate")
        state.pending["fragment"] = base64.b64encode(late).decode()
        state.save()
        # Appends between this last read and the truncation are lost: keep it short.
        extra = _read_tail(fd, position + len(late), None) or b""
        last_read = time.perf_counter()
        os.ftruncate(fd, 0)
        window = time.perf_counter() - last_read
        state.carry, state.pending, state.filled = late + extra, None, 0
        state.inode, state.head = os.fstat(fd).st_ino, os.pread(fd, HEAD_BYTES, 0)
        state.save()
    return RotationResult(archive, writer.size, "truncate", window)


def _both(chunk: bytes, prefix: Any, writer: _ArchiveWriter) -> None:
    prefix.update(chunk)
    writer.write(chunk)


def _read_range(fd: int, position: int, end: int | None, sink: Any) -> int:
    """Hand the bytes of ``fd`` from ``position`` to ``end`` (None: to its end, however
    far it grows meanwhile) to ``sink`` in bounded chunks; return where reading stopped."""
    while end is None or position < end:
        wanted = CHUNK_BYTES if end is None else min(CHUNK_BYTES, end - position)
        chunk = os.pread(fd, wanted, position)
        if not chunk:
            break
        sink(chunk)
        position += len(chunk)
    return position


def _read_tail(fd: int, position: int, limit: int | None) -> bytes | None:
    """Return the bytes of ``fd`` from ``position`` to its end, or None if there are more
    than ``limit``."""
    parts: list[bytes] = []
    total = 0

    def keep(chunk: bytes) -> None:
        nonlocal total
        parts.append(chunk)
        total += len(chunk)

    _read_range(fd, position, None if limit is None else position + limit + 1, keep)
    if limit is not None and total > limit:
        return None
    return b"".join(parts)


def compress_descriptor(
    source_fd: int,
    archives: Directory,
    log_name: str,
    moment: datetime,
    compression: Compression,
    like: os.stat_result,
) -> tuple[Path, int]:
    """Given an open file no one writes to any more, write it to a free archive name in
    ``archives`` compressed (temporary name with ``like``'s mode and owner, fsynced,
    verified, then named); return the archive's path and the uncompressed size. Raise
    RotationError if it does not verify."""
    writer = _ArchiveWriter(archives, log_name, moment, compression, like)
    try:
        position = 0
        while chunk := os.pread(source_fd, CHUNK_BYTES, position):
            writer.write(chunk)
            position += len(chunk)
        archive = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return archive, writer.size
