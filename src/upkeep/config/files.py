"""Reading the files a config names, so that no file can hang or exhaust the reader.

The config file and ``${file:}`` secrets are read through ``read_text_file``: only a
regular file (symbolic links are followed: secret mounts such as Kubernetes' ``..data``
links are made of them), never a FIFO, socket, device or directory; at most a stated
number of bytes; strict UTF-8 with the line and column of the first byte that is not.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from upkeep.core.text import format_bytes

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class FileReadError(Exception):
    """A file cannot be read as the config needs it; the message says why (and, for text
    that is not UTF-8, ``line`` and ``column`` say where)."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_capped(path: Path, limit: int) -> bytes:
    """Given a path and a size limit in bytes, return the file's bytes.

    Raise ``FileReadError`` if it cannot be opened, is not a regular file (checked before
    opening, so a FIFO or device is never opened, and again on the opened descriptor, so
    a file swapped in between is caught), or is larger than ``limit``.
    """
    try:
        before = os.stat(path)
    except ValueError:  # a NUL byte in the path
        raise FileReadError("the path contains a NUL byte") from None
    except OSError as error:
        raise FileReadError(error.strerror or str(error)) from None
    if not stat.S_ISREG(before.st_mode):
        raise FileReadError(f"{_kind(before.st_mode)}, not a regular file")
    if before.st_size > limit:
        raise FileReadError(f"larger than {format_bytes(limit)} ({before.st_size:,} bytes)")
    # O_NONBLOCK: should a FIFO be swapped in after the check, opening it does not wait
    # for a writer; O_NOCTTY: a terminal never becomes ours.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise FileReadError(error.strerror or str(error)) from None
    try:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode):
            raise FileReadError(f"{_kind(opened.st_mode)}, not a regular file")
        chunks: list[bytes] = []
        total = 0
        while True:
            # One byte more than allowed tells a file that grew since the stat.
            chunk = os.read(descriptor, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileReadError(f"larger than {format_bytes(limit)}")
    except OSError as error:
        raise FileReadError(error.strerror or str(error)) from None
    finally:
        os.close(descriptor)
    return b"".join(chunks)


def decode_utf8(data: bytes) -> str:
    """Given bytes, return them decoded as UTF-8 (a leading byte-order mark dropped).

    Raise ``FileReadError`` naming the line, column and byte offset of the first byte
    that is not UTF-8.
    """
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = bom + error.start
        line = data.count(b"\n", 0, offset) + 1
        line_start = max(bom, data.rfind(b"\n", 0, offset) + 1)
        # The column counts characters; what precedes the bad byte on its line is valid.
        column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
        raise FileReadError(
            f"not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset:,} "
            f"(line {line}, column {column}) is not valid UTF-8",
            line,
            column,
        ) from None


def read_text_file(path: Path, limit: int) -> str:
    """Given a path and a size limit in bytes, return the file's text (UTF-8).

    Raise ``FileReadError`` as ``read_capped`` and ``decode_utf8`` do.
    """
    return decode_utf8(read_capped(path, limit))
