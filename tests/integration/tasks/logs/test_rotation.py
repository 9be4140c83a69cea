"""Lossless rotation under a real writer appending through O_APPEND."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zstandard

from upkeep.analysis import rotated
from upkeep.tasks.logs import rotation
from upkeep.tasks.logs.rotation import RotationResult, recover, rotate

WRITER = r"""
import os, sys, time
path, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
start = time.monotonic()
number = 0
# One write per line, as a logger does; paced in batches to hold the rate.
while (elapsed := time.monotonic() - start) < seconds:
    target = int(rate * elapsed) + 1000
    while number < target:
        os.write(fd, b"line %09d some payload to make it a log line\n" % number)
        number += 1
    time.sleep(0.005)
os.close(fd)
print(number, time.monotonic() - start)
"""


def _content(archive: Path) -> bytes:
    data = archive.read_bytes()
    if archive.suffix == ".zst":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if archive.suffix == ".gz":
        return gzip.decompress(data)
    return data


def _state(log: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (log.parent / ".upkeep-rotate" / f"{log.name}.json").read_text()
    )
    return loaded


def _rest(log: Path) -> bytes:
    """Return what follows the archives in the writer's stream: a copy-and-truncate's carry,
    then the live file without the filler a collapse left at its head. The test writers
    write no empty line, so every newline the live file begins with is filler (exactly as
    many as the state records), and after them comes a whole line."""
    state = _state(log)
    live = log.read_bytes()
    rest = live.lstrip(b"\n")
    assert len(live) - len(rest) == state.get("filled", 0)
    return base64.b64decode(state["carry"]) + rest


def _assert_every_line_once_in_order(stream: bytes, count: int) -> None:
    lines = stream.split(b"\n")
    assert lines[-1] == b""
    numbers = [int(line.split()[1]) for line in lines[:-1]]
    assert len(numbers) == count, f"{count - len(numbers)} lines lost (or doubled)"
    assert numbers == list(range(count))


def test_a_fast_writer_loses_and_doubles_no_line_over_30_rotations(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log), "60000", "30"], stdout=subprocess.PIPE, text=True
    )
    results: list[RotationResult] = []
    moment = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    # A rotation a second by the clock, not a second after the last one ended: on a
    # loaded machine (a parallel suite) rotations take longer, not fewer happen.
    next_rotation = time.monotonic() + 1.0
    while writer.poll() is None:
        time.sleep(max(0.0, next_rotation - time.monotonic()))
        next_rotation += 1.0
        result = rotate(log, moment=moment + timedelta(seconds=len(results)))
        if result is not None:
            results.append(result)
    out, _ = writer.communicate(timeout=30)
    written, seconds = out.split()
    count = int(written)
    assert count / float(seconds) >= 50_000, (
        f"the writer managed only {count / float(seconds):.0f} lines/s"
    )
    assert len(results) >= 25
    assert {result.method for result in results} == {"collapse"}
    archives = b"".join(_content(result.archive) for result in results)
    # Every archive holds whole lines; the part line at the last cut waits in the state.
    for result in results:
        assert _content(result.archive).endswith(b"\n")
    _assert_every_line_once_in_order(archives + _rest(log), count)


def test_a_crash_between_recording_and_making_the_cut_is_finished_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"".join(b"line %09d x\n" % n for n in range(100_000)))

    real = rotation.collapse_prefix
    calls: list[int] = []

    def crash(fd: int, length: int) -> None:
        calls.append(length)
        if len(calls) == 1:  # the filesystem probe on a scratch file
            real(fd, length)
            return
        raise KeyboardInterrupt("killed")  # the process dies before cutting the log

    monkeypatch.setattr(rotation, "collapse_prefix", crash)
    with pytest.raises(KeyboardInterrupt):
        rotate(log, moment=datetime(2026, 11, 23, tzinfo=UTC))
    monkeypatch.undo()
    archives = sorted(tmp_path.glob("app.log-*"))
    assert len(archives) == 1  # the verified archive exists; the log still has everything
    with open(log, "ab") as handle:  # the writer went on meanwhile
        handle.write(b"".join(b"line %09d x\n" % n for n in range(100_000, 100_500)))
    assert recover(log) is True
    assert recover(log) is False
    stream = _content(archives[0]) + _rest(log)
    _assert_every_line_once_in_order(stream, 100_500)
    assert not list(tmp_path.glob(".upkeep-tmp-*"))


def test_where_collapse_is_impossible_it_truncates_and_reports_the_window(tmp_path: Path) -> None:
    shm = Path("/dev/shm")  # noqa: S108 - a tmpfs on purpose: it cannot collapse ranges
    if not shm.is_dir():
        pytest.skip("no tmpfs at /dev/shm")
    directory = shm / f"upkeep-{os.getpid()}-{tmp_path.name}"
    directory.mkdir()
    try:
        log = directory / "app.log"
        log.write_bytes(b"".join(b"line %09d x\n" % n for n in range(10_000)))
        result = rotate(log, moment=datetime(2026, 11, 23, tzinfo=UTC), compression="gzip")
        assert result is not None and result.method == "truncate"
        assert 0 <= result.loss_window_s < 0.5
        assert log.stat().st_size == 0
        _assert_every_line_once_in_order(_content(result.archive), 10_000)
        assert result.archive.name == "app.log-20261123-000000.gz"
        log.write_bytes(b"x\n" * 5000)
        with pytest.raises(rotated.RotationError):
            rotate(log, moment=datetime(2026, 11, 23, tzinfo=UTC), mode="collapse")
    finally:
        for item in sorted(directory.rglob("*"), reverse=True):
            item.rmdir() if item.is_dir() else item.unlink()
        directory.rmdir()


def _lines(first: int, last: int) -> bytes:
    return b"".join(b"line %09d x\n" % n for n in range(first, last))


def test_a_full_archive_disk_in_truncate_mode_leaves_the_log_whole(tmp_path: Path) -> None:
    """Where the log cannot be collapsed (tmpfs here) it is copied and truncated: the copy
    must be complete, verified and named before anything is cut. A full archive disk used
    to fail the copy after the truncation, and the whole log was gone."""
    from tests.support.mounts import fill, small_tmpfs

    with (
        small_tmpfs(tmp_path / "logs", "64m") as logs,
        small_tmpfs(tmp_path / "archives", "1m") as archives,
    ):
        log = logs / "app.log"
        content = b"".join(
            b"line %09d %s\n" % (n, os.urandom(24).hex().encode()) for n in range(30_000)
        )
        log.write_bytes(content)
        filler = fill(archives)
        moment = datetime(2026, 11, 23, tzinfo=UTC)
        with pytest.raises(rotated.RotationError, match="No space left"):
            rotate(log, moment=moment, archive_dir=archives)
        assert log.read_bytes() == content
        assert sorted(path.name for path in archives.iterdir()) == ["filler"]
        filler.unlink()
        result = rotate(log, moment=moment, archive_dir=archives)
        assert result is not None and result.method == "truncate"
        assert _content(result.archive) + _rest(log) == content


@pytest.mark.parametrize("crash", ["before the truncation", "after the truncation"])
def test_a_crash_in_truncate_mode_is_finished_by_the_next_run_without_a_double(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    from tests.support.mounts import small_tmpfs

    with small_tmpfs(tmp_path / "logs", "64m") as logs:
        log = logs / "app.log"
        log.write_bytes(_lines(0, 100_000))
        real = os.ftruncate

        def killed(fd: int, length: int) -> None:
            if crash == "after the truncation":
                real(fd, length)
            raise KeyboardInterrupt("killed")

        monkeypatch.setattr(os, "ftruncate", killed)  # rotation cuts the log with os.ftruncate
        with pytest.raises(KeyboardInterrupt):
            rotate(log, moment=datetime(2026, 11, 23, tzinfo=UTC))
        monkeypatch.undo()
        with open(log, "ab") as handle:  # the writer went on meanwhile
            handle.write(_lines(100_000, 100_500))
        assert recover(log) is True
        assert recover(log) is False
        archives = sorted(logs.glob("app.log-*"))
        stream = b"".join(_content(archive) for archive in archives) + _rest(log)
        _assert_every_line_once_in_order(stream, 100_500)
        assert not list(logs.glob(".upkeep-tmp-*"))


def test_a_second_rotation_of_the_same_log_meanwhile_neither_loses_nor_doubles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's scheduled rotation and an operator's `upkeep logs rotate` can meet on
    one log. Without a lock both archived the same prefix and both cut it: the lines were
    doubled in the archives and a block of newer ones was cut unarchived."""
    log = tmp_path / "app.log"
    log.write_bytes(_lines(0, 100_000))
    monkeypatch.setattr(rotation, "ROTATION_LOCK_WAIT_S", 0.2)
    real = rotation.collapse_prefix
    refused: list[str] = []

    def meanwhile(fd: int, length: int) -> None:
        # The first call probes a scratch file; the second cuts the log, its archive named
        # and the cut recorded: another upkeep process rotates the same log just then.
        if os.fstat(fd).st_ino == log.stat().st_ino and not refused:
            refused.append("")
            with open(log, "ab") as handle:  # the writer goes on
                handle.write(_lines(100_000, 150_000))
            try:
                rotate(log, moment=datetime(2026, 11, 23, 0, 0, 1, tzinfo=UTC))
            except rotated.RotationError as error:
                refused[0] = str(error)
        real(fd, length)

    monkeypatch.setattr(rotation, "collapse_prefix", meanwhile)
    rotate(log, moment=datetime(2026, 11, 23, tzinfo=UTC))
    monkeypatch.undo()
    assert "under way" in refused[0]
    archives = sorted(tmp_path.glob("app.log-*"))
    stream = b"".join(_content(archive) for archive in archives) + _rest(log)
    _assert_every_line_once_in_order(stream, 150_000)
