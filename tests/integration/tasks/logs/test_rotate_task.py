"""logs.rotate as a runbook step runs it: choice of logs, dry run, retention, rename mode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import TaskContext
from upkeep.tasks.logs.rotate import LogsRotate, RotateParams, archives_of, parse_size

LINE = b"2026-11-23T12:00:00Z INFO request served in 12 ms\n"


def _target(directory: Path) -> LogsTarget:
    return LogsTarget(kind="logs", path=str(directory), pattern="*.log")


def _params(**values: object) -> RotateParams:
    return RotateParams.model_validate(values)


async def test_dry_run_lists_what_would_rotate_and_changes_nothing(
    tmp_path: Path, task_context: TaskContext
) -> None:
    (tmp_path / "big.log").write_bytes(LINE * 2000)
    (tmp_path / "small.log").write_bytes(LINE)
    (tmp_path / "notes.txt").write_bytes(LINE * 2000)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    plan = await LogsRotate().plan(_target(tmp_path), _params(min_size="10K"), task_context)
    assert [(change.action, Path(change.subject).name) for change in plan.changes] == [
        ("rotate", "big.log")
    ]
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


async def test_rotation_archives_verifiably_and_retention_keeps_the_newest(
    tmp_path: Path, task_context: TaskContext
) -> None:
    log = tmp_path / "app.log"
    stranger = tmp_path / "app.log-backup-from-bob.zst"  # not our name shape: never deleted
    stranger.write_bytes(b"keep me")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.log-20200101-000000.zst"
    outside.write_bytes(b"x")
    (tmp_path / "app.log-20200101-000000.zst").symlink_to(outside)  # a link: never followed
    task = LogsRotate()
    for _ in range(4):
        with open(log, "ab") as handle:  # the writer appends
            handle.write(LINE * 1000)
        outcome = await task.run(_target(tmp_path), _params(keep_count=2), task_context)
        assert outcome.figures["rotated"] == 1
        time.sleep(1.05)  # a new second: a new archive name
    archives = archives_of(log, tmp_path)
    assert len(archives) == 2
    for archive in archives:  # whole lines only, each verified before the log was cut
        text = zstandard.ZstdDecompressor().decompressobj().decompress(archive.read_bytes())
        assert text.startswith(b"2026-") and text.endswith(b"\n")
        assert set(text.splitlines()) == {LINE.rstrip()}
    assert stranger.exists() and outside.exists()


async def test_a_log_replaced_between_rotations_is_archived_alone(
    tmp_path: Path, task_context: TaskContext
) -> None:
    """The first rotation archives the line its cut falls in whole and leaves newlines in
    its place; a file put in the log's place since holds none of that filler, and its
    archive holds its own lines only, from its first."""
    log = tmp_path / "app.log"
    log.write_bytes(LINE * 1000)  # 51,000 bytes: the cut at 49,152 falls inside a line
    await LogsRotate().run(_target(tmp_path), _params(), task_context)
    first = (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress(archives_of(log, tmp_path)[-1].read_bytes())
    )
    assert first == LINE * (49_152 // len(LINE) + 1)  # the cut line whole, nothing after
    assert log.read_bytes() == b"\n" * (len(first) - 49_152) + LINE * (
        1000 - len(first) // len(LINE)
    )
    log.unlink()
    fresh = b"".join(b"fresh %05d\n" % n for n in range(2000))  # 22,000 bytes
    log.write_bytes(fresh)
    time.sleep(1.05)
    await LogsRotate().run(_target(tmp_path), _params(), task_context)
    second = archives_of(log, tmp_path)[-1]
    text = zstandard.ZstdDecompressor().decompressobj().decompress(second.read_bytes())
    assert text == fresh[: fresh.index(b"\n", 20_480) + 1]
    assert log.read_bytes().lstrip(b"\n") == fresh[len(text) :]


async def test_rename_mode_tells_a_real_writer_to_reopen_and_loses_nothing(
    tmp_path: Path, task_context: TaskContext
) -> None:
    log = tmp_path / "app.log"
    pidfile = tmp_path / "writer.pid"
    writer_code = r"""
import os, signal, sys, time
path, pidfile = sys.argv[1], sys.argv[2]
handle = open(path, "ab", buffering=0)
reopened = False
def reopen(*_):
    global handle, reopened
    handle.close()
    handle = open(path, "ab", buffering=0)
    reopened = True
signal.signal(signal.SIGHUP, reopen)
open(pidfile, "w").write(str(os.getpid()))
for number in range(40000):
    handle.write(b"line %09d\n" % number)
    if number % 100 == 0:
        time.sleep(0.001)
