"""logs.rotate and logs.retain as a local user who can write the log directory attacks them.

Each test plants what issue #11 found (a link at a temporary or state name, a log swapped
for a link mid-run, a linked subdirectory, a renamed file swapped for a link, a hard link,
a forged state directory) and checks that nothing outside the log directory is read,
written or cut, and that archives keep the log's mode and owner.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zstandard

from upkeep.io.safefs import Directory
from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.copies import CopySource, LocalDirectoryStore
from upkeep.tasks.logs import rotate as rotate_module
from upkeep.tasks.logs.retain import LogsRetain, RetainParams
from upkeep.tasks.logs.rotate import LogsRotate, RotateParams, archives_of

LINE = b"2026-11-23T12:00:00Z INFO request served in 12 ms\n"
SECRET = b"root:$6$secret-hash:19000:0:99999:7:::\n"


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    directory = tmp_path / "logs"
    directory.mkdir()
    return directory


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A root-only file outside the log directory (stands in for /etc/shadow)."""
    path = tmp_path / "etc-victim"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    yield path
    assert path.read_bytes() == SECRET, "the file outside the log directory was changed"


def _target(directory: Path, pattern: str = "*.log") -> LogsTarget:
    return LogsTarget(kind="logs", path=str(directory), pattern=pattern)


def _params(**values: Any) -> RotateParams:
    return RotateParams.model_validate(values)


def _every_archive_byte(directory: Path) -> bytes:
    content = b""
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix == ".zst":
            content += zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    return content


async def test_links_planted_at_the_old_temporary_and_state_names_are_never_written_through(
    logs: Path, victim: Path, task_context: TaskContext
) -> None:
    """Finding 1: `ln -s /etc/victim logs/.upkeep-rotate/.upkeep-tmp-app.log.json` and
    links at every predictable archive temporary name, here and in archive_dir."""
    (logs / "app.log").write_bytes(LINE * 2000)
    (logs / ".upkeep-rotate").mkdir(mode=0o700)
    (logs / ".upkeep-rotate" / ".upkeep-tmp-app.log.json").symlink_to(victim)
    archive_dir = logs / "archive"
    archive_dir.mkdir()
    now = datetime.now(UTC)
    for offset in range(-2, 30):
        stamp = (now + timedelta(seconds=offset)).strftime("%Y%m%d-%H%M%S")
        for directory in (logs, archive_dir):
            (directory / f".upkeep-tmp-app.log-{stamp}.zst").symlink_to(victim)
    outcome = await LogsRotate().run(_target(logs), _params(archive_dir="archive"), task_context)
    assert outcome.figures["rotated"] == 1
    (archive,) = archives_of(logs / "app.log", archive_dir)
    assert LINE in zstandard.ZstdDecompressor().decompressobj().decompress(archive.read_bytes())
    state = logs / ".upkeep-rotate" / "app.log.json"
    assert not state.is_symlink() and stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE((logs / ".upkeep-rotate").stat().st_mode) == 0o700


