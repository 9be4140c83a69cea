"""Reading the files a config names: regular files only, a size cap, strict UTF-8."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from upkeep.config.files import FileReadError, read_capped, read_text_file


def refused(path: Path, limit: int = 1024) -> FileReadError:
    started = time.monotonic()
    with pytest.raises(FileReadError) as caught:
        read_text_file(path, limit)
    assert time.monotonic() - started < 1.0  # nothing waits for a writer or reads forever
    return caught.value


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)
    assert "a FIFO (named pipe), not a regular file" in str(refused(fifo))


def test_devices_and_directories_are_refused(tmp_path: Path) -> None:
    assert "a character device" in str(refused(Path("/dev/zero")))
    assert "a character device" in str(refused(Path("/dev/urandom")))
    assert "a directory" in str(refused(tmp_path))


def test_a_link_to_a_regular_file_is_followed_and_a_link_to_a_device_is_not(
    tmp_path: Path,
) -> None:
    # Secret mounts (Kubernetes' ..data) are links to regular files.
    real = tmp_path / "..data" / "password"
    real.parent.mkdir()
    real.write_text("s3cret\n", encoding="utf-8")
    link = tmp_path / "password"
    link.symlink_to(real)
    assert read_text_file(link, 1024) == "s3cret\n"
    device = tmp_path / "zero"
    device.symlink_to("/dev/zero")
    assert "a character device" in str(refused(device))


def test_a_file_over_the_limit_is_refused_and_one_at_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 1025)
    assert "larger than 1 KiB (1,025 bytes)" in str(refused(path))
    path.write_bytes(b"x" * 1024)
    assert read_capped(path, 1024) == b"x" * 1024


def test_text_that_is_not_utf8_is_refused_with_its_line_column_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1"
    path.write_bytes("a: 1\nb: 'café'\n".encode("latin-1"))
    error = refused(path)
    assert (error.line, error.column) == (2, 8)
    assert "byte 0xe9 at offset 12 (line 2, column 8)" in str(error)


def test_a_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "bom"
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert read_text_file(path, 1024) == "a: 1\n"
    path.write_bytes(b"\xef\xbb\xbfa: \xff\n")
    error = refused(path)
    assert (error.line, error.column) == (1, 4) and "offset 6" in str(error)


def test_missing_files_and_impossible_paths_are_refused(tmp_path: Path) -> None:
    assert "No such file" in str(refused(tmp_path / "missing"))
    assert "NUL byte" in str(refused(Path("/tmp/a\x00b")))  # noqa: S108 - never created
