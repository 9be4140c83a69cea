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
logrotate, catching up with appends until the last moment, and the loss window (from the
last read to the truncation) is measured and reported.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import errno
import gzip
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

FALLOC_FL_COLLAPSE_RANGE = 0x08
CHUNK_BYTES = 1 << 20
"""Read and compress this much at a time: memory stays bounded whatever the log's size."""
MAX_CARRY_BYTES = 1 << 20
"""A part line longer than this (a log without newlines) is archived split, not carried."""
HEAD_BYTES = 64
"""How many of a log's first bytes after a cut are remembered, to know it is still the same."""
STATE_DIR = ".upkeep-rotate"
TEMP_PREFIX = ".upkeep-tmp-"

Compression = Literal["zstd", "gzip", "none"]
SUFFIXES: dict[str, str] = {"zstd": ".zst", "gzip": ".gz", "none": ""}


class RotationError(Exception):
    """The rotation could not be done; the log is unchanged (or finished on the next run)."""


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


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (fsync the directory)."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _State:
    """The per-log state file: the carried part line and a pending cut, if any."""

    def __init__(self, log: Path) -> None:
        self.path = log.parent / STATE_DIR / f"{log.name}.json"
        self.carry = b""
        self.pending: dict[str, Any] | None = None
        # The file the carry belongs to and its first bytes after the cut: a file replaced
        # or truncated by someone else since then does not continue the carried line.
        self.inode: int | None = None
        self.head = b""
        # Bytes collapsed out of this inode so far: lets a reader of the log (the logs
        # probes' tail) find where its read position went after a cut.
        self.collapsed = 0
        if self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.carry = base64.b64decode(data.get("carry", ""))
            self.pending = data.get("pending")
            self.inode = data.get("inode")
            self.head = base64.b64decode(data.get("head", ""))
            self.collapsed = int(data.get("collapsed", 0))

    def carried_line(self, fd: int) -> bytes:
        """Return the carry as it starts the next archive: as is when the file continues
        it, or as a line of its own (newline added) when the file was replaced since."""
        if not self.carry:
            return b""
        if os.fstat(fd).st_ino == self.inode and os.pread(fd, len(self.head), 0) == self.head:
            return self.carry
        return self.carry if self.carry.endswith(b"\n") else self.carry + b"\n"

    def save(self) -> None:
        """Write the state atomically (temporary file, fsync, rename, fsync directory)."""
        self.path.parent.mkdir(exist_ok=True)
        document = {
            "carry": base64.b64encode(self.carry).decode(),
            "pending": self.pending,
            "inode": self.inode,
            "head": base64.b64encode(self.head).decode(),
            "collapsed": self.collapsed,
        }
        temporary = self.path.with_name(f"{TEMP_PREFIX}{self.path.name}")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
        fsync_dir(self.path.parent)


def carried_part_line(log: Path, fd: int) -> bytes:
    """Given a log and an open descriptor of it, return the part line upkeep's last collapse
    of it carried (the start of the line the file now begins with), or b"" if there is none
    or the file no longer continues it (replaced or truncated since)."""
    try:
        state = _State(log)
    except (OSError, ValueError):
        return b""
    if not state.carry or state.inode is None:
        return b""
    if os.fstat(fd).st_ino == state.inode and os.pread(fd, len(state.head), 0) == state.head:
        return state.carry
    return b""


def collapsed_bytes(log: Path, fd: int) -> int | None:
    """Given a log and an open descriptor of it, return how many bytes upkeep's collapse
    rotations have cut from the front of this very file (same inode): 0 if upkeep never
    rotated it, None if unknown."""
    try:
        state = _State(log)
    except (OSError, ValueError):
        return None
    if not state.path.exists():
        return 0
    if state.inode is None or state.inode != os.fstat(fd).st_ino:
        return None
    return state.collapsed


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


def _decompressed(path: Path, compression: Compression) -> Iterator[bytes]:
    with open(path, "rb") as raw:
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


class _ArchiveWriter:
    """Writes an archive under a temporary name; ``commit`` verifies it and names it."""

    def __init__(self, final: Path, compression: Compression) -> None:
        self.final = final
        self.compression = compression
        self.temporary = final.with_name(f"{TEMP_PREFIX}{final.name}")
        self._raw = open(self.temporary, "wb")  # noqa: SIM115 - closed in commit/abort
        self._stream = _compressor(self._raw, compression)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self) -> None:
        """Finish, fsync and verify (decompress and compare the hash) the archive, then
        give it its name; raise RotationError (removing the temporary) if it does not
        verify."""
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        check = hashlib.sha256()
        for chunk in _decompressed(self.temporary, self.compression):
            check.update(chunk)
        if check.digest() != self._hash.digest():
            self.temporary.unlink(missing_ok=True)
            raise RotationError(f"archive {self.final.name} did not verify; nothing changed")
        self.temporary.replace(self.final)
        fsync_dir(self.final.parent)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._stream is not self._raw:
                self._stream.close()
        with contextlib.suppress(Exception):
            self._raw.close()
        self.temporary.unlink(missing_ok=True)


def archive_name(log: Path, directory: Path, moment: datetime, compression: Compression) -> Path:
    """Return a date-stamped archive path for a log that does not exist yet
    (``app.log`` → ``app.log-20261123-140501.zst``, then ``…-140501.1.zst``)."""
    stamp = moment.strftime("%Y%m%d-%H%M%S")
    suffix = SUFFIXES[compression]
    candidate = directory / f"{log.name}-{stamp}{suffix}"
    number = 0
    while candidate.exists():
        number += 1
        candidate = directory / f"{log.name}-{stamp}.{number}{suffix}"
    return candidate


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