# A service runs on after its lines: a loaded machine must not let it exit before the
# rotation signals it (an exited writer is refused, not signalled).
deadline = time.time() + 30
while not reopened and time.time() < deadline:
    time.sleep(0.01)
print("done")
"""
    # A service runs in a session of its own, never in upkeep's process group.
    writer = subprocess.Popen(
        [sys.executable, "-c", writer_code, str(log), str(pidfile)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    while not pidfile.exists() or not pidfile.read_text():
        time.sleep(0.05)
    time.sleep(0.5)
    params = _params(mode="rename", reopen_signal="HUP", pidfile=str(pidfile), compress="gzip")
    assert LogsRotate().validate(_target(tmp_path), params) == []
    outcome = await LogsRotate().run(_target(tmp_path), params, task_context)
    assert outcome.figures["rotated"] == 1
    writer.communicate(timeout=60)
    import gzip

    (archive,) = archives_of(log, tmp_path)
    stream = gzip.decompress(archive.read_bytes()) + log.read_bytes()
    numbers = [int(line.split()[1]) for line in stream.splitlines()]
    assert numbers == list(range(40000))
    assert not list(tmp_path.glob(".upkeep-tmp-*"))


def test_rename_mode_needs_a_way_to_reopen(tmp_path: Path) -> None:
    problems = LogsRotate().validate(_target(tmp_path), _params(mode="rename"))
    assert problems == ["rename mode needs reopen_signal (with pidfile) or reopen_command"]
    with pytest.raises(ValueError, match="not a signal name"):
        _params(mode="rename", reopen_signal="NOPE", pidfile="/x")


@pytest.mark.parametrize(
    ("text", "expected"), [("10MB", 10 * 1024**2), ("512K", 512 * 1024), (7, 7)]
)
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected
    assert os.sep == "/"


async def test_what_an_interrupted_rename_rotation_left_is_archived_before_the_new_one(
    tmp_path: Path, task_context: TaskContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename rotation killed after the rename leaves the renamed file; the next one
    archives it first, under the time it was renamed at, so archives follow the log in
    name and in time order (what retention by count and the logs probes go by)."""
    from upkeep.tasks.logs import rotate as rotate_module

    monkeypatch.setattr(rotate_module, "REOPEN_WAIT_S", 0.0)
    older = b"2026-11-01T00:00:00Z INFO before the crash\n" * 200
    newer = b"2026-11-23T12:00:00Z INFO after the crash\n" * 200
    leftover = tmp_path / ".upkeep-tmp-renamed-app.log-20261101-000000.000000000042"
    leftover.write_bytes(older)
    (tmp_path / "app.log").write_bytes(newer)
    params = _params(mode="rename", reopen_command=["true"])
    await LogsRotate().run(_target(tmp_path), params, task_context)
    archives = archives_of(tmp_path / "app.log", tmp_path)  # oldest first, by mtime
    decompress = zstandard.ZstdDecompressor().decompressobj
    assert [decompress().decompress(path.read_bytes()) for path in archives] == [older, newer]
    assert sorted(archives) == archives
    assert archives[0].name == "app.log-20261101-000000.zst"
    assert not leftover.exists() and (tmp_path / "app.log").read_bytes() == b""


async def test_the_dry_run_and_the_run_agree_on_logs_with_too_little_to_cut(
    tmp_path: Path, task_context: TaskContext
) -> None:
    """A collapse cuts whole filesystem blocks of whole lines. The dry run listed a 28-byte
    log to rotate and the run then rotated nothing, saying only 'rotated 0'. Likewise a log
    past a block whose only long line is still being written (no newline yet)."""
    block = os.statvfs(tmp_path).f_bsize
    (tmp_path / "tiny.log").write_bytes(b"2026-11-23 INFO one line\n")  # 25 bytes
    (tmp_path / "unfinished.log").write_bytes(LINE + b"x" * (2 * block))  # no newline yet
    (tmp_path / "big.log").write_bytes(LINE * 2000)
    plan = await LogsRotate().plan(_target(tmp_path), _params(), task_context)
    assert [Path(change.subject).name for change in plan.changes] == ["big.log"]
    assert "tiny.log: only 25 B of whole lines" in plan.note
    assert "unfinished.log: only 50 B of whole lines" in plan.note
    outcome = await LogsRotate().run(_target(tmp_path), _params(), task_context)
    assert outcome.figures["rotated"] == 1
    assert [Path(change.subject).name for change in outcome.changes] == ["big.log"]
    assert "left alone: " in outcome.message
    assert "tiny.log: only 25 B of whole lines; a lossless rotation cuts whole" in outcome.message
    assert (tmp_path / "tiny.log").read_bytes() == b"2026-11-23 INFO one line\n"
    assert (tmp_path / "unfinished.log").read_bytes() == LINE + b"x" * (2 * block)
