"""Rotating a log a writer keeps appending to, without losing or doubling a line.

``copytruncate`` as logrotate does it copies the file, then truncates it: whatever the
writer appends between the end of the copy and the truncation is lost (2.6 % of the lines
of a fast writer, measured on this machine). Here, where the filesystem supports it (ext4,
XFS), the copied prefix is removed with ``fallocate(FALLOC_FL_COLLAPSE_RANGE)`` instead,
at a block-aligned offset (what logrotate's unmerged ``copyreduce`` proposes): the kernel
shifts the rest of the file down under the inode lock that ``O_APPEND`` writes also take,
so an append lands either before the cut (and is in the copy) or after it (and stays).

The cut is block-aligned, so it usually falls inside a line. The archive ends at the last
whole line before the cut; the part line after it (the *carry*, less than a block) is kept
in the file's state and starts the next archive. Archives therefore hold whole lines, and
all archives in order followed by the live file are the writer's exact byte stream.

Crash safety: the archive is written under a temporary name, compressed, fsynced, verified
by decompressing it, and renamed; only then is the cut recorded as pending in the state
file (written atomically), performed, and the state finalised. A run that finds a pending
cut checks the file's first bytes against the recorded hash: still there, it performs the
cut; gone, the cut was done and it only finalises. A temporary archive left by a crash is
removed and the rotation done again. Nothing half-written ever carries an archive's name.

Where the filesystem cannot collapse (tmpfs, btrfs), the file is copied and truncated like
logrotate, but in the safe order: the archive is complete, verified and named first (a full
disk leaves the log whole), the cut is recorded, the bytes appended meanwhile are read and
recorded as the carry, and only then is the file truncated. The loss window (from the last
read to the truncation) is measured and reported. A run that finds a recorded truncation
the log still begins with archives the rest from the recorded offset and truncates then; one
the log no longer begins with was done, and only its carry is kept. A crash between the
truncation and the last state write loses what was appended during that one state write.

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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

from upkeep.analysis.rotated import RotationError, state_directory, state_of
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
"""A part line longer than this (a log without newlines) is archived split, not carried."""
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

    def commit(self) -> Path:
        """Finish, fsync and verify (decompress and compare the hash) the archive, then
        give it a free archive name and return its path; raise RotationError (removing the
        temporary) if it does not verify."""
        if self._stream is not self.temporary.handle:
            self._stream.close()
        self.temporary.finish()
        check = hashlib.sha256()
        descriptor = self.directory.open_file(
            self.temporary.name, expect=Identity.of(os.fstat(self.temporary.fd))
        )
        with os.fdopen(descriptor, "rb") as reader:
            for chunk in decompressed(reader, self.compression):
                check.update(chunk)
        if check.digest() != self._hash.digest():
            self.temporary.abort()
            raise RotationError(f"the archive of {self.log_name} did not verify; nothing changed")
        for _ in range(ARCHIVE_NAME_ATTEMPTS):
            final = archive_name(self.log_name, self.directory, self.moment, self.compression)
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
    """Given a log's directory and name, finish a rotation a crash interrupted (perform or
    confirm its pending cut) and remove its temporary archives; return whether there was a
    cut to finish. Raise RotationError if the log or the state cannot be trusted."""
    for place in {id(directory): directory, id(archive_dir): archive_dir}.values():
        if place is not None:
            place.remove_temporaries(name)
    with state_of(directory, name, create=False) as state:
        if state.directory is not None:
            state.directory.remove_temporaries(state.file_name)
        if state.pending is None:
            return False
        cut = int(state.pending["cut"])
        truncating = state.pending.get("method") == "truncate"
        fd = _open_log(directory, name, expect)
        try:
            size = os.fstat(fd).st_size
            still_there = (size >= cut if truncating else size > cut) and _prefix_sha256(
                fd, cut
            ) == state.pending["prefix_sha256"]
            if still_there and truncating:
                # The archive was named but the log never truncated: archive the rest from
                # the recorded cut and truncate now (its own record replaces this one).
                compression = cast("Compression", state.pending.get("compression", "zstd"))
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
            state.carry = base64.b64decode(state.pending["fragment"])
            state.pending = None
            state.inode, state.head = os.fstat(fd).st_ino, os.pread(fd, HEAD_BYTES, 0)
        finally:
            os.close(fd)
        state.save()
    return True


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
        block = os.fstatvfs(fd).f_bsize
        size = os.fstat(fd).st_size
        if size <= block:
            return None
        if mode != "truncate":
            try:
                return _rotate_collapse(
                    directory, name, fd, block, size, archives, moment, compression
                )
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


def recover(log: Path) -> bool:
    """``recover_in`` for a log given by path (under the rotation lock)."""
    with Directory.open(log.parent) as directory, _rotation_lock(directory):
        return recover_in(directory, log.name)


def _rotate_collapse(
    directory: Directory,
    name: str,
    fd: int,
    block: int,
    size: int,
    archives: Directory,
    moment: datetime,
    compression: Compression,
) -> RotationResult:
    with state_of(directory, name) as state:
        # Strictly before the end: the kernel refuses a range that reaches EOF.
        cut = ((size - 1) // block) * block
        writer = _ArchiveWriter(archives, name, moment, compression, os.fstat(fd))
        prefix = hashlib.sha256()
        try:
            writer.write(state.carried_line(fd))
            held = b""
            position = 0
            while position < cut:
                chunk = os.pread(fd, min(CHUNK_BYTES, cut - position), position)
                if not chunk:
                    raise RotationError(
                        f"{directory.path / name} shrank while it was being rotated"
                    )
                prefix.update(chunk)
                position += len(chunk)
                data = held + chunk
                end = data.rfind(b"\n") + 1
                if end == 0 and len(data) > MAX_CARRY_BYTES:
                    end = len(data)  # no newline for a megabyte: archive it split
                writer.write(data[:end])
                held = data[end:]
            # Probe the filesystem before naming the archive: if it cannot collapse, nothing
            # is left behind and the caller falls back to truncating.
            _probe_collapse(directory)
            archive = writer.commit()
        except BaseException:
            writer.abort()
            raise
        state.pending = {
            "cut": cut,
            "prefix_sha256": prefix.hexdigest(),
            "archive": writer.final,
            "fragment": base64.b64encode(held).decode(),
        }
        state.save()
        collapse_prefix(fd, cut)
        state.collapsed = (state.collapsed if state.inode == os.fstat(fd).st_ino else 0) + cut
        state.carry, state.pending = held, None
        state.inode, state.head = os.fstat(fd).st_ino, os.pread(fd, HEAD_BYTES, 0)
        state.save()
    return RotationResult(archive, writer.size, "collapse")


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
            position = _read_range(fd, 0, start, prefix.update)
            position = _read_range(fd, position, None, lambda chunk: _both(chunk, prefix, writer))
            archive = writer.commit()
        except BaseException:
            writer.abort()
            raise
        # The archive holds the carry and [start, position): from here a repeat would
        # double them, so the cut is recorded before it is made.
        state.carry = b""
        state.pending = {
            "method": "truncate",
            "cut": position,
            "prefix_sha256": prefix.hexdigest(),
            "archive": writer.final,
            "compression": compression,
            "fragment": "",
        }
        state.save()
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
        state.carry, state.pending = late + extra, None
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