async def test_a_log_swapped_for_a_link_while_another_rotates_is_neither_cut_nor_archived(
    logs: Path, victim: Path, task_context: TaskContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 2: b.log replaced by a link to a file outside while a.log rotates."""
    (logs / "a.log").write_bytes(LINE * 2000)
    (logs / "b.log").write_bytes(LINE * 2000)
    real = LogsRotate._rotate_one

    async def rotate_and_swap(self: LogsRotate, *args: Any) -> Any:
        if "a.log" in repr(args):  # the attacker acts after the listing, during a.log's turn
            (logs / "b.log").unlink()
            (logs / "b.log").symlink_to(victim)
        return await real(self, *args)

    monkeypatch.setattr(LogsRotate, "_rotate_one", rotate_and_swap)
    with pytest.raises(TaskFailed, match=r"b\.log.*(symbolic link|replaced)"):
        await LogsRotate().run(_target(logs), _params(), task_context)
    assert len(archives_of(logs / "a.log", logs)) == 1
    assert archives_of(logs / "b.log", logs) == []
    assert SECRET not in _every_archive_byte(logs)


async def test_a_pattern_through_a_linked_subdirectory_never_leaves_the_log_directory(
    logs: Path, tmp_path: Path, task_context: TaskContext
) -> None:
    """Finding 2: pattern */*.log with logs/evil -> /elsewhere."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = elsewhere / "x.log"
    outside.write_bytes(LINE * 2000)
    (logs / "evil").symlink_to(elsewhere)
    (logs / "app").mkdir()
    (logs / "app" / "app.log").write_bytes(LINE * 2000)
    target = _target(logs, "*/*.log")
    plan = await LogsRotate().plan(target, _params(), task_context)
    assert [Path(change.subject).name for change in plan.changes] == ["app.log"]
    assert "evil" in plan.note and "not entered" in plan.note
    outcome = await LogsRotate().run(target, _params(), task_context)
    assert outcome.figures["rotated"] == 1
    assert outside.read_bytes() == LINE * 2000
    assert sorted(path.name for path in elsewhere.iterdir()) == ["x.log"]


async def test_rename_mode_never_archives_what_is_swapped_in_after_the_rename(
    logs: Path, victim: Path, task_context: TaskContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 2: in rename mode, the renamed file swapped for a link to a 0600 file."""
    log = logs / "app.log"
    log.write_bytes(LINE * 2000)
    log.chmod(0o640)

    async def reopen_after_the_swap(*_args: Any) -> None:
        for renamed in logs.glob(".upkeep-tmp-renamed-*"):
            renamed.unlink()
            renamed.symlink_to(victim)

    monkeypatch.setattr(LogsRotate, "_reopen", reopen_after_the_swap)
    monkeypatch.setattr(rotate_module, "REOPEN_WAIT_S", 0.0)
    params = _params(mode="rename", reopen_command=["true"])
    await LogsRotate().run(_target(logs), params, task_context)
    (archive,) = archives_of(log, logs)
    content = zstandard.ZstdDecompressor().decompressobj().decompress(archive.read_bytes())
    assert content == LINE * 2000
    assert SECRET not in content
    assert stat.S_IMODE(archive.stat().st_mode) == 0o640


async def test_a_hard_link_to_a_file_elsewhere_is_never_cut(
    logs: Path, tmp_path: Path, task_context: TaskContext
) -> None:
    outside = tmp_path / "outside.dat"
    outside.write_bytes(LINE * 2000)
    os.link(outside, logs / "app.log")
    with pytest.raises(TaskFailed, match="hard links"):
        await LogsRotate().run(_target(logs), _params(), task_context)
    assert outside.read_bytes() == LINE * 2000
    assert archives_of(logs / "app.log", logs) == []


async def test_a_state_directory_upkeep_does_not_own_is_refused(
    logs: Path, tmp_path: Path, task_context: TaskContext
) -> None:
    (logs / "app.log").write_bytes(LINE * 2000)
    forged = tmp_path / "forged-state"
    forged.mkdir()
    (logs / ".upkeep-rotate").symlink_to(forged)
    with pytest.raises(TaskFailed, match=r"upkeep-rotate.*symbolic link"):
        await LogsRotate().run(_target(logs), _params(), task_context)
    assert list(forged.iterdir()) == []
    (logs / ".upkeep-rotate").unlink()
    (logs / ".upkeep-rotate").mkdir(mode=0o777)
    os.chmod(logs / ".upkeep-rotate", 0o777)  # noqa: S103 - the attack: others can write it
    with pytest.raises(TaskFailed, match="refusing to trust the rotation state"):
        await LogsRotate().run(_target(logs), _params(), task_context)
    assert (logs / "app.log").read_bytes() == LINE * 2000


async def test_a_fifo_named_like_a_log_is_left_alone_without_hanging(
    logs: Path, task_context: TaskContext
) -> None:
    os.mkfifo(logs / "stuck.log")
    (logs / "app.log").write_bytes(LINE * 2000)
    started = time.monotonic()
    outcome = await LogsRotate().run(_target(logs), _params(), task_context)
    assert outcome.figures["rotated"] == 1
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("compress", ["zstd", "gzip", "none"])
async def test_archives_and_state_keep_the_log_s_mode_and_owner(
    logs: Path, task_context: TaskContext, compress: str
) -> None:
    """Finding 5: a 0600 secret.log never becomes a world-readable archive."""
    log = logs / "secret.log"
    log.write_bytes(LINE * 2000)
    log.chmod(0o600)
    os.chown(log, 65534, 65534)
    await LogsRotate().run(_target(logs), _params(compress=compress), task_context)
    (archive,) = archives_of(log, logs)
    info = archive.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == (65534, 65534)
    state_dir = logs / ".upkeep-rotate"
    if state_dir.exists():
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        for state in state_dir.iterdir():
            assert stat.S_IMODE(state.stat().st_mode) == 0o600


async def test_rename_mode_recreates_the_log_with_its_mode_and_owner(
    logs: Path, task_context: TaskContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = logs / "app.log"
    log.write_bytes(LINE * 2000)
    log.chmod(0o640)
    os.chown(log, 65534, 65534)
    monkeypatch.setattr(rotate_module, "REOPEN_WAIT_S", 0.0)
    params = _params(mode="rename", reopen_command=["true"])
    await LogsRotate().run(_target(logs), params, task_context)
    fresh = log.stat()
    assert fresh.st_size == 0
    assert stat.S_IMODE(fresh.st_mode) == 0o640 and (fresh.st_uid, fresh.st_gid) == (65534, 65534)
    (archive,) = archives_of(log, logs)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o640


async def test_retain_copies_keep_the_mode_and_never_follow_planted_links(
    logs: Path, tmp_path: Path, victim: Path, task_context: TaskContext
) -> None:
    """Finding 1 (retain / copy_to): links at the predictable temporary name and at the
    copy's own name in the second store are never written through."""
    store = tmp_path / "second-store"
    store.mkdir()
    old = time.time() - 40 * 86400
    names = []
    for day in range(3):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(old + day))
        archive = logs / f"secret.log-{stamp}.zst"
        archive.write_bytes(zstandard.ZstdCompressor().compress(LINE * 10))
        archive.chmod(0o600)
        os.utime(archive, (old, old))
        names.append(archive.name)
    (store / f".upkeep-tmp-{names[0]}").symlink_to(victim)
    (store / names[1]).symlink_to(victim)  # a link at the copy's very name
    params = RetainParams.model_validate(
        {"classes": [{"match": "*", "keep": "30d", "archive_keep": "1y"}], "archive_to": str(store)}
    )
    with pytest.raises(TaskFailed, match=rf"{names[1]}.*not a regular file"):
        await LogsRetain().run(_target(logs), params, task_context)
    assert (store / names[1]).is_symlink()
    assert not (logs / names[0]).exists() and not (logs / names[2]).exists()
    assert (logs / names[1]).exists()  # its copy could not be made: kept locally
    for name in (names[0], names[2]):
        copy = store / name
        assert not copy.is_symlink() and stat.S_IMODE(copy.stat().st_mode) == 0o600


def test_a_copy_source_is_read_through_its_descriptor_not_its_name(
    logs: Path, tmp_path: Path, victim: Path
) -> None:
    """What was checked is what is copied: swapping the name for a link after opening
    changes nothing."""
    archive = logs / "app.log-20261101-000000.zst"
    archive.write_bytes(b"the archive's bytes")
    with Directory.open(logs) as directory:
        source = CopySource.open(directory, archive.name)
    with source:
        archive.unlink()
        archive.symlink_to(victim)
        store = LocalDirectoryStore(tmp_path / "copies")
        assert store.put(source)
        store.close()
    assert (tmp_path / "copies" / archive.name).read_bytes() == b"the archive's bytes"


@pytest.mark.parametrize("keep", [{}, {"keep_count": 1}])
async def test_an_archive_dir_planted_as_a_link_fails_the_step_and_nothing_goes_there(
    logs: Path, victim: Path, tmp_path: Path, task_context: TaskContext, keep: dict[str, Any]
) -> None:
    """A relative archive_dir lies in the log directory: its writer can make it a link
    (to /etc, say). Rotation refuses it, and so do the dry run and retention, each with a
    step failure that names it rather than an exception."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stale = elsewhere / "app.log-20200101-000000.zst"
    stale.write_bytes(b"not ours to delete")
    (logs / "app.log").write_bytes(LINE * 2000)
    (logs / "archive").symlink_to(elsewhere)
    params = _params(archive_dir="archive", **keep)
    with pytest.raises(TaskFailed, match="symbolic link"):
        await LogsRotate().plan(_target(logs), params, task_context)
    with pytest.raises(TaskFailed, match="symbolic link"):
        await LogsRotate().run(_target(logs), params, task_context)
    assert sorted(path.name for path in elsewhere.iterdir()) == [stale.name]
    assert (logs / "app.log").read_bytes() == LINE * 2000


async def test_a_log_directory_swapped_for_a_link_before_retention_is_left_alone(
    logs: Path, tmp_path: Path, task_context: TaskContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention lists the logs again and opens each one's directory: one swapped for a
    link since (its writer can) is neither followed nor a crash of the step."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    theirs = elsewhere / "app.log-20200101-000000.zst"
    theirs.write_bytes(b"not ours to delete")
    (logs / "web").mkdir()
    (logs / "web" / "app.log").write_bytes(LINE)  # below min_size: not rotated
    real = rotate_module.list_logs
    calls: list[int] = []

    def listed_then_swapped(*args: Any) -> Any:
        found = real(*args)
        calls.append(1)
        if len(calls) == 2:  # retention's listing (the first chose what to rotate)
            (logs / "web").rename(logs / "web.old")
            (logs / "web").symlink_to(elsewhere)
        return found

    monkeypatch.setattr(rotate_module, "list_logs", listed_then_swapped)
    params = _params(min_size="1M", keep_count=0)
    outcome = await LogsRotate().run(_target(logs, "*/*.log"), params, task_context)
    assert len(calls) == 2 and outcome.figures["archives_deleted"] == 0
    assert theirs.exists()