def recover(log: Path) -> bool:
    """Given a log, finish a rotation a crash interrupted (perform or confirm its pending
    cut) and remove temporary archives; return whether there was anything to finish."""
    state = _State(log)
    for leftover in log.parent.glob(f"{TEMP_PREFIX}{log.name}-*"):
        leftover.unlink(missing_ok=True)
    if state.pending is None:
        return False
    cut = int(state.pending["cut"])
    fd = os.open(log, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size > cut and _prefix_sha256(fd, cut) == state.pending["prefix_sha256"]:
            collapse_prefix(fd, cut)
    finally:
        os.close(fd)
    state.carry = base64.b64decode(state.pending["fragment"])
    state.pending = None
    with open(log, "rb") as handle:
        state.inode, state.head = os.fstat(handle.fileno()).st_ino, handle.read(HEAD_BYTES)
    state.save()
    return True


def rotate(
    log: Path,
    *,
    moment: datetime,
    archive_dir: Path | None = None,
    compression: Compression = "zstd",
    mode: Literal["auto", "collapse", "truncate"] = "auto",
) -> RotationResult | None:
    """Given a log a writer appends to, move what it holds to a verified, compressed,
    date-stamped archive and remove it from the log without losing or doubling a byte;
    return what was done, or None if the log holds less than one filesystem block.

    ``mode``: ``collapse`` requires FALLOC_FL_COLLAPSE_RANGE (raise RotationError where the
    filesystem lacks it), ``truncate`` copies and truncates (with a measured loss window),
    ``auto`` collapses where it can. Raise RotationError if the archive does not verify
    (the log is then unchanged).
    """
    recover(log)
    directory = archive_dir or log.parent
    fd = os.open(log, os.O_RDWR)
    try:
        block = os.fstatvfs(fd).f_bsize
        size = os.fstat(fd).st_size
        if size <= block:
            return None
        if mode == "truncate":
            return _rotate_truncate(log, fd, directory, moment, compression)
        try:
            return _rotate_collapse(log, fd, block, size, directory, moment, compression)
        except OSError as error:
            if mode == "collapse" or error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise RotationError(f"cannot collapse {log}: {error.strerror}") from error
            return _rotate_truncate(log, fd, directory, moment, compression)
    finally:
        os.close(fd)


def _rotate_collapse(
    log: Path,
    fd: int,
    block: int,
    size: int,
    directory: Path,
    moment: datetime,
    compression: Compression,
) -> RotationResult:
    state = _State(log)
    # Strictly before the end: the kernel refuses a range that reaches EOF.
    cut = ((size - 1) // block) * block
    final = archive_name(log, directory, moment, compression)
    writer = _ArchiveWriter(final, compression)
    prefix = hashlib.sha256()
    try:
        writer.write(state.carried_line(fd))
        held = b""
        position = 0
        while position < cut:
            chunk = os.pread(fd, min(CHUNK_BYTES, cut - position), position)
            if not chunk:
                raise RotationError(f"{log} shrank while it was being rotated")
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
        _probe_collapse(log.parent)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    state.pending = {
        "cut": cut,
        "prefix_sha256": prefix.hexdigest(),
        "archive": final.name,
        "fragment": base64.b64encode(held).decode(),
    }
    state.save()
    collapse_prefix(fd, cut)
    state.collapsed = (state.collapsed if state.inode == os.fstat(fd).st_ino else 0) + cut
    state.carry, state.pending = held, None
    state.inode, state.head = os.fstat(fd).st_ino, os.pread(fd, HEAD_BYTES, 0)
    state.save()
    return RotationResult(final, writer.size, "collapse")


def _probe_collapse(directory: Path) -> None:
    """Raise OSError if the filesystem of ``directory`` cannot collapse a range (tried on
    a scratch file there, so the log itself is untouched)."""
    scratch = directory / f"{TEMP_PREFIX}probe-{os.getpid()}"
    probe = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        block = os.fstatvfs(probe).f_bsize
        os.pwrite(probe, b"\0" * (2 * block), 0)
        collapse_prefix(probe, block)
    finally:
        os.close(probe)
        scratch.unlink()


def _rotate_truncate(
    log: Path, fd: int, directory: Path, moment: datetime, compression: Compression
) -> RotationResult:
    state = _State(log)
    final = archive_name(log, directory, moment, compression)
    writer = _ArchiveWriter(final, compression)
    try:
        writer.write(state.carried_line(fd))
        position = 0
        while True:
            chunk = os.pread(fd, CHUNK_BYTES, position)
            if not chunk:
                break
            writer.write(chunk)
            position += len(chunk)
        # Appends between this last read and the truncation are lost: keep it short.
        last_read = time.perf_counter()
        os.ftruncate(fd, 0)
        window = time.perf_counter() - last_read
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    state.carry, state.pending = b"", None
    state.save()
    return RotationResult(final, writer.size, "truncate", window)


def compress_file(source: Path, final: Path, compression: Compression) -> int:
    """Given a file no one writes to any more, write it to ``final`` compressed (under a
    temporary name, fsynced, verified, then renamed) and return its uncompressed size;
    the source is left for the caller to remove. Raise RotationError if it does not verify.
    """
    writer = _ArchiveWriter(final, compression)
    try:
        with open(source, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                writer.write(chunk)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return writer.size
