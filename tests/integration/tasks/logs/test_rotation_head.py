"""The head of a live log after a lossless rotation: empty lines, then a whole line.

A collapse cuts whole filesystem blocks, so the cut falls inside a line; the archive holds
that line whole and the rest of it left in the live file becomes newlines. Checked under
real writer processes (one write per line, and a line written in two pieces), over many
rotations, and across a SIGKILL between each step of a rotation.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zstandard

from upkeep.analysis.logs import analyze
from upkeep.tasks.logs.rotation import RotationResult, recover, rotate


def _line(n: int) -> bytes:
    """Return the writer's line ``n``: from 11 bytes to past a filesystem block, so cuts
    fall in short lines, long ones and lines that span several blocks."""
    return b"line %09d %s\n" % (n, b"x" * (6000 if n % 97 == 0 else n * 7919 % 600))


WRITER = (
    inspect.getsource(_line)
    + """
import os, sys, time
path, rate, seconds, pieces = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
start = time.monotonic()
n = 0
while (elapsed := time.monotonic() - start) < seconds:
    target = int(rate * elapsed) + 100
    while n < target:
        data = _line(n)
        if pieces == 1:
            os.write(fd, data)
        else:  # as a buffered logger flushes: a line in two writes, the tail a moment later
            os.write(fd, data[: len(data) // 2])
            os.write(fd, data[len(data) // 2 :])
        n += 1
    time.sleep(0.005)
os.close(fd)
print(n)
"""
)


def _lines(first: int, last: int) -> bytes:
    return b"".join(_line(n) for n in range(first, last))


def _content(archive: Path) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(archive.read_bytes())


def _state(log: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (log.parent / ".upkeep-rotate" / f"{log.name}.json").read_text()
    )
    return loaded


def _rest(log: Path) -> bytes:
    """Return the live file after its filler (the writers write no empty line, so every
    newline it begins with is filler: exactly as many as the state records)."""
    live = log.read_bytes()
    rest = live.lstrip(b"\n")
    assert len(live) - len(rest) == _state(log).get("filled", 0)
    return base64.b64decode(_state(log)["carry"]) + rest


def _assert_head_whole(log: Path) -> None:
    """The live file's first non-empty line is a whole line of the writer's (or, while a
    writer is writing it in pieces, the start of one): never the end of one."""
    head = log.read_bytes().lstrip(b"\n")[:8192]
    if not head:
        return
    assert head.startswith(b"line "), head[:80]
    number = int(head.split()[1])
    first = head.split(b"\n")[0] + (b"\n" if b"\n" in head else b"")
    if first.endswith(b"\n"):
        assert first == _line(number)
    else:
        assert _line(number).startswith(first)


def _assert_every_line_once_in_order(stream: bytes, count: int) -> None:
    lines = stream.split(b"\n")
    assert lines[-1] == b""
    numbers = [int(line.split()[1]) for line in lines[:-1]]
    assert len(numbers) == count, f"{count - len(numbers)} lines lost (or doubled)"
    assert numbers == list(range(count))
    assert stream == _lines(0, count)  # and each whole, byte for byte


@pytest.mark.parametrize("pieces", [1, 2], ids=["a line a write", "a line in two writes"])
def test_under_a_writer_every_cut_line_is_archived_whole_and_the_live_head_is_whole(
    tmp_path: Path, pieces: int
) -> None:
    log = tmp_path / "app.log"
    log.touch()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log), "8000", "8", str(pieces)],
        stdout=subprocess.PIPE,
        text=True,
    )
    results: list[RotationResult] = []
    moment = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    next_rotation = time.monotonic() + 0.25
    while writer.poll() is None:
        time.sleep(max(0.0, next_rotation - time.monotonic()))
        next_rotation += 0.25
        result = rotate(log, moment=moment + timedelta(seconds=len(results)))
        if result is not None:
            results.append(result)
            _assert_head_whole(log)
            assert _state(log)["carry"] == ""  # nothing waits in the state any more
    out, _ = writer.communicate(timeout=60)
    count = int(out)
    assert len(results) >= 20
    assert {result.method for result in results} == {"collapse"}
    contents = [_content(result.archive) for result in results]
    for content in contents:  # each archive: whole lines, from a line's start to its end
        assert content.startswith(b"line ") and content.endswith(b"\n")
    _assert_every_line_once_in_order(b"".join(contents) + _rest(log), count)
    # Readers of the live file see whole lines: as many levels... here as many lines as
    # the file holds non-empty lines, none of them a fragment.
    assert analyze([log]).lines == _rest(log).count(b"\n")


KILLER = r"""
import os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from upkeep.io import safefs
from upkeep.tasks.logs import rotation

log, step = Path(sys.argv[1]), sys.argv[2]
inode = log.stat().st_ino


def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)


if step == "the cut recorded, the archive not named":
    safefs.rename_noreplace = die
elif step == "the archive just named":
    real = safefs.rename_noreplace

    def name_then_die(*args):
        real(*args)
        die()

    safefs.rename_noreplace = name_then_die
elif step == "the archive named, the log not cut":
    real = rotation.collapse_prefix
    rotation.collapse_prefix = lambda fd, n: die() if os.fstat(fd).st_ino == inode else real(fd, n)
elif step == "the log cut, its head not filled":
    real = rotation.collapse_prefix

    def cut_then_die(fd, n):
        real(fd, n)
        if os.fstat(fd).st_ino == inode:
            die()

    rotation.collapse_prefix = cut_then_die
elif step == "the head filled, the state not final":
    rotation._finish_cut = die
rotation.rotate(log, moment=datetime(2026, 11, 23, tzinfo=UTC))
"""

STEPS = [
    "the cut recorded, the archive not named",
    "the archive just named",  # upkeep recorded the cut only after this: it was done twice
    "the archive named, the log not cut",
    "the log cut, its head not filled",
    "the head filled, the state not final",
]


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_between_any_two_steps_neither_loses_nor_doubles_a_line(
    tmp_path: Path, step: str
) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(_lines(0, 3000))
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(log), step], capture_output=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with open(log, "ab") as handle:  # the writer went on meanwhile
        handle.write(_lines(3000, 3100))
    assert recover(log) is True
    assert recover(log) is False
    _assert_head_whole(log)
    assert not list(tmp_path.glob(".upkeep-tmp-*"))
    assert not [name for name in os.listdir(tmp_path / ".upkeep-rotate") if "tmp" in name]
    # The next rotation carries on from there.
    with open(log, "ab") as handle:
        handle.write(_lines(3100, 3500))
    assert rotate(log, moment=datetime(2026, 11, 23, 0, 0, 1, tzinfo=UTC)) is not None
    _assert_head_whole(log)
    archives = sorted(tmp_path.glob("app.log-*"))
    assert len(archives) == (1 if step == STEPS[0] else 2)
    stream = b"".join(_content(archive) for archive in archives) + _rest(log)
    _assert_every_line_once_in_order(stream, 3500)


def test_a_state_from_before_the_filler_still_joins_its_carried_part_line(
    tmp_path: Path,
) -> None:
    """A log an earlier upkeep collapsed begins mid-line, the rest of that line waiting in
    the state: the next archive begins with it, whole, and the log is then filled."""
    log = tmp_path / "app.log"
    whole = _lines(0, 2000)
    start = len(_lines(0, 30))  # line 30 is 586 bytes long: cut 50 bytes into it
    part = start + 50
    log.write_bytes(whole[part:])
    (tmp_path / ".upkeep-rotate").mkdir(mode=0o700)
    old_state = {
        "carry": base64.b64encode(whole[start:part]).decode(),
        "pending": None,
        "inode": log.stat().st_ino,
        "head": base64.b64encode(whole[part : part + 64]).decode(),
        "collapsed": 4096,
    }
    (tmp_path / ".upkeep-rotate" / "app.log.json").write_text(json.dumps(old_state))
    result = rotate(log, moment=datetime(2026, 11, 23, tzinfo=UTC))
    assert result is not None
    content = _content(result.archive)
    assert content.startswith(_line(30))
    _assert_head_whole(log)
    assert whole[:start] + content + _rest(log) == whole


def test_a_log_holding_only_filler_and_an_unfinished_line_is_not_rotated_into_an_empty_archive(
    tmp_path: Path,
) -> None:
    """The filler can be a whole block (the cut line ended a block after the cut); its
    newlines are no lines: with only an unfinished line after them there is nothing to
    archive, and the dry run's rule says so."""
    from upkeep.io.safefs import Directory
    from upkeep.tasks.logs.rotation import readiness

    block = os.statvfs(tmp_path).f_bsize
    log = tmp_path / "app.log"
    # Short lines up to within a line of the first block's end; the next one, long, ends
    # exactly at the second block's end: the cut at the first falls in it.
    first = b"".join(b"%067d\n" % n for n in range(block // 68 - 1))
    long_line = b"x" * (2 * block - len(first) - 1) + b"\n"
    log.write_bytes(first + long_line)
    result = rotate(log, moment=datetime(2026, 11, 23, tzinfo=UTC))
    assert result is not None and _content(result.archive) == first + long_line
    assert log.read_bytes() == b"\n" * block
    with open(log, "ab") as handle:
        handle.write(b"an unfinished line, still being written")
    assert rotate(log, moment=datetime(2026, 11, 23, 0, 0, 1, tzinfo=UTC)) is None
    with Directory.open(tmp_path) as directory:
        why = readiness(directory, "app.log")
    assert why is not None and "0 B of whole lines since the last rotation" in why
    assert len(list(tmp_path.glob("app.log-*"))) == 1
