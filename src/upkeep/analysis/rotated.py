"""What upkeep's log rotation leaves beside a log, as its readers need to know it.

``logs.rotate`` (``upkeep.tasks.logs.rotation``) writes a state file per log in a private
``.upkeep-rotate`` directory: the inode and first bytes of the file after the last cut,
how many bytes it has collapsed out of it, how many of its first bytes are *filler* (the
end of the line the block-aligned cut fell in: archived whole, and overwritten in the live
file with newlines, so that the file begins with empty lines and then a whole line), and
what a copy-and-truncate carried over (the lines appended between its last read and the
truncation, which begin the next archive). The tail of the logs probes reads the same files
to follow a log across a cut. The format lives here, below both, so that the reader does
not import the rotator.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from upkeep.io.safefs import TEMP_PREFIX, Directory, UnsafeFileError

MAX_STATE_BYTES = 8 << 20
"""A state file holds at most two carried part lines in base64: more is not ours."""


STATE_DIR = ".upkeep-rotate"

FILLER = b"\n"
"""The byte a collapse writes over the archived end of the line its cut fell in: a newline,
so that every reader of the live file sees empty lines there, never part of a line."""


RENAMED_PREFIX = f"{TEMP_PREFIX}renamed-"
"""Where rename mode keeps a log between its rename and its compression
(``.upkeep-tmp-renamed-<log>-YYYYmmdd-HHMMSS.<random digits>``)."""


class RotationError(Exception):
    """The rotation could not be done; the log is unchanged (or finished on the next run)."""


def state_directory(directory: Directory, *, create: bool) -> Directory | None:
    """Return the log directory's state directory, or None if there is none (and
    ``create`` is off). Raise RotationError if it is not upkeep's: a directory someone
    else owns or can write would let them feed upkeep a forged state."""
    try:
        return directory.private_child(STATE_DIR, create=create)
    except FileNotFoundError:
        return None
    except UnsafeFileError as error:
        raise RotationError(
            f"{directory.path / STATE_DIR} is {error.strerror}; refusing to trust the "
            "rotation state in it: remove it and upkeep makes its own"
        ) from None


class RotationState:
    """The per-log state file: the filler, the carry and a pending cut, if any."""

    def __init__(self, directory: Directory, log_name: str, *, create: bool = True) -> None:
        self.file_name = f"{log_name}.json"
        self.carry = b""
        self.pending: dict[str, Any] | None = None
        # The file the carry belongs to and its first bytes after the cut: a file replaced
        # or truncated by someone else since then does not continue the carried line.
        self.inode: int | None = None
        self.head = b""
        # Bytes collapsed out of this inode so far: lets a reader of the log (the logs
        # probes' tail) find where its read position went after a cut.
        self.collapsed = 0
        # How many of the file's first bytes are filler standing for bytes already archived
        # (the end of the line the last cut fell in): the next archive starts after them.
        self.filled = 0
        self.exists = False
        self.directory = state_directory(directory, create=create)
        if self.directory is None:
            return
        try:
            raw = self.directory.read_bytes(self.file_name, limit=MAX_STATE_BYTES)
        except (UnsafeFileError, ValueError) as error:
            self.close()
            raise RotationError(f"rotation state {self.file_name}: {error}") from None
        if raw is None:
            return
        try:
            data = json.loads(raw.decode("utf-8"))
            self.carry = base64.b64decode(data.get("carry", ""))
            self.pending = data.get("pending")
            self.inode = data.get("inode")
            self.head = base64.b64decode(data.get("head", ""))
            self.collapsed = int(data.get("collapsed", 0))
            self.filled = int(data.get("filled", 0))
        except (ValueError, TypeError, AttributeError, binascii.Error) as error:
            self.close()
            raise RotationError(
                f"rotation state {self._where()} is damaged ({error}); move it away to start "
                "afresh (the next archive then lacks at most one carried part line)"
            ) from None
        self.exists = True

    def _where(self) -> str:
        return str(self.directory.path / self.file_name) if self.directory else self.file_name

    def carried_line(self, fd: int) -> bytes:
        """Return the carry as it starts the next archive: as is when the file continues
        it, or as a line of its own (newline added) when the file was replaced since."""
        if not self.carry:
            return b""
        if os.fstat(fd).st_ino == self.inode and os.pread(fd, len(self.head), 0) == self.head:
            return self.carry
        return self.carry if self.carry.endswith(b"\n") else self.carry + b"\n"

    def filler(self, fd: int) -> int:
        """Return how many of the open log's first bytes are the last cut's filler (already
        archived, to be skipped): the recorded length while the file is the one cut (same
        inode, same first bytes) and still begins with that many newlines, else 0."""
        if self.filled <= 0 or os.fstat(fd).st_ino != self.inode:
            return 0
        start = os.pread(fd, max(self.filled, len(self.head)), 0)
        if not start.startswith(self.head) or start[: self.filled] != FILLER * self.filled:
            return 0
        return self.filled

    def save(self) -> None:
        """Write the state atomically (0600 temporary file, fsync, rename, fsync dir)."""
        if self.directory is None:
            raise RotationError("the rotation state was opened read-only")
        document = {
            "carry": base64.b64encode(self.carry).decode(),
            "pending": self.pending,
            "inode": self.inode,
            "head": base64.b64encode(self.head).decode(),
            "collapsed": self.collapsed,
            "filled": self.filled,
        }
        self.directory.write_atomic(self.file_name, json.dumps(document).encode())

    def close(self) -> None:
        """Release the state directory."""
        if self.directory is not None:
            self.directory.close()
            self.directory = None


@contextlib.contextmanager
def state_of(
    directory: Directory, log_name: str, *, create: bool = True
) -> Iterator[RotationState]:
    state = RotationState(directory, log_name, create=create)
    try:
        yield state
    finally:
        state.close()


def read_state(log: Path) -> RotationState | None:
    """Open a log's state read-only for a reader of the log (the tail); None if unknown."""
    try:
        with (
            Directory.open(log.parent) as directory,
            state_of(directory, log.name, create=False) as state,
        ):
            return state  # its fields are read; the directory is closed on the way out
    except (OSError, RotationError):
        return None


def carried_part_line(log: Path, fd: int) -> bytes:
    """Given a log and an open descriptor of it, return what upkeep's last rotation of it
    carried (a copy-and-truncate: the lines appended while its archive was verified; a
    collapse by an upkeep from before the filler: the start of the line the file begins
    with), or b"" if there is none or the file no longer continues it (replaced or
    truncated since)."""
    state = read_state(log)
    if state is None or not state.carry or state.inode is None:
        return b""
    if os.fstat(fd).st_ino == state.inode and os.pread(fd, len(state.head), 0) == state.head:
        return state.carry
    return b""


def filled_head(log: Path, fd: int) -> int:
    """Given a log and an open descriptor of it, return how many of its first bytes are the
    newlines upkeep's last collapse wrote over the end of the line it cut (that line is whole
    in an archive): 0 if none, or if the file was replaced or truncated since."""
    state = read_state(log)
    return 0 if state is None else state.filler(fd)


def collapsed_bytes(log: Path, fd: int) -> int | None:
    """Given a log and an open descriptor of it, return how many bytes upkeep's collapse
    rotations have cut from the front of this very file (same inode): 0 if upkeep never
    rotated it, None if unknown."""
    state = read_state(log)
    if state is None:
        return None
    if not state.exists:
        return 0
    if state.inode is None or state.inode != os.fstat(fd).st_ino:
        return None
    return state.collapsed
